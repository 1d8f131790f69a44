"""The figures of 07a_cold_start and 07_case_study over several seeds: mean and std.

    FEDREC_DATA=<folder with ml-100k.zip> MPLBACKEND=Agg .venv/bin/python benchmarks/case_study_figures.py [--seeds 42,43,44]

Protocol: ML-100K, 20% held out. Cold start: every model of `fedrec_nb.cold_start.MODEL_KEYS` with its default settings
(`FED_GLOBAL`, `FED_PERSONAL`, `CENTRAL`), fitted on the `user` and on the `temporal` split; held-out RMSE and MAE per
bucket of the user's number of training ratings. The seed sets the split (the temporal split does not depend on it), the
initialisations, the batch orders and the client sampling. Beyond accuracy: on the `random` split (07's), each model's
top-10 unrated films for every training user: catalogue coverage, mean popularity rank, self-information, intra-list
diversity of genres, share of the 100 most-rated films. Prints markdown tables and writes every run to
runs/case_study_figures/. Three seeds took 36 min on the shared 2-core development machine under load (one seed alone:
about 6 min); the output of that run is benchmarks/results/case_study_figures.log.
"""
import argparse, time

from benchjson import add_json_argument, write_json
from pathlib import Path

import numpy as np
import pandas as pd

from fedrec_nb.case_study import beyond_accuracy, top_n_positions
from fedrec_nb.cold_start import MODEL_KEYS, MODEL_NAMES, bucket_labels, error_by_bucket, fit_models
from fedrec_nb.experiment import prepare_experiment, save_results

OUT = Path("runs/case_study_figures")
RANKING_KEYS = ["bias", "svd", "knn_item", "knn_user", "central", "fed_global", "fed_personal", "most_popular"]
METRICS = ["coverage", "mean_popularity_rank", "self_information", "intra_list_diversity", "blockbuster_share"]


def ms(x, digits=4):
    x = np.asarray(x, float)
    return f"{x.mean():.{digits}f} ± {x.std():.{digits}f}"


def cold_table(rows, metric, splits):
    df = pd.concat(rows, ignore_index=True)
    for sp in splits:
        d = df[df.split == sp]
        buckets = [b for b in bucket_labels() + ["all"] if b in set(d.bucket)]
        n = d.groupby("bucket").n_ratings.mean()
        print(f"\n{metric.upper()}, {sp} split (mean ± std over seeds; held-out ratings per bucket in the header)\n")
        print("| model | " + " | ".join(f"{b} ({n[b]:,.0f})" for b in buckets) + " |")
        print("|---" * (len(buckets) + 1) + "|")
        for key in MODEL_KEYS:
            g = d[d.key == key].groupby("bucket")[metric]
            print(f"| {MODEL_NAMES[key]} | " + " | ".join(ms(g.get_group(b)) if b in g.groups else "" for b in buckets) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--splits", default="user,temporal")
    ap.add_argument("--skip-ranking", action="store_true", help="only the cold-start tables")
    add_json_argument(ap)
    a = ap.parse_args()
    seeds, splits = [int(s) for s in a.seeds.split(",")], a.splits.split(",")
    cold, beyond, t0 = [], [], time.time()
    for seed in seeds:
        for sp in splits:
            exp = prepare_experiment("ml-100k", None, seed, 0.2, sp, OUT / sp / str(seed))
            fitted, _ = fit_models(exp, MODEL_KEYS, seed, verbose=False)
            cold.append(error_by_bucket(fitted, exp.train, exp.test).assign(split=sp, seed=seed))
            print(f"seed {seed}, {sp} split: all-rows RMSE " + ", ".join(
                f"{r.model} {r.rmse:.4f}" for r in cold[-1][cold[-1].bucket == "all"].itertuples()) + f" ({time.time() - t0:.0f} s)", flush=True)
        if a.skip_ranking: continue
        exp = prepare_experiment("ml-100k", None, seed, 0.2, "random", OUT / "random" / str(seed))
        fitted, _ = fit_models(exp, RANKING_KEYS, seed, verbose=False)
        users = np.sort(exp.train.user_id.unique())
        lists = {MODEL_NAMES[k]: top_n_positions(m, exp.train, exp.data.items.item_id, users, 10) for k, m in fitted.items()}
        beyond.append(beyond_accuracy(lists, exp.train, exp.data.items).assign(seed=seed))
        print(f"seed {seed}, random split: beyond-accuracy figures done ({time.time() - t0:.0f} s)", flush=True)
    cold_table(cold, "rmse", splits)
    cold_table(cold, "mae", splits)
    if beyond:
        b = pd.concat(beyond, ignore_index=True)
        print("\nTop-10 of unrated films for every training user, random 80/20 split (mean ± std over seeds)\n")
        print("| model | " + " | ".join(METRICS) + " |\n" + "|---" * (len(METRICS) + 1) + "|")
        for name, g in b.groupby("model", sort=False):
            print(f"| {name} | " + " | ".join(ms(g[c], 1 if c == "mean_popularity_rank" else 4) for c in METRICS) + " |")
    save_results(OUT, dict(seeds=seeds, splits=splits, cold_start=pd.concat(cold, ignore_index=True),
                           beyond_accuracy=pd.concat(beyond, ignore_index=True) if beyond else None),
                 pd.concat(cold, ignore_index=True), name="figures")
    print(f"\n{time.time() - t0:.0f} s in all; runs in {OUT}/")
    write_json(a.json, dict(seeds=seeds, splits=splits, cold_start=pd.concat(cold, ignore_index=True).to_dict(orient="records"),
                            beyond_accuracy=pd.concat(beyond, ignore_index=True).to_dict(orient="records") if beyond else None))


if __name__ == "__main__":
    main()
