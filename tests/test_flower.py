"""fedrec_nb on Flower: the simulation runtime and a loopback deployment give the built-in engine's figures.

Each test that starts processes (Ray, a SuperLink, SuperNodes) kills every one of them by process id, on success and on
failure (`LocalDeployment` is a context manager; `run_simulation` shuts Ray down itself)."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedrec_nb.movielens import load_movielens
from fedrec_nb.federated import run_federated
from fedrec_nb.flower import LocalDeployment, params_from_run_config, run_config_from_params, run_flower
from test_flower_docs import cmdlines, left_running

ROOT = Path(__file__).resolve().parents[1]
BASE = dict(model="mf", partition="iid", num_clients=2, rounds=2, local_epochs=1, batch_size=256, lr=3e-3,
            strategy="fedavg", embedding_dim=8, device="cpu", seed=0, test_size=0.1, split="random")


@pytest.fixture(scope="module")
def slice_csv(tmp_path_factory):
    "The ratings of ML-100K's first 60 users, as a ratings file (a small real dataset for the multi-process tests)."
    os.environ.pop("FEDREC_NO_DOWNLOAD", None)
    r = load_movielens("ml-100k", download=False).ratings
    path = tmp_path_factory.mktemp("slice") / "ml100k_60_users.csv"
    r[r.user_id <= 60].to_csv(path, index=False)
    return path


def _sequential(params, out):
    return run_federated(**dict(params, output_dir=str(out)), engine="sequential", progress=False, plots=False)


def test_simulation_matches_sequential(tmp_path, slice_csv):
    p = dict(BASE, dataset=str(slice_csv), num_clients=4, strategy="fedadam", private_user_embeddings=True, partition="user")
    seq = _sequential(p, tmp_path / "seq")
    fl = run_flower(dict(p, output_dir=str(tmp_path / "fl")))
    assert fl["params"]["engine"] == "flower"
    assert len(fl["rounds"]) == p["rounds"]
    for a, b in zip(seq["rounds"], fl["rounds"]):
        assert abs(a["test_rmse"] - b["test_rmse"]) < 1e-6 and abs(a["test_mae"] - b["test_mae"]) < 1e-6
    assert fl["rounds"][0]["clients_answered"] == 4 and fl["rounds"][0]["bytes_up"] > 0
    assert (tmp_path / "fl" / "results.json").exists()


def test_loopback_deployment_matches_sequential(tmp_path, slice_csv):
    p = dict(BASE, dataset=str(slice_csv))
    seq = _sequential(p, tmp_path / "seq")
    out = tmp_path / "deployed"
    with LocalDeployment(num_nodes=2, workdir=tmp_path / "fl") as d:
        res = d.run(ROOT / "flower_app", run_config_from_params(dict(p, output_dir=str(out))), timeout=300)
        seen = d.track()   # the SuperLink, the SuperNodes and what they started (SuperExecs, in sessions of their own)
        names = cmdlines(seen) if Path("/proc/self/stat").exists() else ""
        assert len(set(d.node_ports)) == 2   # each SuperNode its own Runtime API port
    assert res["final"]["test_rmse"] == pytest.approx(seq["final"]["test_rmse"], abs=1e-6)
    assert [r["clients_answered"] for r in res["rounds"]] == [2, 2]
    assert "round 1/2:" in d.last_output and "round 2/2:" in d.last_output   # the ServerApp's line per round, streamed
    if Path("/proc/self/stat").exists():   # nothing the deployment started is left, by pid and by process group
        assert "flower-superexec" in names   # they were seen, so the check below means something
        assert left_running(seen) == [] and d.left == {}


def test_dead_node_does_not_hang_the_server(tmp_path, slice_csv):
    p = dict(BASE, dataset=str(slice_csv), rounds=1, round_timeout=25.0)
    out = tmp_path / "deployed"
    with LocalDeployment(num_nodes=2, workdir=tmp_path / "fl") as d:
        d.kill_node(1)   # the SuperLink still lists it: messages go out, no reply comes back
        res = d.run(ROOT / "flower_app", run_config_from_params(dict(p, output_dir=str(out))), timeout=300)
    assert res["rounds"][0]["clients"] == 2 and res["rounds"][0]["clients_answered"] == 1
    assert res["final"]["clients_evaluated"] == 1 and np.isfinite(res["final"]["test_rmse"])


def test_run_config_round_trip_and_unknown_keys():
    p = params_from_run_config({"rounds": 3, "server_lr": "", "lr": 1})
    assert (p["rounds"], p["server_lr"], p["lr"]) == (3, None, 1.0)
    assert params_from_run_config(run_config_from_params(p)) == p
    with pytest.raises(ValueError, match="num_client"):
        params_from_run_config({"num_client": 5})


def test_run_federated_engine_flower(tmp_path, slice_csv):
    "`run_federated(engine='flower')` writes the same results.json and serves the global model as a Recommender."
    p = dict(BASE, dataset=str(slice_csv), rounds=1)
    res = run_federated(**dict(p, output_dir=str(tmp_path / "fl")), engine="flower", progress=False, plots=False)
    seq = _sequential(p, tmp_path / "seq")
    assert res["params"]["engine"] == "flower" and res["final"]["engine"] == "flower"
    assert res["final"]["test_rmse"] == pytest.approx(seq["final"]["test_rmse"], abs=1e-6)
    users, items = seq["experiment"].test.user_id.to_numpy()[:5], seq["experiment"].test.item_id.to_numpy()[:5]
    np.testing.assert_allclose(res["recommender"].predict(users, items), seq["recommender"].predict(users, items), atol=1e-5)
    assert set(seq["rounds"][0]) - set(res["rounds"][0]) <= {"test_mae_unclipped"}
