"""Reading a 1,000,209-line ML-1M-format ratings.dat: the seed's pd.read_csv(sep='::', engine='python') against
fedrec_nb.movielens.read_ml1m_ratings, side by side in one run.

    python benchmarks/bench_read_ml1m.py [--repeat 3]

The file is written from ML-1M-shaped generated ratings (ratings.dat itself is not on these machines) in GroupLens's
exact format, `UserID::MovieID::Rating::Timestamp`, then read by both; both results are checked to be equal.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchjson import add_json_argument, write_json
from fedrec_nb.movielens import read_ml1m_ratings
from fedrec_nb.data import load_dataset


def best_of(f, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); out = f(); times.append(time.perf_counter() - t)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    add_json_argument(ap)
    args = ap.parse_args()
    r = load_dataset("synthetic-ml-1m").ratings
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ratings.dat"
        lines = (r.user_id.astype(str) + "::" + r.item_id.astype(str) + "::" + r.rating.astype(int).astype(str)
                 + "::" + r.timestamp.astype(str))
        path.write_text("\n".join(lines) + "\n")
        print(f"{path.name}: {len(r):,} lines, {path.stat().st_size / 1e6:.1f} MB")
        t_seed, seed_df = best_of(lambda: pd.read_csv(path, sep="::", engine="python",
                                                      names=["UserID", "MovieID", "Rating", "Timestamp"]), args.repeat)
        t_ours, ours = best_of(lambda: read_ml1m_ratings(path.read_bytes(), str(path)), args.repeat)
    assert np.array_equal(seed_df.to_numpy(), ours.to_numpy().astype(np.int64)), "the two readers disagree"
    print(f"seed  pd.read_csv(sep='::', engine='python'): {t_seed:6.2f} s  ({len(r) / t_seed:,.0f} lines/s)")
    print(f"ours  read_ml1m_ratings (C engine, checked):  {t_ours:6.2f} s  ({len(r) / t_ours:,.0f} lines/s)")
    print(f"ratio: {t_seed / t_ours:.1f}x faster (best of {args.repeat})")
    write_json(args.json, dict(lines=len(r), seed_reader_s=t_seed, fedrec_reader_s=t_ours, ratio=t_seed / t_ours,
                               repeat=args.repeat))


if __name__ == "__main__":
    main()
