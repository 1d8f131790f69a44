"""Every documented mode of notebook 06 completes under papermill, as a user runs it, and records what was asked
(small parameters: synthetic data, one or two rounds)."""
import json, os, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("papermill")


def _run(tmp_path, out="run", **params):
    "Notebook 06 under papermill, in `tmp_path` (its working folder) with `output_dir` `tmp_path/out` (None: the notebook names it)."
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = dict(dataset="synthetic", rounds=2, local_epochs=1, embedding_dim=8, device="cpu", batch_size=512, central_epochs=1,
                **({} if out is None else dict(output_dir=str(tmp_path / out))))
    args = [a for k, v in {**base, **params}.items() for a in ("-p", k, str(v))]
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "06_federated.ipynb"), str(tmp_path / "out.ipynb"), *args,
           "-k", "python3", "--language", "python", "--cwd", str(tmp_path)]
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    found = [tmp_path / out] if out is not None else list((tmp_path / "runs").iterdir())
    assert len(found) == 1, found
    return json.loads((found[0] / "results.json").read_text())


def test_default_folder_and_central_epochs(tmp_path):
    res = _run(tmp_path, out=None, central_epochs=2)
    assert res["params"]["output_dir"] == "runs/synthetic-mf-iid-fedavg" and res["params"]["central_epochs"] == 2
    rows = pd.read_csv(tmp_path / "runs" / "synthetic-mf-iid-fedavg" / "comparison.csv").model.tolist()
    assert rows[0].startswith("synthetic · mf · iid · fedavg, federated (10 clients, 2 rounds x 1 epochs)")
    assert rows[1] == "mf, central, 2 epochs (central_epochs)" and "best of 2 epochs" in rows[2]
    shown = (tmp_path / "out.ipynb").read_text()
    assert "central comparison: 2 epochs (central_epochs; the federated run made 2 passes)" in shown
    assert "results into runs/synthetic-mf-iid-fedavg" in shown
    folder = tmp_path / "runs" / "synthetic-mf-iid-fedavg"
    for png in ("federated_vs_central.png", "client_losses.png", "client_mae.png", "metrics_over_rounds.png"):
        assert (folder / png).stat().st_size > 0, png


def test_implicit_objective(tmp_path):
    res = _run(tmp_path, objective="implicit", split="leave_one_out", model="ncf", num_negatives=2, eval_negatives=50)
    assert res["params"]["objective"] == "implicit" and len(res["rounds"]) == 2 and res["params"]["eval_negatives"] == 50
    assert {"test_hr@10", "test_ndcg@10", "test_hr@10_full"} <= set(res["final"])


def test_dp_and_an_attack_with_a_robust_aggregator(tmp_path):
    res = _run(tmp_path, dp_noise_multiplier=1.0, dp_clip=0.5, client_fraction=0.5, num_clients=10)
    assert res["final"]["epsilon"] > 0 and all(r["epsilon"] is not None for r in res["rounds"])
    table = pd.read_csv(tmp_path / "run" / "comparison.csv")   # the notebook's table shows the epsilon spent
    assert table.epsilon.iloc[0] == pytest.approx(res["final"]["epsilon"]) and "DP z=1.0" in table.model.iloc[0]
    res = _run(tmp_path / "attack", attack="sign_flip", attack_fraction=0.2, aggregator="median", num_clients=10)
    assert res["params"]["aggregator"] == "median" and all(r["malicious"] == 2 for r in res["rounds"])
    table = pd.read_csv(tmp_path / "attack" / "run" / "comparison.csv")
    assert "median · sign_flip 20%" in table.model.iloc[0] and "epsilon" not in table


def test_dp_accountant_prv(tmp_path):
    "dp_accountant='prv': every round's epsilon and the final one are the PRV accountant's (tighter than RDP's), named so."
    from fedrec_nb.privacy import epsilon
    res = _run(tmp_path, dp_noise_multiplier=1.0, dp_clip=0.5, client_fraction=0.5, num_clients=10, dp_accountant="prv",
               central_epochs=0)
    prv, rdp = (epsilon(1.0, 0.5, 2, 1e-5, a) for a in ("prv", "rdp"))
    assert res["params"]["dp_accountant"] == "prv" and res["final"]["accountant"] == "prv (Opacus PRVAccountant)"
    assert res["final"]["epsilon"] == pytest.approx(prv, rel=1e-9) and prv < rdp
    assert res["rounds"][0]["epsilon"] == pytest.approx(epsilon(1.0, 0.5, 1, 1e-5, "prv"), rel=1e-9)


