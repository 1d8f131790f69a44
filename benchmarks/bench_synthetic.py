"""synthetic_movielens at 1M and 10M ratings: seconds and peak memory (RSS), each in a fresh process.

    python benchmarks/bench_synthetic.py [--sizes 1000000 10000000]

Targets (issue 2): 1M ratings in under 5 s; 10M in under 60 s and 4 GB.
"""
import argparse
import json
import subprocess
import sys

from benchjson import add_json_argument, write_json

CHILD = r"""
import json, resource, sys, time
from fedrec_nb.synthetic import synthetic_movielens
n = int(sys.argv[1]); nu = max(943, n // 150); ni = max(1682, int(nu * 0.6))
t = time.perf_counter(); d = synthetic_movielens(n_users=nu, n_items=ni, n_ratings=n, seed=0)
s = time.perf_counter() - t
print(json.dumps(dict(n=len(d.ratings), users=nu, items=ni, seconds=s,
                      peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    add_json_argument(ap)
    a, rows = ap.parse_args(), []
    for n in a.sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['n']:>11,} ratings ({r['users']:,} users x {r['items']:,} items): {r['seconds']:6.1f} s, "
              f"peak RSS {r['peak_gb']:.2f} GB")
        rows.append(r)
    write_json(a.json, dict(rows=rows))


if __name__ == "__main__":
    main()
