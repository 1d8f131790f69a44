"""Every documented mode of notebook 06 completes under papermill, as a user runs it, and records what was asked
(small parameters: synthetic data, one or two rounds)."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("papermill")


def _run(tmp_path, **params):
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "run"
    base = dict(dataset="synthetic", output_dir=str(out), rounds=2, local_epochs=1, embedding_dim=8, device="cpu", batch_size=512)
    args = [a for k, v in {**base, **params}.items() for a in ("-p", k, str(v))]
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "06_federated.ipynb"), str(tmp_path / "out.ipynb"), *args,
           "-k", "python3", "--language", "python", "--cwd", str(ROOT / "nbs")]
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return json.loads((out / "results.json").read_text())


def test_implicit_objective(tmp_path):
    res = _run(tmp_path, objective="implicit", split="leave_one_out", model="ncf", num_negatives=2)
    assert res["params"]["objective"] == "implicit" and len(res["rounds"]) == 2
    assert {"test_hr@10", "test_ndcg@10", "test_hr@10_full"} <= set(res["final"])


def test_dp_and_an_attack_with_a_robust_aggregator(tmp_path):
    res = _run(tmp_path, dp_noise_multiplier=1.0, dp_clip=0.5, client_fraction=0.5, num_clients=10)
    assert res["final"]["epsilon"] > 0 and all(r["epsilon"] is not None for r in res["rounds"])
    res = _run(tmp_path / "attack", attack="sign_flip", attack_fraction=0.2, aggregator="median", num_clients=10)
    assert res["params"]["aggregator"] == "median" and all(r["malicious"] == 2 for r in res["rounds"])


def test_flower_with_private_user_rows(tmp_path):
    pytest.importorskip("flwr")
    res = _run(tmp_path, engine="flower", private_user_embeddings=True, num_clients=3, rounds=1)
    assert res["final"]["engine"] == "flower" and res["params"]["private_user_embeddings"] is True
    assert res["final"]["test_rmse"] > 0
