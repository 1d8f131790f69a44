"""Seconds per round of the secure loopback deployment (TLS, SuperNode authentication) against the insecure one.

    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/bench_secure.py [--repeats 2] [--rounds 3] [--json PATH]

Both are a SuperLink and 2 SuperNodes on 127.0.0.1 started in this process's environment (same flwr, same machine):
`LocalDeployment` (plain HTTP, `--insecure`) and `SecureDeployment` (`secure_commands`' lines: a throwaway CA, HTTPS on
the SuperLink's port, each SuperNode's registered key signing its requests). The same `flwr run flower_app` on each:
ML-100K, 2 IID clients, mf, fedavg, embedding 16, 1 local epoch, batch 256, CPU, seed 0. Per run: the median of the
ServerApp's seconds per round after the first (train + evaluation, as `round` records them), and the seconds to start
the federation; the two kinds alternate `--repeats` times (the machine's load falls on both alike), and the figures are
the medians over the repeats, with the ratio secure / insecure. Torch runs at 1 thread here and in every process started.
"""
import argparse, os, statistics, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "FEDREC_DATA" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["FEDREC_DATA"] = str((ROOT.parent / "shared" / "data").resolve())
os.environ["OMP_NUM_THREADS"] = "1"   # the SuperNodes' ClientApps and the ServerApp inherit it

import flwr
import torch

from benchjson import add_json_argument, write_json
from fedrec_nb.flower import LocalDeployment, SecureDeployment, run_config_from_params

PARAMS = dict(dataset="ml-100k", partition="iid", num_clients=2, model="mf", strategy="fedavg", embedding_dim=16,
              local_epochs=1, batch_size=256, lr=3e-3, device="cpu", seed=0, test_size=0.1, split="random")


def one_run(kind, rounds, folder) -> dict:
    "Start the `kind` deployment, run `rounds` rounds; its start seconds, per-round seconds and final RMSE."
    cls = SecureDeployment if kind == "secure" else LocalDeployment
    cfg = run_config_from_params(dict(PARAMS, rounds=rounds, output_dir=str(Path(folder) / "out")))
    t0 = time.perf_counter()
    with cls(num_nodes=2, workdir=Path(folder) / "fl") as dep:
        up = time.perf_counter() - t0
        res = dep.run(ROOT / "flower_app", cfg, timeout=900)
    later = [r["seconds"] for r in res["rounds"][1:]]
    return dict(start_seconds=up, seconds_per_round=statistics.median(later), rounds=[r["seconds"] for r in res["rounds"]],
                test_rmse=res["final"]["test_rmse"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2); ap.add_argument("--rounds", type=int, default=3)
    add_json_argument(ap); a = ap.parse_args(argv)
    if a.rounds < 2: ap.error("--rounds must be 2 or more: the first round also pays for the nodes loading their data")
    torch.set_num_threads(1)
    runs = {"insecure": [], "secure": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.repeats):
            for kind in runs:
                r = one_run(kind, a.rounds, Path(tmp) / f"{kind}{rep}")
                runs[kind].append(r)
                print(f"{kind} #{rep + 1}: start {r['start_seconds']:.1f} s, rounds {[round(s, 2) for s in r['rounds']]} s, "
                      f"RMSE {r['test_rmse']:.10f}", flush=True)
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("seconds_per_round", "start_seconds")} for k, v in runs.items()}
    ratio = med["secure"]["seconds_per_round"] / med["insecure"]["seconds_per_round"]
    same = {r["test_rmse"] for v in runs.values() for r in v}
    print(f"seconds per round (median of rounds 2..{a.rounds}, median of {a.repeats} runs): insecure "
          f"{med['insecure']['seconds_per_round']:.2f}, secure {med['secure']['seconds_per_round']:.2f}, secure / insecure {ratio:.2f}x")
    print(f"start of the federation: insecure {med['insecure']['start_seconds']:.1f} s, secure {med['secure']['start_seconds']:.1f} s")
    print(f"final test RMSE: {len(same)} distinct value(s) over all runs: {sorted(same)}")
    write_json(a.json, dict(flwr=flwr.__version__, params=PARAMS, rounds=a.rounds, repeats=a.repeats, medians=med,
                            secure_over_insecure=ratio, runs=runs))


if __name__ == "__main__":
    main()
