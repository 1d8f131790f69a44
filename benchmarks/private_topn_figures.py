"""Private top-N (issue 22, figure 2): DP-FedAvg under the implicit objective, one client per user with the user side on the
device, for FedMF and the PFedRec-style model: epsilon (delta 1e-5, Opacus's accountant `--accountant`) against sampled and
full HR@10, for five noise levels and the non-private run.

    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/private_topn_figures.py [--seeds 0] [--rounds 30] [--jobs 12]

Leave-one-out split (each user's latest rating, the same for every seed), 99 shared sampled negatives, Poisson sampling with
q = 0.3, clip 0.1, the noise multiplier the accountant needs for each target epsilon after all rounds (`noise_for_epsilon`);
the non-private run is the same configuration without clipping or noise. One CSV row per run
(benchmarks/results/private_topn_ml-100k.csv) and a markdown table; the notebook 06m draws its plot from the CSV."""
import argparse, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchjson import add_json_argument, write_json  # noqa: E402
from fedrec_nb.experiment import atomic_write, prepare_experiment  # noqa: E402
from fedrec_nb.federated import run_federated  # noqa: E402
from fedrec_nb.parameters import DEFAULTS  # noqa: E402
from fedrec_nb.privacy import ACCOUNTANTS, epsilon, noise_for_epsilon  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COMMON = dict(partition="user", objective="implicit", split="leave_one_out", private_user_embeddings=True, num_negatives=4,
              batch_size=256, embedding_dim=8, lr=0.05, local_epochs=1, client_fraction=0.3, device="cpu")
MODELS = {"fedmf": dict(model="mf", loss="bpr"), "pfedrec": dict(model="pfedrec", loss="bce")}
EPSILONS = [None, 20.0, 10.0, 5.0, 2.0, 1.0]   # None: the non-private run
DP = dict(dp_clip=0.1, server_lr=25.0)          # the rating table's clip and server step (06m section 1)


def one(name, eps, seed, rounds, accountant):
    "One run: its figures as a CSV row."
    torch.set_num_threads(1)
    exp = prepare_experiment("ml-100k", None, 42, 0.1, "leave_one_out", "runs/private_topn")
    p = dict(COMMON, **MODELS[name], rounds=rounds, num_clients=exp.train.user_id.nunique())
    if eps is None: p.update(server_lr=10.0)   # the non-private Adam clients' server step (federated_ranking_figures' sweep)
    else: p.update(DP, dp_noise_multiplier=noise_for_epsilon(eps, p["client_fraction"], rounds, 1e-5, accountant),
                   dp_accountant=accountant, dp_seeded_noise=True)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        f = run_federated(seed=seed, output_dir=d, plots=False, progress=False, ranking=False, experiment=exp, **p)["final"]
    z = p.get("dp_noise_multiplier", 0.0)
    row = dict(run=name, seed=seed, target_epsilon=eps, noise_multiplier=z, rounds=rounds, accountant=accountant if z else None,
               **{f"epsilon_{a}": (epsilon(z, p["client_fraction"], rounds, 1e-5, a) if z else None) for a in ACCOUNTANTS},
               sampled_hr10=f["test_hr@10"], sampled_ndcg10=f["test_ndcg@10"], full_hr10=f["test_hr@10_full"],
               full_ndcg10=f["test_ndcg@10_full"], wall_seconds=time.perf_counter() - t0)
    print(row, flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--accountant", default=DEFAULTS["dp_accountant"], choices=ACCOUNTANTS)
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time, one process each")
    add_json_argument(ap)
    a = ap.parse_args(argv)
    tasks = [(m, e, s, a.rounds, a.accountant) for s in a.seeds for m in MODELS for e in EPSILONS]
    with ProcessPoolExecutor(a.jobs) as pool: rows = list(pool.map(one, *zip(*tasks)))
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    atomic_write(RESULTS / "private_topn_ml-100k.csv", lambda t: df.to_csv(t, index=False))
    g = df.groupby(["run", "target_epsilon"], dropna=False, sort=False)
    print(f"\nDP-FedAvg top-N, ML-100K, one client per user, q = 0.3, {a.rounds} rounds, noise by {a.accountant}, seeds {a.seeds}\n")
    print(g[["epsilon_rdp", "epsilon_prv", "sampled_hr10", "sampled_ndcg10", "full_hr10", "full_ndcg10"]].mean().round(4).to_string())
    write_json(a.json, dict(seeds=a.seeds, rounds=a.rounds, accountant=a.accountant, rows=rows))


if __name__ == "__main__":
    main()
