"""Central top-N baselines on implicit feedback (nbs/05b_implicit.ipynb): ML-100K, leave-one-out, 3 seeds.

    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/implicit_figures.py [--seeds 0,1,2] [--device cpu]
    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/implicit_figures.py --sweep   # the light tuning

Protocol: `split_ratings(..., "leave_one_out")` (each user's latest rating held out; ties at the latest second: the last of
the tied rows in the file's order), every other rating a positive; 99 negatives per test user drawn once (seed 0) and shared by every model.
Most-popular, BPR-MF and NeuMF with `fedrec_nb.implicit.CENTRAL_CONFIGS`; the seed sets initialisation, training negatives
and batch order. HR@10 and NDCG@10 under `sampled` (the held-out item among its 99 negatives) and `full` (among every item
the user did not train on); ties count against the held-out item. Prints the table (mean ± std over seeds) and writes it,
with every run, to benchmarks/results/implicit_figures.log (the file is replaced only when the run finishes).

--sweep tunes on a validation split instead (the second-latest rating of each user: `split_ratings` again on the training
part) and prints sampled HR@10/NDCG@10 for a few settings of each model (also written to
benchmarks/results/implicit_sweep.log); the test items are never used for it.
"""
import argparse, itertools, sys, time

from benchjson import add_json_argument, write_json
from pathlib import Path

import pandas as pd
import torch

from fedrec_nb.splits import split_ratings
from fedrec_nb.features import encode_features
from fedrec_nb.data import load_dataset
from fedrec_nb.experiment import atomic_write
from fedrec_nb.implicit import CENTRAL_CONFIGS, central_topn, implicit_data, summarize_topn

LOG = Path(__file__).resolve().parent / "results" / "implicit_figures.log"
SWEEP_LOG = LOG.with_name("implicit_sweep.log")
CSV = LOG.with_suffix(".csv")
SWEEP = {
    "bpr_mf": [dict(embedding_dim=d, lr=lr, weight_decay=wd, epochs=e) for d, lr, wd, e in
               [(32, 5e-3, 0.0, 15), (64, 5e-3, 1e-5, 10), (64, 5e-3, 1e-5, 15), (64, 5e-3, 1e-5, 20), (64, 5e-3, 1e-4, 15), (128, 2e-3, 1e-5, 20)]],
    "neumf": [dict(embedding_dim=d, lr=lr, weight_decay=wd, epochs=e) for d, lr, wd, e in
              [(16, 5e-3, 0.0, 15), (32, 2e-3, 0.0, 10), (32, 2e-3, 0.0, 15), (32, 2e-3, 0.0, 20), (64, 1e-3, 0.0, 15), (32, 1e-3, 0.0, 20)]],
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the models are small)")
    ap.add_argument("--sweep", action="store_true", help="tune on the validation split instead of reporting the test figures")
    add_json_argument(ap)
    a = ap.parse_args(argv)
    try: seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError: ap.error(f"--seeds {a.seeds!r}: give comma-separated integers, e.g. 0,1,2")
    torch.set_num_threads(a.threads)
    data = load_dataset("ml-100k"); feats = encode_features(data)
    train, test = split_ratings(data.ratings, "leave_one_out")
    lines = []
    def out(s=""): print(s, flush=True); lines.append(s)
    if a.sweep:
        train, test = split_ratings(train, "leave_one_out")   # validation: each user's second-latest rating
        d = implicit_data(train, test, feats)
        out(f"validation split: {len(d.train_users):,} training interactions, {len(d.test_users)} validation items; seed {seeds[0]}")
        for name, grid in SWEEP.items():
            for over in grid:
                r = central_topn(name, d, feats, seed=seeds[0], device=a.device, **over)
                out(f"{name:7s} {over}: sampled HR@10 {r[0]['hr@10']:.4f} NDCG@10 {r[0]['ndcg@10']:.4f}; full HR@10 {r[1]['hr@10']:.4f}  ({r[0]['seconds']:.0f} s)")
        atomic_write(SWEEP_LOG, lambda p: Path(p).write_text("\n".join(lines) + "\n"))
        print(f"wrote {SWEEP_LOG.relative_to(LOG.parents[2])}")
        return write_json(a.json, dict(sweep=lines))
    d = implicit_data(train, test, feats)
    out(f"ML-100K leave-one-out (ties: last row): {len(d.train_users):,} training interactions, {len(d.test_users)} test users, "
        f"{d.n_items} items; 99 shared negatives per user (seed 0); seeds {seeds}; device {a.device}")
    out(f"configs: {CENTRAL_CONFIGS}")
    rows, t0 = central_topn("most_popular", d, feats, device=a.device), time.perf_counter()
    for name, s in itertools.product(CENTRAL_CONFIGS, seeds):
        r = central_topn(name, d, feats, seed=s, device=a.device)
        rows += r
        out(f"  {name} seed {s}: " + "; ".join(f"{x['protocol']} HR@10 {x['hr@10']:.4f} NDCG@10 {x['ndcg@10']:.4f}" for x in r) + f"  ({r[0]['seconds']:.0f} s)")
    table = summarize_topn(rows)
    out()
    out("HR@10 and NDCG@10, mean ± std over seeds (most-popular is deterministic):")
    out(table.to_markdown() if hasattr(table, "to_markdown") and _has_tabulate() else table.to_string())
    out()
    out("Sampled metrics are inflated and can order models differently from full ranking (Krichene and Rendle, KDD 2020): "
        "with 99 negatives an item at full rank r among ~1,600 candidates has expected sampled rank ~r*99/1600, so sampled "
        "HR@10 counts roughly the items in the full top 160.")
    out(f"total {time.perf_counter() - t0:.0f} s")
    atomic_write(LOG, lambda p: Path(p).write_text("\n".join(lines) + "\n"))
    import pandas as pd   # one row per model, seed and protocol: what nbs/06n_federated_ranking.ipynb reads
    atomic_write(CSV, lambda p: pd.DataFrame([{k: v for k, v in r.items() if k != "per_user"} for r in rows]).to_csv(p, index=False))
    print(f"wrote {LOG.relative_to(LOG.parents[2])} and {CSV.name}")
    write_json(a.json, dict(seeds=seeds, device=a.device, rows=[{k: v for k, v in r.items() if k != "per_user"} for r in rows]))


def _has_tabulate():
    try: import tabulate  # noqa: F401
    except ImportError: return False
    return True


if __name__ == "__main__":
    sys.exit(main())
