"""Ranking under the `full` protocol (every item a user did not rate in training; relevant = every held-out item):
fedrec_nb.metrics.evaluate_ranking against a plain per-user Python loop, side by side in one run.

    python benchmarks/bench_ranking.py [--models svd,bias,...|all] [--loop-users 300] [--skip-1m]

1. ML-100K (real, from FEDREC_DATA or the cache), seed's 80/20 random split, seed 42: for each model, the seconds
   `evaluate_ranking(..., protocol="full", k=10)` takes (model already fitted; fit time shown apart) and its
   Recall@10 / NDCG@10.
2. The same for SVD by the per-user loop (score the user's row, drop training items, sort in Python, count):
   both figures must agree, and the ratio of the times is printed.
3. synthetic-ml-1m (6,040 users x 3,883 items, 1,000,209 generated ratings; real ML-1M users and movies when
   ml-1m-metadata.zip is in FEDREC_DATA): SVD fit seconds and full-protocol seconds; the per-user loop is run on
   `--loop-users` users and its time scaled to all users (printed as an extrapolation).
"""
import argparse
import time

import numpy as np

from benchjson import add_json_argument, write_json

from fedrec_nb.baselines import BASELINES
from fedrec_nb.experiment import prepare_experiment
from fedrec_nb.metrics import evaluate_ranking
from fedrec_nb.mf_knn import SURPRISE_MODELS, make_model

DEFAULT_MODELS = ["global_mean", "item_mean", "user_mean", "bias", "svd", "nmf", "baseline_only", "slope_one",
                  "co_clustering", "knn_basic_item_cosine", "knn_basic_user_cosine", "knn_baseline_item_pearson_baseline"]


def build(key):
    return BASELINES[key]() if key in BASELINES else make_model(key, seed=0)


def full_by_loop(model, train, test, items, k=10, seed=42, users=None):
    "Recall@k and NDCG@k of `full`, one user at a time in plain Python (the same seeded tie order)."
    cand = items[np.random.default_rng(seed).permutation(len(items))]
    seen = train.groupby("user_id").item_id.apply(set)
    relevant = test.groupby("user_id").item_id.apply(set)
    rec, ndcg = [], []
    for u in (relevant.index if users is None else users):
        s = model.score_items([u], cand)[0]
        sk = seen.get(u, set())
        ranked = [it for _, _, it in sorted((-sc, j, it) for j, (sc, it) in enumerate(zip(s, cand)) if it not in sk)][:k]
        hit = [it in relevant[u] for it in ranked]
        rec.append(sum(hit) / len(relevant[u]))
        ideal = sum(1 / np.log2(r + 2) for r in range(min(k, len(relevant[u]))))
        ndcg.append(sum(h / np.log2(r + 2) for r, h in enumerate(hit)) / ideal)
    return float(np.mean(rec)), float(np.mean(ndcg))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated keys, or 'all'")
    ap.add_argument("--loop-users", type=int, default=300, help="users the per-user loop ranks on synthetic-ml-1m")
    ap.add_argument("--skip-1m", action="store_true")
    add_json_argument(ap)
    args = ap.parse_args()
    keys = list(BASELINES) + list(SURPRISE_MODELS) if args.models == "all" else args.models.split(",")

    exp = prepare_experiment("ml-100k", seed=42, test_size=0.2, split="random", output_dir="/tmp/bench_ranking")
    items = exp.data.items.item_id.to_numpy()
    print(f"ML-100K, split=random 80/20 seed 42, protocol 'full', k=10, relevant = every held-out item, "
          f"{len(items):,} candidate items")
    print(f"{'model':38s} {'fit s':>7s} {'rank s':>7s} {'Recall@10':>10s} {'NDCG@10':>8s}")
    fitted, out = {}, dict(ml100k=[])
    for key in keys:
        t = time.perf_counter(); m = build(key).fit(exp.train, exp.data); t_fit = time.perf_counter() - t
        fitted[key] = m
        r = evaluate_ranking(m, exp.train, exp.test, "full", k=10, items=items, seed=42)
        flag = "" if r["seconds"] < 10 else "  (over 10 s)"
        print(f"{key:38s} {t_fit:7.2f} {r['seconds']:7.2f} {r['recall@10']:10.4f} {r['ndcg@10']:8.4f}{flag}")
        out["ml100k"].append(dict(model=key, fit_s=t_fit, rank_s=r["seconds"], recall10=r["recall@10"], ndcg10=r["ndcg@10"]))

    svd = fitted.get("svd") or build("svd").fit(exp.train, exp.data)
    r = evaluate_ranking(svd, exp.train, exp.test, "full", k=10, items=items, seed=42)
    t = time.perf_counter(); loop = full_by_loop(svd, exp.train, exp.test, items); t_loop = time.perf_counter() - t
    assert np.allclose(loop, (r["recall@10"], r["ndcg@10"]), atol=1e-12), (loop, r)
    print(f"\nML-100K SVD, 'full': vectorized {r['seconds']:.2f} s, per-user loop {t_loop:.2f} s, "
          f"ratio {t_loop / r['seconds']:.0f}x (same Recall@10 {loop[0]:.4f}, NDCG@10 {loop[1]:.4f})")

    out["svd_full_vectorized_s"], out["svd_full_loop_s"] = r["seconds"], t_loop
    if args.skip_1m: return write_json(args.json, out)
    t = time.perf_counter()
    big = prepare_experiment("synthetic-ml-1m", seed=42, test_size=0.2, split="random", output_dir="/tmp/bench_ranking")
    t_data = time.perf_counter() - t
    bitems = big.data.items.item_id.to_numpy()
    print(f"\n{big.data}: generated and split in {t_data:.1f} s")
    t = time.perf_counter(); bsvd = build("svd").fit(big.train, big.data); t_fit = time.perf_counter() - t
    r = evaluate_ranking(bsvd, big.train, big.test, "full", k=10, items=bitems, seed=42)
    print(f"SVD fit {t_fit:.1f} s; 'full' Recall@10 {r['recall@10']:.4f} NDCG@10 {r['ndcg@10']:.4f} for "
          f"{r['n_users']:,} users x {len(bitems):,} items in {r['seconds']:.2f} s; fit + rank {t_fit + r['seconds']:.1f} s "
          f"({'under' if t_fit + r['seconds'] < 60 else 'OVER'} 60 s)")
    users = np.sort(big.test.user_id.unique())
    sample = np.random.default_rng(0).choice(users, min(args.loop_users, len(users)), replace=False)
    t = time.perf_counter(); full_by_loop(bsvd, big.train, big.test, bitems, users=sample); t_loop = time.perf_counter() - t
    est = t_loop * len(users) / len(sample)
    print(f"per-user loop: {t_loop:.1f} s for {len(sample)} users, about {est:.0f} s for all {len(users):,} "
          f"(extrapolated); ratio about {est / r['seconds']:.0f}x")
    out["synthetic_ml1m"] = dict(data_s=t_data, svd_fit_s=t_fit, rank_s=r["seconds"], recall10=r["recall@10"],
                                 ndcg10=r["ndcg@10"], users=r["n_users"], items=len(bitems), loop_estimate_s=est)
    write_json(args.json, out)


if __name__ == "__main__":
    main()
