"""Time each robust aggregator (fedrec_nb.robust) and DP-FedAvg's aggregate (fedrec_nb.privacy) against the plain
weighted mean, on the same update matrix in the same process, and print the ratios.

    python benchmarks/bench_robust.py                    # 943 one-user clients, an ML-100K `mf` update of width 8
    python benchmarks/bench_robust.py --dim 32           # the same at width 32
    python benchmarks/bench_robust.py --clients 6040 --users 6040 --items 3706 --dim 8   # ML-1M-sized
    python benchmarks/bench_robust.py --loop-clients 60  # also time Krum's distances as a Python double loop

Protocol: U is (K, P) float32, P = users*d + items*d + users + items + 1 (every parameter of `mf`: both embedding
tables, both bias tables, the offset), laid out as the engine flattens a one-user client's delta: the client's own
user row and bias, the item rows and biases of about `--rated` items it rated (Poisson, drawn with weights
following a long tail), and the offset; zeros elsewhere. Weights are proportional to the rated counts. Each operation
runs once as warm-up (the masked median and trimmed mean take `U != 0` as the touched coordinates), then `--repeats` times; the median time is reported with its ratio to the weighted mean (w @ U).
The `sparse` rows are the same aggregators on the touched entries (`fedrec_nb.robust.aggregate_sparse`, what `Defences`
runs), from one `sparse_from_dense` built beforehand (timed on its own row).
`--loop-clients N` times the textbook double loop of squared distances on N clients and scales it by (K/N)^2.
"""
from __future__ import annotations

import argparse, sys, time

from benchjson import add_json_argument, write_json
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fedrec_nb.privacy import clip_updates, dp_aggregate  # noqa: E402
from fedrec_nb.privacy import dp_aggregate_sparse  # noqa: E402
from fedrec_nb.robust import aggregate, aggregate_sparse, pairwise_sq_distances, sparse_from_dense  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=943, help="K: sampled clients in the round")
    p.add_argument("--users", type=int, default=943)
    p.add_argument("--items", type=int, default=1682)
    p.add_argument("--dim", type=int, default=8, help="embedding width of mf")
    p.add_argument("--rated", type=float, default=106.0, help="mean number of items a client touched")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--krum-f", type=int, default=47, help="attackers assumed by krum / multi_krum (5%% of 943)")
    p.add_argument("--loop-clients", type=int, default=0, help="time a Python double loop of distances on N clients")
    p.add_argument("--seed", type=int, default=0)
    add_json_argument(p)
    a = p.parse_args(argv)
    for name in ("clients", "users", "items", "dim", "repeats"):
        if getattr(a, name) < 1: p.error(f"--{name.replace('_', '-')} must be >= 1")
    if a.clients <= 2 * a.krum_f + 2: p.error(f"--krum-f {a.krum_f}: Krum needs --clients > 2 * krum_f + 2")
    return a


def updates(a):
    "The (K, P) update matrix and the weights, laid out as described in the module docstring."
    rng = np.random.default_rng(a.seed)
    d, nu, ni, K = a.dim, a.users, a.items, a.clients
    P = nu * d + ni * d + nu + ni + 1
    U = torch.zeros(K, P)
    item_p = 1.0 / np.arange(1, ni + 1) ** 0.8
    item_p /= item_p.sum()
    counts = np.clip(rng.poisson(a.rated, K), 1, ni)
    g = torch.Generator().manual_seed(a.seed)
    for k in range(K):
        u = k % nu
        items = torch.as_tensor(rng.choice(ni, counts[k], replace=False, p=item_p))
        U[k, u * d:(u + 1) * d] = 0.01 * torch.randn(d, generator=g)
        cols = (nu * d + items[:, None] * d + torch.arange(d)).flatten()
        U[k, cols] = 0.01 * torch.randn(len(cols), generator=g)
        U[k, nu * d + ni * d + u] = 0.01
        U[k, nu * d + ni * d + nu + items] = 0.01 * torch.randn(len(items), generator=g)
        U[k, -1] = 0.001
    w = torch.as_tensor(counts, dtype=torch.float32)
    return U.to(a.device), (w / w.sum()).to(a.device)


