"""Federated engine: resume equality, bad parameters, partitions, private embeddings, a papermill run."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fedrec_nb.data import encode_features, encode_ratings, load_dataset, split_ratings, synthetic_movielens
from fedrec_nb.experiment import ParameterError
from fedrec_nb.federated import (ClientData, LocalConfig, PrivateState, build_model, local_train_sequential,
                                 run_federated, latest_checkpoint)
from fedrec_nb.partitions import PARTITIONS, partition

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(dataset="synthetic", model="mf", num_clients=8, rounds=4, local_epochs=1, batch_size=512, lr=3e-3,
             embedding_dim=8, device="cpu", engine="sequential", progress=False, plots=False)


@pytest.fixture(scope="module")
def synthetic():
    data = load_dataset("synthetic")
    train, test = split_ratings(data.ratings, "random", 0.1, 0)
    return data, train, test


def _metrics(res):
    skip = {"seconds", "train_seconds", "samples_per_s"}
    return [{k: v for k, v in r.items() if k not in skip} for r in res["rounds"]]


@pytest.mark.parametrize("strategy,private", [("fedadam", True), ("fedavgm", False)])
def test_resume_gives_the_uninterrupted_metrics(tmp_path, strategy, private):
    kw = dict(SMALL, strategy=strategy, private_user_embeddings=private, partition="user", client_fraction=0.5)
    full = run_federated(output_dir=tmp_path / "full", **kw)
    run_federated(output_dir=tmp_path / "cut", **dict(kw, rounds=2))           # stopped after round 2
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name == "round_0002.pt"
    resumed = run_federated(output_dir=tmp_path / "cut", resume=True, **kw)    # continues with rounds 3 and 4
    assert _metrics(resumed) == _metrics(full)
    assert resumed["final"]["test_rmse"] == full["final"]["test_rmse"]
    assert [r["round"] for r in resumed["rounds"]] == [1, 2, 3, 4]


def test_resume_refuses_other_settings(tmp_path):
    run_federated(output_dir=tmp_path, **dict(SMALL, rounds=1))
    with pytest.raises(ParameterError, match="resume=True"):
        run_federated(output_dir=tmp_path, resume=True, **dict(SMALL, rounds=2, lr=1e-2))


@pytest.mark.parametrize("bad,match", [
    (dict(num_clients=100_000), "parameter num_clients=100000"),
    (dict(rounds=0), "parameter rounds=0"),
    (dict(alpha=0.0), "parameter alpha=0.0"),
    (dict(alpha=-1), "parameter alpha=-1"),
    (dict(strategy="fedsgd"), "parameter strategy='fedsgd'"),
    (dict(partition="geo"), "parameter partition='geo'"),
    (dict(model="svd"), "parameter model='svd'"),
    (dict(client_fraction=0), "parameter client_fraction=0"),
    (dict(private_user_embeddings="yes"), "parameter private_user_embeddings='yes'"),
])
def test_bad_parameters_stop_before_work(tmp_path, bad, match):
    with pytest.raises(ParameterError, match=match):
        run_federated(output_dir=tmp_path, **dict(SMALL, **bad))
    assert not (tmp_path / "results.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="parameter device='cuda'"):
        run_federated(output_dir=tmp_path, **dict(SMALL, device="cuda"))


@pytest.mark.parametrize("method", PARTITIONS)
def test_partitions_cover_every_training_row_exactly_once(synthetic, method):
    data, train, _ = synthetic
    for k in (1, 7, 50):
        parts = partition(method, train, data, k, alpha=0.3, seed=3)
        assert len(parts) == k and all(len(p) > 0 for p in parts)
        rows = np.concatenate(parts)
        assert len(rows) == len(train) and np.array_equal(np.sort(rows), np.arange(len(train)))


def test_one_client_per_user(synthetic):
    data, train, _ = synthetic
    parts = partition("user", train, data, train.user_id.nunique())
    assert sorted(train.user_id.iloc[p].nunique() for p in parts) == [1] * train.user_id.nunique()


def test_private_embeddings_never_leave_the_client():
    data = synthetic_movielens(n_users=40, n_items=80, n_ratings=1_000, seed=2)
    f = encode_features(data)
    u, i, y = encode_ratings(data.ratings, f)
    clients = [ClientData(k, u[m], i[m], y[m]) for k, m in enumerate([u % 2 == 0, u % 2 == 1])]
    torch.manual_seed(0)
    net = build_model("hybrid", f, 8, data.rating_scale)
    g0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    private = PrivateState(net.user_params, g0)
    upd = local_train_sequential(net, g0, clients, torch.tensor([0.5, 0.5]), f, LocalConfig(2, 64, 1e-2), 0, 0, private)
    assert not set(net.user_params) & set(upd.delta), "user rows were sent to the server"
    assert set(upd.delta) == {n for n, _ in net.named_parameters()} - set(net.user_params)
    assert upd.delta["item_embedding.weight"].abs().sum() > 0            # shared parameters did move
    for c in clients:                                                   # each client holds only its own users' rows
        assert torch.equal(private.users[c.cid], torch.unique(c.users))
        assert not torch.equal(private.rows[c.cid]["user_embedding.weight"], g0["user_embedding.weight"][private.users[c.cid]])


def test_global_user_table_unchanged_in_a_private_run(tmp_path):
    res = run_federated(output_dir=tmp_path, **dict(SMALL, rounds=2, private_user_embeddings=True, partition="user"))
    state = torch.load(latest_checkpoint(tmp_path / "checkpoints"), weights_only=False)
    torch.manual_seed(SMALL.get("seed", 42))
    exp = res["experiment"]
    init = build_model("mf", exp.features, 8, exp.data.rating_scale)
    g = state["global_params"]
    for n, p in init.named_parameters():
        if n in init.user_params: assert torch.equal(g[n], p.detach()), n     # never averaged, never updated
    assert not torch.equal(g["item_embedding.weight"], dict(init.named_parameters())["item_embedding.weight"].detach())


def test_papermill_run_writes_results(tmp_path):
    pytest.importorskip("papermill")
    out = tmp_path / "run"
    env = dict(os.environ, MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "06_federated.ipynb"), str(tmp_path / "out.ipynb"),
           "-p", "dataset", "synthetic", "-p", "output_dir", str(out), "-p", "rounds", "2", "-p", "model", "mf",
           "-p", "embedding_dim", "8", "-p", "batch_size", "1024", "-p", "device", "cpu", "-p", "engine", "sequential",
           "-k", "python3", "--language", "python", "--cwd", str(ROOT / "nbs")]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    res = json.loads((out / "results.json").read_text())
    assert {"params", "rounds", "clients", "final"} <= set(res)
    assert [r["round"] for r in res["rounds"]] == [1, 2]
    assert {"round", "test_mae", "test_rmse", "train_loss", "seconds"} <= set(res["rounds"][0])
    assert res["params"]["dataset"] == "synthetic" and len(res["clients"]) == 10
    assert 0.3 < res["final"]["test_mae"] < 1.5
    assert len(pd.read_csv(out / "results.csv")) == 2
    for png in ("client_losses.png", "client_mae.png", "metrics_over_rounds.png"): assert (out / png).stat().st_size > 0


def test_papermill_bad_parameter_stops_in_first_cell(tmp_path):
    pytest.importorskip("papermill")
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "06_federated.ipynb"), str(tmp_path / "out.ipynb"),
           "-p", "dataset", "synthetic", "-p", "output_dir", str(tmp_path / "run"), "-p", "strategy", "fedsgd",
           "-k", "python3", "--language", "python", "--cwd", str(ROOT / "nbs")]
    r = subprocess.run(cmd, env=dict(os.environ, MPLBACKEND="Agg"), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "parameter strategy='fedsgd'" in (r.stdout + r.stderr)
    assert not (tmp_path / "run" / "results.json").exists()
