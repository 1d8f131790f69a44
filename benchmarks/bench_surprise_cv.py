"""Surprise's published ML-100K benchmark, rerun: 5-fold `cross_validate` with `KFold(random_state=0)`.

Prints, for SVD, KNNBasic (Surprise's default: user-based MSD, k=40), KNNBaseline and BaselineOnly, the measured
RMSE/MAE next to the figures of Surprise's README and the difference; exits with status 1 if any difference exceeds
the tolerance (0.006 by default). ML-100K is loaded with `fedrec_nb.movielens.load_movielens` (FEDREC_DATA, the cache,
or a checked download) and handed to Surprise with `Dataset.load_from_df(..., Reader(rating_scale=(1, 5)))`.

    python benchmarks/bench_surprise_cv.py [--data-dir DIR] [--tol 0.006] [--models SVD,KNNBasic] [--n-jobs 1]
"""
import argparse, sys, time

from benchjson import add_json_argument, write_json
from fedrec_nb.movielens import load_movielens
from fedrec_nb.mf_knn import PUBLISHED_ML100K, published_benchmark


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="folder holding ml-100k.zip (default: FEDREC_DATA, then the cache)")
    p.add_argument("--tol", type=float, default=0.006, help="largest allowed |measured - published|")
    p.add_argument("--models", default=",".join(PUBLISHED_ML100K), help=f"comma-separated subset of {list(PUBLISHED_ML100K)}")
    p.add_argument("--n-jobs", type=int, default=1, help="joblib workers of cross_validate")
    add_json_argument(p)
    a = p.parse_args(argv)
    names = [m.strip() for m in a.models.split(",") if m.strip()]
    bad = [m for m in names if m not in PUBLISHED_ML100K]
    if bad or not names: p.error(f"--models: unknown {bad or names}; choose from {list(PUBLISHED_ML100K)}")

    from surprise import SVD, KNNBasic, KNNBaseline, BaselineOnly
    make = {"SVD": lambda: SVD(random_state=0), "KNNBasic": lambda: KNNBasic(verbose=False),
            "KNNBaseline": lambda: KNNBaseline(verbose=False), "BaselineOnly": lambda: BaselineOnly(verbose=False)}
    ratings = load_movielens("ml-100k", a.data_dir).ratings
    print(f"ML-100K: {len(ratings):,} ratings; protocol: surprise.model_selection.cross_validate, "
          f"KFold(n_splits=5, random_state=0), default parameters (SVD random_state=0)")
    t0 = time.perf_counter()
    table = published_benchmark(ratings, {n: make[n]() for n in names}, n_jobs=a.n_jobs)
    print(f"{'model':13} {'RMSE':>7} {'publ.':>7} {'diff':>8}   {'MAE':>7} {'publ.':>7} {'diff':>8}   {'seconds':>7}")
    for r in table.itertuples():
        print(f"{r.model:13} {r.rmse:7.4f} {r.published_rmse:7.3f} {r.diff_rmse:+8.4f}   {r.mae:7.4f} "
              f"{r.published_mae:7.3f} {r.diff_mae:+8.4f}   {r.seconds:7.1f}")
    worst = float(table[["diff_rmse", "diff_mae"]].abs().to_numpy().max())
    ok = worst <= a.tol
    print(f"largest |difference| {worst:.4f} {'<=' if ok else '>'} tolerance {a.tol}: {'OK' if ok else 'FAIL'} "
          f"({time.perf_counter() - t0:.0f} s in all)")
    write_json(a.json, dict(protocol="surprise cross_validate, KFold(5, random_state=0), default parameters", tolerance=a.tol,
                            largest_difference=worst, ok=ok, rows=table.to_dict(orient="records")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
