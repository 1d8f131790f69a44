"""Issue 12's speed figures: one round of the implicit objective for one client per user, client by client
(`local_train_sequential`) against many clients at once (`local_train_vectorized`), and what the per-round `sampled`
evaluation of every user (99 shared negatives + the held-out item) costs against the round.

    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/bench_implicit.py                 # 943 one-user clients of ML-100K
    python benchmarks/bench_implicit.py --dataset synthetic-ml-1m --seq-clients 600           # 6,040 one-user clients

Protocol: leave-one-out split, every user its own client holding its private user rows (`PrivateState`, as after a first
round), each model in the configuration of `benchmarks/federated_ranking_figures.py` (`CONFIGS`: its local epochs, batch size,
optimizer and learning rate), 4 negatives per positive. Both engines first run on a few clients (warm-up), then each is timed on all clients in the same process
(`--seq-clients N`: the sequential engine on the first N clients only, its time scaled to all by their share of rows).
The evaluation is `evaluate_topn` of the serving model (for `pfedrec`, `personal_scorer` with each client's own item rows)."""
import argparse, os, sys, time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from federated_ranking_figures import COMMON, CONFIGS  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seq-clients", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    from fedrec_nb.client import ClientData, LocalConfig, PrivateState
    from fedrec_nb.features import encode_ratings
    from fedrec_nb.experiment import prepare_experiment
    from fedrec_nb.federated import local_train_sequential, personal_scorer, load_params, serving_params
    from fedrec_nb.implicit import evaluate_topn, implicit_data
    from fedrec_nb.models import IMPLICIT_MODELS
    from fedrec_nb.strategies import FedAvg
    from fedrec_nb.vectorized import local_train_vectorized
    dev = torch.device(a.device)
    exp = prepare_experiment(a.dataset, None, 42, 0.1, "leave_one_out", "runs/bench_implicit")
    f = exp.features
    u, i, y = encode_ratings(exp.train, f)
    order = torch.argsort(u, stable=True)
    u, i, y = u[order], i[order], y[order]
    cuts = torch.searchsorted(u, torch.arange(f.n_users + 1)).tolist()
    clients = [ClientData(k, u[cuts[k]:cuts[k + 1]], i[cuts[k]:cuts[k + 1]], y[cuts[k]:cuts[k + 1]]) for k in range(f.n_users)]
    clients = [c for c in clients if c.n_train]
    owner = np.arange(f.n_users)
    data = implicit_data(exp.train, exp.test, f).to(dev)
    fd = f.to(dev)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    lines = [f"$ python benchmarks/bench_implicit.py {' '.join(argv if argv is not None else sys.argv[1:])}"]
    def out(s): print(s, flush=True); lines.append(s)
    out(f"{a.dataset}: {len(clients):,} one-user clients, {len(u):,} positives, {len(data.test_users):,} test users; "
          f"device {dev}, {torch.get_num_threads()} CPU thread(s)")
    for name in a.models:
        c = CONFIGS[name]
        torch.manual_seed(0)
        net = IMPLICIT_MODELS[c["model"]](f, c["embedding_dim"]).to(dev)
        gp = {n: t.detach().clone() for n, t in net.named_parameters()}
        c = {**COMMON, **c}
        cfg = LocalConfig(c["local_epochs"], c["batch_size"], c["lr"], optimizer=c.get("client_optimizer", "adam"),
                          objective="implicit", num_negatives=c["num_negatives"], loss=c["loss"])
        def held(cl):
            ps = PrivateState(net.user_params, gp)
            for x in cl: ps.get(x)
            return ps
        def run(fn, cl):
            w = FedAvg().client_weights([x.n_train for x in cl]); ps = held(cl)
            sync(); t = time.perf_counter(); fn(net, gp, cl, w, fd, cfg, 0, 0, ps, dev); sync()
            return time.perf_counter() - t, ps
        warm = clients[::120][:8]
        run(local_train_vectorized, warm); run(local_train_sequential, warm[:2])
        t_vec, ps = run(local_train_vectorized, clients)
        sub = clients if a.seq_clients is None else clients[:a.seq_clients]
        t_seq, _ = run(local_train_sequential, sub)
        share = sum(x.n_train for x in sub) / sum(x.n_train for x in clients)
        t_seq_all = t_seq / share
        load_params(net, serving_params(gp, ps, owner, dev))
        evaluate_topn(personal_scorer(net, ps, owner), data)   # warm-up
        sync(); t = time.perf_counter(); r = evaluate_topn(personal_scorer(net, ps, owner), data); sync()
        t_eval = time.perf_counter() - t
        scaled = "" if a.seq_clients is None else f" (timed on {len(sub):,} clients, {share:.1%} of the rows, scaled)"
        out(f"{name:8s} ({c['model']}, d {c['embedding_dim']}, {c['loss']}, {cfg.local_epochs} epoch(s) of batch {cfg.batch_size}, {cfg.optimizer}): sequential {t_seq_all:7.2f} s{scaled}, "
              f"vectorized {t_vec:6.2f} s per round: {t_seq_all / t_vec:5.1f}x; sampled evaluation of {r['n_users']:,} users "
              f"{t_eval:.3f} s = {t_eval / (t_vec + t_eval):.1%} of a vectorized round with it")
    from fedrec_nb.experiment import atomic_write
    log = Path(__file__).resolve().parent / "results" / f"bench_implicit_{a.dataset}.log"
    atomic_write(log, lambda p: Path(p).write_text("\n".join(lines) + "\n"))
    print(f"wrote benchmarks/results/{log.name}")

if __name__ == "__main__":
    main()
