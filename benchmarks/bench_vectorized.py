"""Time one round of local training, client by client (`local_train_sequential`) and many clients at once
(`local_train_vectorized`), on the same clients with the same seed; print both sides, the ratio, the largest
relative difference of their deltas and the peak memory.

    python benchmarks/bench_vectorized.py users                      # 943 one-user clients of ML-100K
    python benchmarks/bench_vectorized.py users --preset per-user    # the same with figure 4's per-user configuration
    python benchmarks/bench_vectorized.py iid                        # the seed's 10 IID clients of ML-100K
    python benchmarks/bench_vectorized.py users --dataset synthetic-ml-1m --seq-clients 600   # 6,040 one-user clients
    python benchmarks/bench_vectorized.py iid --dataset synthetic-ml-1m --device cuda --no-seq

Protocol: the seed's 90/10 random split (seed 42), `partition` 'user' (one client per user) or 'iid' (10 clients),
one round of `--epochs` local epochs with Adam(`--lr`), batches of `--batch-size`, weighted FedAvg weights. Each path
first runs once on a few clients (warm-up: allocator, vmap set-up), then is timed on all of them. `--seq-clients N`
times the sequential path on the first N clients only and scales its time to all clients by their share of rows
(printed as 'scaled'), for federations where the full sequential round takes minutes. `--private` keeps the user rows
on their clients (`PrivateState`, a fresh one for each path). `--preset per-user` takes the model, width, batch size and
learning rate of 06_federated's per-user figure (`PER_USER` in benchmarks/federated_figures.py: mf, 8 factors, batch 32,
lr 0.02, private user embeddings) with one local epoch; options given on the command line win over the preset.
"""
from __future__ import annotations

import argparse, os, sys, time
from pathlib import Path

from benchjson import add_json_argument, write_json