def test_flower_with_private_user_rows(tmp_path):
    pytest.importorskip("flwr")
    res = _run(tmp_path, engine="flower", private_user_embeddings=True, num_clients=3, rounds=1, central_epochs=0)
    assert not (tmp_path / "run" / "comparison.csv").exists() and "central_epochs=0: no central comparison" in (tmp_path / "out.ipynb").read_text()
    assert res["final"]["engine"] == "flower" and res["params"]["private_user_embeddings"] is True
    assert res["final"]["test_rmse"] > 0


@pytest.mark.parametrize("mode", [
    dict(engine="sequential", aggregator="trimmed_mean", attack="scale", attack_fraction=0.2),
    dict(aggregator="krum", attack="noise", attack_fraction=0.1),
    dict(aggregator="multi_krum", attack="sign_flip", attack_fraction=0.2, client_dropout=0.1),
    dict(aggregator="norm_bound", attack="promote_item", attack_fraction=0.2),
    dict(aggregator="foolsgold", partition="dirichlet", own_file=True),
], ids=lambda m: "-".join(str(v) for v in m.values()))
def test_each_attack_and_aggregator(tmp_path, mode):
    "Every attack and aggregator the notebook documents, one run each (the engine and data vary too): the run records them."
    mode = dict(mode)
    if mode.pop("own_file", False):   # a user's own ratings file instead of a named dataset
        from fedrec_nb.synthetic import synthetic_movielens
        tmp_path.mkdir(parents=True, exist_ok=True)
        synthetic_movielens(n_users=80, n_items=150, n_ratings=3000, seed=5).ratings.to_csv(tmp_path / "mine.csv", index=False)
        mode["dataset"] = str(tmp_path / "mine.csv")
    res = _run(tmp_path, central_epochs=0, num_clients=10, **mode)
    for k, v in mode.items(): assert res["params"][k] == v, k
    assert len(res["rounds"]) == 2 and res["final"]["test_rmse"] > 0
    if mode.get("attack", "none") in ("scale", "noise", "sign_flip"): assert all(r["malicious"] >= 1 for r in res["rounds"])
    if mode.get("attack") == "promote_item": assert "test_er@10" in res["final"]
    shown = (tmp_path / "out.ipynb").read_text()
    assert mode["aggregator"] in shown and (mode.get("attack", "none") == "none" or mode["attack"] in shown)   # the run's label


def test_pfedrec_protocol(tmp_path):
    "protocol='pfedrec': validation figures every round, the reported test figures those of the best validation round."
    res = _run(tmp_path, objective="implicit", split="leave_one_out", model="pfedrec", private_user_embeddings=True, rounds=3,
               protocol="pfedrec", client_optimizer="sgd", lr=0.1, item_lr=20.0, strategy="fedavg_unweighted", num_negatives=2,
               eval_negatives=20, central_epochs=0)
    f, rounds = res["final"], res["rounds"]
    assert res["params"]["protocol"] == "pfedrec" and res["params"]["item_lr"] == 20.0 and len(rounds) == 3
    assert all(0 <= r["valid_hr@10"] <= 1 and 0 <= r["test_hr@10"] <= 1 for r in rounds)
    best = max(range(3), key=lambda k: (rounds[k]["valid_hr@10"], -k))   # the earliest of the best
    assert f["selected_round"] == best + 1 and f["selected_valid_hr@10"] == rounds[best]["valid_hr@10"]
    assert f["test_hr@10"] == pytest.approx(rounds[best]["test_hr@10"], abs=1e-9)
    assert f["last_test_hr@10"] == pytest.approx(rounds[-1]["test_hr@10"], abs=1e-9)
    assert 0 <= f["test_hr@10_full"] <= f["test_hr@10"] and "last_test_hr@10_full" in f