def timed(fn, repeats, device):
    def sync():
        if device.startswith("cuda"): torch.cuda.synchronize()
    fn(); sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def loop_distances(U):
    K = U.shape[0]
    D = torch.zeros(K, K, dtype=torch.float64)
    for i in range(K):
        for j in range(i + 1, K):
            D[i, j] = D[j, i] = float(((U[i] - U[j]).double() ** 2).sum())
    return D


def main(argv=None):
    a = parse(argv)
    if a.threads: torch.set_num_threads(a.threads)
    U, w = updates(a)
    K, P = U.shape
    M = U != 0  # the coordinates each client touched
    expected = float(K)  # DP-FedAvg's fixed denominator q * N (here every client of the round counts as expected)
    print(f"K = {K:,} clients, P = {P:,} parameters (mf, d = {a.dim}, {a.users:,} users, {a.items:,} items), "
          f"{torch.get_num_threads()} threads, {a.device}; median of {a.repeats} after a warm-up")
    cases = {"mean (w @ U)": lambda: aggregate(U, w, "mean"),
             "median": lambda: aggregate(U, w, "median"),
             "median (masked)": lambda: aggregate(U, w, "median", mask=M),
             "trimmed_mean (0.1)": lambda: aggregate(U, w, "trimmed_mean", trim_fraction=0.1),
             "trimmed_mean (0.1, masked)": lambda: aggregate(U, w, "trimmed_mean", trim_fraction=0.1, mask=M),
             f"krum (f={a.krum_f})": lambda: aggregate(U, w, "krum", krum_f=a.krum_f),
             f"multi_krum (f={a.krum_f})": lambda: aggregate(U, w, "multi_krum", krum_f=a.krum_f),
             "norm_bound (1.0)": lambda: aggregate(U, w, "norm_bound", clip_norm=1.0),
             "clip_updates (0.1)": lambda: clip_updates(U, 0.1),
             "dp_aggregate (0.1, z=1)": lambda: dp_aggregate(U, 0.1, 1.0, expected, torch.Generator(a.device).manual_seed(0))}
    S, Sm = sparse_from_dense(U), sparse_from_dense(U, M)   # the touched entries (what `Defences` aggregates)
    cases.update({"sparse_from_dense (U, M)": lambda: sparse_from_dense(U, M),
                  "sparse median (masked)": lambda: aggregate_sparse(Sm, w, "median"),
                  "sparse trimmed_mean (masked)": lambda: aggregate_sparse(Sm, w, "trimmed_mean", trim_fraction=0.1),
                  f"sparse krum (f={a.krum_f})": lambda: aggregate_sparse(S, w, "krum", krum_f=a.krum_f),
                  f"sparse multi_krum (f={a.krum_f})": lambda: aggregate_sparse(S, w, "multi_krum", krum_f=a.krum_f),
                  "sparse foolsgold": lambda: aggregate_sparse(S, w, "foolsgold"),
                  "sparse norm_bound (1.0)": lambda: aggregate_sparse(S, w, "norm_bound", clip_norm=1.0),
                  "sparse dp_aggregate": lambda: dp_aggregate_sparse(S, 0.1, 1.0, expected, torch.Generator(a.device).manual_seed(0))})
    base, rows = None, []
    print(f"{'operation':28s} {'seconds':>10s} {'x mean':>8s}")
    for name, fn in cases.items():
        t = timed(fn, a.repeats, a.device)
        base = base or t
        print(f"{name:28s} {t:10.4f} {t / base:8.1f}")
        rows.append(dict(operation=name, seconds=t, ratio_to_mean=t / base))
    out = dict(clients=K, parameters=P, device=a.device, repeats=a.repeats, rows=rows)
    if a.loop_clients:
        n = min(a.loop_clients, K)
        Us = U[:n].cpu()
        t_loop = timed(lambda: loop_distances(Us), 1, "cpu") * (K / n) ** 2
        t_gram = timed(lambda: pairwise_sq_distances(U), a.repeats, a.device)
        print(f"Krum's distances, double loop over {n} clients scaled to {K:,}: {t_loop:.2f} s; batched Gram: "
              f"{t_gram:.4f} s ({t_loop / t_gram:.0f}x)")
        out.update(loop_distances_scaled_s=t_loop, gram_distances_s=t_gram)
    write_json(a.json, out)


if __name__ == "__main__":
    main()