import numpy as np
import torch


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("setting", choices=["users", "iid"], help="one client per user, or --clients IID clients")
    p.add_argument("--dataset", default="ml-100k", help="ml-100k, synthetic-ml-1m, ... (fedrec_nb.data.DATASET_NAMES)")
    p.add_argument("--model", default="expanded", help="expanded (the seed's), hybrid, mf")
    p.add_argument("--embedding-dim", type=int, default=None, help="default: 50 for expanded (the seed's), 32 otherwise")
    p.add_argument("--clients", type=int, default=10, help="number of IID clients (setting 'iid')")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--mu", type=float, default=0.0, help="FedProx mu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of the vectorized path (default 1, as the sequential path uses; 0: torch's default)")
    p.add_argument("--max-clients", type=int, default=None, help="clients per group of the vectorized path")
    p.add_argument("--rounds", type=int, default=1, help="timed rounds of each path (the mean is reported)")
    p.add_argument("--no-seq", action="store_true", help="time the vectorized path only")
    p.add_argument("--seq-clients", type=int, default=None, help="time the sequential path on this many clients and scale")
    p.add_argument("--plain", action="store_true",
                   help="also time the textbook loop: a full copy of the model per client, Adam over all its parameters")
    p.add_argument("--private", action="store_true", help="private user embeddings (rows stay on their client)")
    p.add_argument("--preset", choices=["per-user"], default=None,
                   help="per-user: the configuration of 06_federated's per-user figure, one local epoch")
    add_json_argument(p)
    a = p.parse_args(argv)
    if a.preset == "per-user":
        from federated_figures import PER_USER
        given = {x.split("=")[0].lstrip("-").replace("-", "_") for x in (argv if argv is not None else sys.argv[1:])
                 if x.startswith("--")}
        for k in ("model", "embedding_dim", "batch_size", "lr"):
            if k not in given: setattr(a, k, PER_USER[k])
        if "private" not in given: a.private = PER_USER["private_user_embeddings"]
    return a


def plain_loop(net, gp, clients, weights, features, cfg, seed, round_idx, device):
    """The plain client-by-client loop as the seed and Flower's quickstart write it: a full copy of the model per
    client and Adam over all of its parameters (whole embedding tables included), same batches as the engine."""
    import copy
    import torch.nn.functional as F
    from fedrec_nb.federated import client_generator
    delta = {n: torch.zeros_like(t) for n, t in gp.items()}
    for k, c in enumerate(clients):
        local = copy.deepcopy(net)
        with torch.no_grad():
            for n, p in local.named_parameters(): p.copy_(gp[n])
        opt = torch.optim.Adam(local.parameters(), lr=cfg.lr)
        g = client_generator(seed, round_idx, c.cid)
        for _ in range(cfg.local_epochs):
            order = torch.randperm(c.n_train, generator=g).to(device)
            for s in range(0, c.n_train, cfg.batch_size):
                idx = order[s:s + cfg.batch_size]
                loss = F.mse_loss(local(features.batch(c.users[idx], c.items[idx])), c.ratings[idx])
                if cfg.mu > 0:
                    loss = loss + cfg.mu / 2 * sum(((p - gp[n]) ** 2).sum() for n, p in local.named_parameters())
                opt.zero_grad(); loss.backward(); opt.step()
        with torch.no_grad():
            for n, p in local.named_parameters(): delta[n] += float(weights[k]) * (p - gp[n])
    return delta


def main(argv=None):
    a = parse(argv)
    os.environ.setdefault("FEDREC_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    from fedrec_nb.splits import split_ratings
    from fedrec_nb.features import encode_features, encode_ratings
    from fedrec_nb.data import load_dataset
    from fedrec_nb.models import build_model
    from fedrec_nb.partitions import partition
    from fedrec_nb.federated import build_clients, local_train_sequential, FedAvg, LocalConfig, PrivateState
    from fedrec_nb.vectorized import local_train_vectorized, relative_difference, peak_memory

    dev = torch.device(a.device)
    t0 = time.perf_counter()
    data = load_dataset(a.dataset, seed=42)
    train, _ = split_ratings(data.ratings, "random", 0.1, 42)
    feats = encode_features(data)
    u, i, y = encode_ratings(train, feats)
    k = feats.n_users if a.setting == "users" else a.clients
    parts = partition("user" if a.setting == "users" else "iid", train, data, k, 0.5, 42)
    clients = build_clients(u, i, y, parts, u[:0], i[:0], y[:0], np.zeros(0, int))
    clients = [c for c in clients if c.n_train > 0]
    if dev.type == "cuda":  # data resident on the device
        from fedrec_nb.federated import ClientData
        clients = [ClientData(c.cid, c.users.to(dev), c.items.to(dev), c.ratings.to(dev)) for c in clients]
    featsd = feats.to(dev)
    dim = a.embedding_dim or (50 if a.model == "expanded" else 32)
    torch.manual_seed(42)
    net = build_model(a.model, feats, dim, data.rating_scale).to(dev)
    gp = {n: p.detach().clone() for n, p in net.named_parameters()}
    cfg = LocalConfig(a.epochs, a.batch_size, a.lr, a.mu)
    w = FedAvg().client_weights([c.n_train for c in clients])
    rows = sum(c.n_train for c in clients)
    samples = rows * a.epochs
    print(f"{a.dataset}, {len(clients):,} {'one-user' if a.setting == 'users' else 'IID'} clients, {rows:,} training rows, "
          f"model {a.model} (dim {dim}), {a.epochs} local epoch(s), batch {a.batch_size}, lr {a.lr}, mu {a.mu}, "
          f"{'private' if a.private else 'shared'} user rows, "
          f"device {dev}{' (' + torch.cuda.get_device_name(dev) + ')' if dev.type == 'cuda' else ''}, "
          f"vectorized path on {a.threads or torch.get_num_threads()} thread(s) (sequential: its own choice); set-up {time.perf_counter() - t0:.1f} s")

    def sync():
        if dev.type == "cuda": torch.cuda.synchronize(dev)

    def held_rows(cl):
        "With --private: a PrivateState in which every client already holds its rows (a round after its first); else None."
        if not a.private: return None
        ps = PrivateState(net.user_params, gp)
        for c in cl: ps.get(c)
        return ps

    def timed(fn, cl, ww):
        ps = held_rows(cl)  # prepared outside the timing, as the state a run carries from round to round
        sync(); t = time.perf_counter(); out = fn(cl, ww, private=ps); sync()
        return out, time.perf_counter() - t, ps

    def vec(cl, ww, r=0, private=None):
        return local_train_vectorized(net, gp, cl, ww, featsd, cfg, 42, r, private=private, device=dev,
                                      max_clients=a.max_clients, num_threads=a.threads or None)
    def seq(cl, ww, r=0, private=None):
        return local_train_sequential(net, gp, cl, ww, featsd, cfg, 42, r, private=private, device=dev)

    warm = clients[:: max(1, len(clients) // 8)][:8]
    ww = FedAvg().client_weights([c.n_train for c in warm])
    vec(warm, ww, private=held_rows(warm))
    if dev.type == "cuda": torch.cuda.reset_peak_memory_stats(dev)
    vt = []
    for r in range(a.rounds):
        upd_v, t, held_v = timed(vec, clients, w); vt.append(t)
    t_vec = float(np.mean(vt))
    mem = peak_memory(dev)
    res = dict(setting=a.setting, preset=a.preset, private=a.private, dataset=a.dataset, clients=len(clients), rows=rows, samples=samples, model=a.model,
               embedding_dim=dim, epochs=a.epochs, batch_size=a.batch_size, mu=a.mu, device=str(dev),
               vectorized_s=t_vec, vectorized_samples_per_s=samples / t_vec, peak_memory_bytes=mem,
               peak_memory_kind="torch.cuda.max_memory_allocated" if dev.type == "cuda" else "peak RSS of the process")
    print(f"vectorized: {t_vec:8.3f} s per round ({samples / t_vec:,.0f} samples/s), rounds timed {a.rounds}; "
          f"peak memory {mem / 2**30:.2f} GiB ({res['peak_memory_kind']})")
    if not a.no_seq:
        sub = clients if a.seq_clients is None else clients[: a.seq_clients]
        seq(sub[:2], FedAvg().client_weights([c.n_train for c in sub[:2]]), private=held_rows(sub[:2]))
        upd_s, t_seq, held_s = timed(seq, sub, w[: len(sub)] if a.seq_clients else w)
        share = sum(c.n_train for c in sub) / rows
        t_seq_all = t_seq / share
        how = "" if a.seq_clients is None else f" (timed on {len(sub):,} clients, {share:.1%} of the rows: {t_seq:.2f} s, scaled)"
        print(f"sequential: {t_seq_all:8.3f} s per round ({samples / t_seq_all:,.0f} samples/s){how}")
        print(f"ratio     : vectorized is {t_seq_all / t_vec:.1f}x faster")
        res.update(sequential_s=t_seq_all, sequential_samples_per_s=samples / t_seq_all, sequential_timed_clients=len(sub),
                   speedup=t_seq_all / t_vec)
        if a.seq_clients is None:
            rd = max(relative_difference(upd_s.delta, upd_v.delta).values())
            new = lambda d: {n: gp[n] + d[n] for n in d}
            rp = max(relative_difference(new(upd_s.delta), new(upd_v.delta)).values())
            print(f"largest relative difference, per parameter: of the deltas {rd:.1e}, of the new global parameters {rp:.1e}")
            res.update(max_relative_difference_delta=rd, max_relative_difference_params=rp)
            if a.private:
                held = lambda ps: {n: torch.cat([ps.rows[c.cid][n] for c in clients]) for n in ps.names}
                rh = max(relative_difference(held(held_s), held(held_v)).values())
                print(f"largest relative difference of the private user rows the clients keep: {rh:.1e}")
                res.update(max_relative_difference_private=rh)
    if a.plain and a.private:
        print("plain loop: skipped (it has no private user rows)")
    elif a.plain:
        sub = clients if a.seq_clients is None else clients[: a.seq_clients]
        plain_loop(net, gp, sub[:2], w[:2], featsd, cfg, 42, 0, dev)
        sync(); t = time.perf_counter()
        d_plain = plain_loop(net, gp, sub, w[: len(sub)], featsd, cfg, 42, 0, dev); sync()
        t_plain = (time.perf_counter() - t) / (sum(c.n_train for c in sub) / rows)
        print(f"plain loop: {t_plain:8.3f} s per round ({samples / t_plain:,.0f} samples/s)"
              f"{'' if a.seq_clients is None else ' (scaled from ' + str(len(sub)) + ' clients)'}")
        print(f"ratio     : vectorized is {t_plain / t_vec:.1f}x faster than the plain loop")
        res.update(plain_s=t_plain, plain_samples_per_s=samples / t_plain, speedup_vs_plain=t_plain / t_vec)
        if a.seq_clients is None:
            rd = max(relative_difference({n: gp[n] + d_plain[n] for n in upd_v.delta},
                                         {n: gp[n] + upd_v.delta[n] for n in upd_v.delta}).values())
            print(f"largest relative difference of the new global parameters, plain loop vs vectorized: {rd:.1e}")
            res.update(max_relative_difference_params_plain=rd)
    write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
