"""Round time of DP-FedAvg and of every robust aggregator against plain FedAvg, 943 one-user clients of ML-100K.

    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/bench_defences.py [--rounds 4] [--fraction 1.0]
        [--threads 1] [--dataset ml-1m] [--device cuda] [--json results/defences.json]

Every configuration is a `run_federated` run in this process on the same experiment (biased MF, 8 factors, private user
rows, batch 32, one local epoch, vectorized engine); the first round of each run is left out as warm-up and the mean
training time of the others (`train_seconds`: local training of every sampled client plus the server's aggregation) is
compared with plain FedAvg's, which sums the updates inside the engine without building the per-client matrix.
The server's side works on the touched entries of the updates (`fedrec_nb.robust.SparseUpdates`): per-column ranks for
the median and the trimmed mean, a sparse Gram matrix for Krum, Multi-Krum and FoolsGold, norms from the touched values
for the norm bound and DP's clipping. `--json PATH` writes the figures with the thread count, the CPU model and torch's
version; `--dataset ml-1m` runs the 6,040 one-user clients of ML-1M.
"""
import argparse

import numpy as np
import torch

from benchjson import add_json_argument, write_json
from fedrec_nb.experiment import prepare_experiment
from fedrec_nb.federated import run_federated

CONFIGS = [
    ("fedavg (mean)", dict()),
    ("dp_fedavg z=1.8", dict(dp_noise_multiplier=1.8, dp_clip=0.1, server_lr=40.0, dp_seeded_noise=True)),
    ("median", dict(aggregator="median")),
    ("trimmed_mean", dict(aggregator="trimmed_mean", trim_fraction=0.1)),
    ("krum", dict(aggregator="krum", krum_f=5)),
    ("multi_krum", dict(aggregator="multi_krum", krum_f=5)),
    ("norm_bound", dict(aggregator="norm_bound", clip_norm=0.05)),
    ("foolsgold", dict(aggregator="foolsgold")),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--fraction", type=float, default=1.0, help="client_fraction (DP samples by Poisson sampling with it)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    add_json_argument(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    exp = prepare_experiment(a.dataset, None, 0, 0.1, "random", "runs/bench_defences")
    n = exp.train.user_id.nunique()
    base = dict(model="mf", partition="user", num_clients=n, private_user_embeddings=True, embedding_dim=8, batch_size=32,
                lr=0.02, local_epochs=1, client_fraction=a.fraction, rounds=a.rounds, device=a.device, progress=False,
                plots=False, output_dir="runs/bench_defences", overwrite=True, seed=0, experiment=exp)   # one folder, every configuration in turn
    rows = []
    for name, kw in CONFIGS:
        r = run_federated(**base, **kw)
        t = [h["train_seconds"] for h in r["rounds"][1:]]
        rows.append((name, float(np.mean(t)), float(np.mean([h["clients"] for h in r["rounds"][1:]])), r["final"]["engine"],
                     r["final"].get("test_rmse")))
        print(f"{name:18s} {rows[-1][1]:.3f} s/round ({rows[-1][2]:.0f} clients, {rows[-1][3]})", flush=True)
    base_t = rows[0][1]
    print(f"\n{n} one-user clients, client_fraction {a.fraction}, mean over rounds 2..{a.rounds}\n")
    print("| server step | s/round | x plain FedAvg |")
    print("|---|---|---|")
    for name, t, *_ in rows: print(f"| {name} | {t:.3f} | {t / base_t:.2f} |")
    write_json(a.json, dict(dataset=a.dataset, device=a.device, clients=int(n), client_fraction=a.fraction, rounds=a.rounds,
                   rows=[dict(server_step=name, seconds_per_round=t, ratio_to_fedavg=t / base_t, clients_per_round=k, engine=e,
                              test_rmse=rmse) for name, t, k, e, rmse in rows]))


if __name__ == "__main__":
    main()
