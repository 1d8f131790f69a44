"""scripts/run_federated.sh as a user runs it: from their own folder, with relative paths to their own ratings file."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from fedrec_nb.synthetic import synthetic_movielens

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_federated.sh"


def _env(**extra):
    "The running environment for the script (no setup: it would pip install), and this checkout's fedrec_nb in the kernel."
    env = dict(os.environ, FEDREC_SKIP_SETUP="1", FEDREC_VENV=sys.prefix, MPLBACKEND="Agg", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


@pytest.mark.parametrize("out_by", ["OUT", "output_dir"])
def test_relative_dataset_resolves_from_callers_folder_and_figures_stay_inline(tmp_path, out_by):
    (tmp_path / "mine").mkdir()
    synthetic_movielens(n_users=30, n_items=60, n_ratings=900, seed=3).ratings.to_csv(tmp_path / "mine" / "ratings.csv", index=False)
    r = subprocess.run(["bash", str(SCRIPT), "-p", "dataset", "mine/ratings.csv", "-p", "rounds", "1", "-p", "num_clients", "2",
                        "-p", "local_epochs", "1", "-p", "embedding_dim", "8", "-p", "engine", "sequential", "-p", "device", "cpu",
                        *(["-p", "output_dir", "out"] if out_by == "output_dir" else [])],
                       cwd=tmp_path, env=_env(**({"OUT": "out"} if out_by == "OUT" else {})), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())   # out: the caller's folder, not the repository's
    assert res["params"]["dataset"] == str(tmp_path / "mine" / "ratings.csv") and len(res["rounds"]) == 1
    nb = json.loads((tmp_path / "out" / "06_federated.out.ipynb").read_text())
    images = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the output notebook has no figure (MPLBACKEND=Agg reached the kernel?)"


def test_missing_relative_dataset_says_where_it_looked(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), "-p", "dataset", "mine/ratings.csv"], cwd=tmp_path, env=_env(OUT="out"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"looked at {tmp_path / 'mine' / 'ratings.csv'}" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_without_out_the_folder_is_named_after_the_run(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), "-p", "dataset", "synthetic", "-p", "rounds", "1", "-p", "num_clients", "2",
                        "-p", "local_epochs", "1", "-p", "embedding_dim", "8", "-p", "engine", "sequential", "-p", "device", "cpu",
                        "-p", "central_epochs", "0", "-p", "aggregator", "median"],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "runs" / "synthetic-mf-iid-fedavg-median"   # in the caller's folder, named by run_label
    assert json.loads((out / "results.json").read_text())["params"]["aggregator"] == "median"
    assert (out / "06_federated.out.ipynb").is_file() and f"results: {out}/results.json" in r.stdout
