"""Issue 12's and issue 21's speed figures: one round of the implicit objective for one client per user, client by client
(`local_train_sequential`) against many clients at once (`local_train_vectorized`: for `mf` and `pfedrec` its fast path
`train_dot_group`), and what the per-round `sampled` evaluation of every user (99 shared negatives + the held-out item) costs.

    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/bench_implicit.py [--json benchmarks/results/bench_implicit_ml-100k.json]
    python benchmarks/bench_implicit.py --dataset synthetic-ml-1m --seq-clients 600           # 6,040 one-user clients

Protocol: leave-one-out split, every user its own client holding its private user rows (`PrivateState`, as after a first
round), each model in the configuration of `benchmarks/federated_ranking_figures.py` (`CONFIGS`: its local epochs, batch size,
optimizer and learning rate; 3 epochs of batch 256, notebook 06's defaults, for fedmf and pfedrec), 4 negatives per positive,
all clients in the round, 1 torch thread unless `--threads` says otherwise. Both engines first run on a few clients (warm-up),
then each is timed on all clients in the same process, `--repeat` times alternating, and the median is reported
(`--seq-clients N`: the sequential engine on N clients spread evenly over the size order, its time scaled to all clients by
their share of the rows). `--autograd` also times the batched engine's autograd path (`train_group`, what `mf` and `pfedrec`
used before `train_dot_group`). The evaluation is `evaluate_topn` of the serving model (for `pfedrec`, `personal_scorer`
with each client's own item rows). `PFEDREC_PUBLISHED_S` is the round time of PFedRec's published code on the development
machine (issue 21: its 943 clients one at a time, a deep copy of the model each, about 8 s)."""
import argparse, os, statistics, sys, time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from federated_ranking_figures import COMMON, CONFIGS  # noqa: E402
from benchjson import add_json_argument, cpu_model, write_json  # noqa: E402

PFEDREC_PUBLISHED_S = 8.0


