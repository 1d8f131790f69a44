"""Wall time of notebook 06 (the main job) under papermill in each documented mode, on ML-100K, as a user runs it.

    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/notebook_modes.py [--modes default,dp,...] [--json PATH]

Each mode is the notebook's default parameters plus the few the mode documents; every run goes into its own temporary
folder and is timed from papermill's start to its end (the kernel's start, the data, the run, the comparison and plots).
One line per mode: seconds, and the run's headline figure from its results.json."""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

from benchjson import add_json_argument, write_json

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "default": {},
    "one client per user, private rows": dict(partition="user", num_clients=943, private_user_embeddings=True),
    "sequential engine": dict(engine="sequential"),
    "implicit (leave-one-out, HR@10)": dict(objective="implicit", split="leave_one_out"),
    "DP-FedAvg (943 users, z 1.0)": dict(partition="user", num_clients=943, private_user_embeddings=True,
                                         dp_noise_multiplier=1.0, client_fraction=0.3),
    "sign_flip 20% + median": dict(attack="sign_flip", attack_fraction=0.2, aggregator="median"),
    "Flower simulation": dict(engine="flower"),
    "Flower, private rows": dict(engine="flower", private_user_embeddings=True, partition="user", num_clients=20),
}


def run(mode: dict, folder: Path) -> tuple[float, dict]:
    args = [a for k, v in {**mode, "output_dir": str(folder / "run")}.items() for a in ("-p", k, str(v))]
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "06_federated.ipynb"), str(folder / "out.ipynb"), *args,
           "-k", "python3", "--cwd", str(folder)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, MPLBACKEND="Agg"))
    s = time.perf_counter() - t
    if r.returncode: raise RuntimeError(f"{mode}: papermill failed\n{r.stderr[-2000:]}")
    return s, json.loads((folder / "run" / "results.json").read_text())["final"]


def main(argv=None):
    ap = argparse.ArgumentParser(); ap.add_argument("--modes"); add_json_argument(ap); a = ap.parse_args(argv)
    names = list(MODES) if not a.modes else [n for n in MODES if any(n.startswith(m) for m in a.modes.split(","))]
    out = {}
    for name in names:
        with tempfile.TemporaryDirectory() as d:
            s, final = run(MODES[name], Path(d))
        fig = {k: final[k] for k in ("test_rmse", "test_hr@10", "epsilon") if k in final}
        out[name] = dict(params=MODES[name], seconds=s, **fig)
        print(f"{name:40} {s:7.1f} s  " + "  ".join(f"{k} {v:.4f}" for k, v in fig.items()), flush=True)
    write_json(a.json, dict(modes=out))


if __name__ == "__main__":
    main()