def one_user_clients(exp):
    "Every user of the split's training rows as its own `ClientData`."
    from fedrec_nb.client import ClientData
    from fedrec_nb.features import encode_ratings
    f = exp.features
    u, i, y = encode_ratings(exp.train, f)
    order = torch.argsort(u, stable=True)
    u, i, y = u[order], i[order], y[order]
    cuts = torch.searchsorted(u, torch.arange(f.n_users + 1)).tolist()
    clients = [ClientData(k, u[cuts[k]:cuts[k + 1]], i[cuts[k]:cuts[k + 1]], y[cuts[k]:cuts[k + 1]]) for k in range(f.n_users)]
    return [c for c in clients if c.n_train], len(u)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--models", nargs="+", default=["fedmf", "pfedrec"], choices=list(CONFIGS))
    p.add_argument("--seq-clients", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--repeat", type=int, default=3, help="timed rounds of each engine (the median is reported)")
    p.add_argument("--autograd", action="store_true", help="also time the batched engine's autograd path (train_group)")
    p.add_argument("--device", default="cpu")
    add_json_argument(p)
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    from fedrec_nb.client import LocalConfig, PrivateState
    from fedrec_nb.experiment import prepare_experiment, atomic_write
    from fedrec_nb.federated import local_train_sequential, personal_scorer, load_params, serving_params
    from fedrec_nb.implicit import evaluate_topn, implicit_data
    from fedrec_nb.models import IMPLICIT_MODELS
    from fedrec_nb.strategies import FedAvg
    import fedrec_nb.vectorized as vz
    dev = torch.device(a.device)
    exp = prepare_experiment(a.dataset, None, 42, 0.1, "leave_one_out", "runs/bench_implicit")
    f = exp.features
    clients, n_pos = one_user_clients(exp)
    owner = np.arange(f.n_users)
    data = implicit_data(exp.train, exp.test, f).to(dev)
    fd = f.to(dev)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    lines = [f"$ python benchmarks/bench_implicit.py {' '.join(argv if argv is not None else sys.argv[1:])}"]
    def out(s): print(s, flush=True); lines.append(s)
    out(f"{a.dataset}: {len(clients):,} one-user clients, {n_pos:,} positives, {len(data.test_users):,} test users; "
        f"device {dev}, {torch.get_num_threads()} CPU thread(s), {cpu_model()} ({os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the start), torch {torch.__version__}")
    figures = []
    by_size = sorted(clients, key=lambda c: -c.n_train)
    sub = clients if a.seq_clients is None else by_size[::max(1, len(clients) // a.seq_clients)][:a.seq_clients]
    share = sum(x.n_train for x in sub) / sum(x.n_train for x in clients)
    for name in a.models:
        c = {**COMMON, **CONFIGS[name]}
        torch.manual_seed(0)
        net = IMPLICIT_MODELS[c["model"]](f, c["embedding_dim"]).to(dev)
        gp = {n: t.detach().clone() for n, t in net.named_parameters()}
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
        def autograd_path(*args):   # the batched engine with its fast path switched off
            real = vz.dot_trainable
            vz.dot_trainable = lambda model, cfg: False
            try: return vz.local_train_vectorized(*args)
            finally: vz.dot_trainable = real
        engines = {"vectorized": vz.local_train_vectorized, "sequential": local_train_sequential}
        if a.autograd: engines["autograd batched"] = autograd_path
        warm = clients[::120][:8]
        for fn in engines.values(): run(fn, warm[:2] if fn is local_train_sequential else warm)
        times = {k: [] for k in engines}
        for _ in range(a.repeat):
            for k, fn in engines.items():
                t, ps = run(fn, sub if fn is local_train_sequential else clients)
                times[k].append(t / share if fn is local_train_sequential else t)
                if k == "vectorized": ps_vec = ps
        med = {k: statistics.median(v) for k, v in times.items()}
        load_params(net, serving_params(gp, ps_vec, owner, dev))
        evaluate_topn(personal_scorer(net, ps_vec, owner), data)   # warm-up
        sync(); t = time.perf_counter(); r = evaluate_topn(personal_scorer(net, ps_vec, owner), data); sync()
        t_eval = time.perf_counter() - t
        scaled = "" if a.seq_clients is None else f" (timed on {len(sub):,} clients, {share:.1%} of the rows, scaled)"
        extra = "".join(f", {k} {v:6.2f} s ({med['sequential'] / v:4.1f}x)" for k, v in med.items() if k not in ("vectorized", "sequential"))
        out(f"{name:8s} ({c['model']}, d {c['embedding_dim']}, {c['loss']}, {cfg.local_epochs} epoch(s) of batch {cfg.batch_size}, "
            f"{cfg.optimizer}): sequential {med['sequential']:7.2f} s{scaled}, vectorized {med['vectorized']:6.3f} s per round: "
            f"{med['sequential'] / med['vectorized']:5.1f}x{extra}; sampled evaluation of {r['n_users']:,} users {t_eval:.3f} s")
        if c["model"] == "pfedrec":
            out(f"         pfedrec against PFedRec's published code's {PFEDREC_PUBLISHED_S:.0f} s per round on the development machine "
                f"(its {943:,} ML-100K clients): {PFEDREC_PUBLISHED_S / med['vectorized']:.1f}x its speed"
                + ("" if len(clients) == 943 else f" (here {len(clients):,} clients: not the same round)"))
        out(f"         load average {os.getloadavg()[0]:.1f}; seconds of each timed round: " + "; ".join(f"{k} {', '.join(f'{x:.3f}' for x in v)}" for k, v in times.items()))
        figures.append(dict(model=name, config=dict(model=c["model"], embedding_dim=c["embedding_dim"], loss=c["loss"],
                                                    local_epochs=cfg.local_epochs, batch_size=cfg.batch_size, optimizer=cfg.optimizer,
                                                    lr=cfg.lr, num_negatives=cfg.num_negatives),
                            seconds=med, rounds=times, speedup=med["sequential"] / med["vectorized"], eval_seconds=t_eval,
                            sequential_clients=len(sub), sequential_row_share=share,
                            vs_pfedrec_published=PFEDREC_PUBLISHED_S / med["vectorized"] if c["model"] == "pfedrec" else None))
    log = Path(__file__).resolve().parent / "results" / f"bench_implicit_{a.dataset}.log"
    atomic_write(log, lambda p: Path(p).write_text("\n".join(lines) + "\n"))
    print(f"wrote benchmarks/results/{log.name}")
    write_json(a.json, dict(dataset=a.dataset, clients=len(clients), positives=n_pos, device=str(dev), repeat=a.repeat,
                            load_average_end=os.getloadavg()[0], figures=figures))

if __name__ == "__main__":
    main()
