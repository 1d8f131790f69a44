"""Federated engine: resume equality, bad parameters, partitions, private embeddings, a papermill run."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fedrec_nb.synthetic import synthetic_movielens
from fedrec_nb.splits import split_ratings
from fedrec_nb.features import encode_features, encode_ratings
from fedrec_nb.data import load_dataset
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


# --- checkpoints that are safe ------------------------------------------------------------------------------------------
from fedrec_nb.experiment import prepare_experiment
from fedrec_nb.federated import CheckpointError, load_checkpoint


class _Evil:
    "A pickle that would run a shell command when loaded by a plain `torch.load`."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_without_running_it(tmp_path):
    marker, ck = tmp_path / "pwned", tmp_path / "checkpoints" / "round_0001.pt"
    ck.parent.mkdir()
    torch.save({"round": 1, "x": _Evil(marker)}, ck)
    with pytest.raises(CheckpointError, match="round_0001.pt: refused"):
        load_checkpoint(ck)
    with pytest.raises(CheckpointError, match="round_0001.pt"):
        run_federated(output_dir=tmp_path, resume=True, **dict(SMALL, rounds=2))
    assert not marker.exists()


def test_truncated_or_non_finite_checkpoint_names_the_file(tmp_path):
    run_federated(output_dir=tmp_path, **dict(SMALL, rounds=1))
    ck = latest_checkpoint(tmp_path / "checkpoints")
    state = load_checkpoint(ck)
    state["global_params"]["item_embedding.weight"][0, 0] = float("nan")
    torch.save(state, ck)
    with pytest.raises(CheckpointError, match=f"{ck.name}: non-finite.*item_embedding.weight"):
        run_federated(output_dir=tmp_path, resume=True, **dict(SMALL, rounds=2))
    ck.write_bytes(ck.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=f"{ck.name}: truncated or corrupt"):
        run_federated(output_dir=tmp_path, resume=True, **dict(SMALL, rounds=2))


def test_resume_refuses_other_data_and_fewer_rounds(tmp_path):
    exp = prepare_experiment("synthetic", seed=42, test_size=0.1, output_dir=tmp_path)
    run_federated(output_dir=tmp_path, experiment=exp, **dict(SMALL, rounds=2))
    with pytest.raises(ParameterError, match="parameter rounds=1: below round 2"):
        run_federated(output_dir=tmp_path, experiment=exp, resume=True, **dict(SMALL, rounds=1))
    r0 = exp.train.rating.iloc[0]
    exp.train = exp.train.assign(rating=np.r_[[2.0 if r0 == 1 else 1.0], exp.train.rating.to_numpy()[1:]])
    with pytest.raises(ParameterError, match="other data or another split.*rows_sha256"):
        run_federated(output_dir=tmp_path, experiment=exp, resume=True, **dict(SMALL, rounds=3))


def test_resume_without_checkpoint_starts_fresh_and_says_so(tmp_path, capsys):
    run_federated(output_dir=tmp_path, resume=True, **dict(SMALL, rounds=1))
    assert "no checkpoint" in capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["resume"]["from_round"] == 0 and "started fresh" in saved["resume"]["note"]
    again = run_federated(output_dir=tmp_path, resume=True, **dict(SMALL, rounds=2))
    assert again["resume"]["from_round"] == 1 and [r["round"] for r in again["rounds"]] == [1, 2]


# --- client updates that cannot poison the model ------------------------------------------------------------------------
POISON = dict(dataset="synthetic", model="mf", partition="iid", num_clients=10, rounds=3, local_epochs=1, batch_size=256,
              lr=3e-3, embedding_dim=8, device="cpu", progress=False, plots=False, seed=42)


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    "A clean experiment, and the same one whose client 3 holds 5 NaN ratings."
    out = tmp_path_factory.mktemp("poison")
    clean = prepare_experiment("synthetic", seed=42, test_size=0.1, output_dir=out)
    parts = partition("iid", clean.train, clean.data, 10, 0.5, 42)
    bad = prepare_experiment("synthetic", seed=42, test_size=0.1, output_dir=out)
    rating = bad.train.rating.to_numpy(copy=True)
    rating[np.asarray(parts[3])[:5]] = np.nan
    bad.train = bad.train.assign(rating=rating)
    return clean, bad


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_a_nan_client_is_left_out_and_training_goes_on(tmp_path, poisoned, engine):
    clean, bad = poisoned
    ref = run_federated(output_dir=tmp_path / "clean", experiment=clean, engine=engine, **POISON)
    res = run_federated(output_dir=tmp_path / "bad", experiment=bad, engine=engine, **POISON)
    assert res["final"]["engine"] == engine
    for r in res["rounds"]:
        assert [x["cid"] for x in r["rejected_updates"]] == [3] and "non-finite" in r["rejected_updates"][0]["reason"]
        assert not r["skipped"] and np.isfinite(r["test_rmse"])
    assert all(r["rejected"] == 0 for r in ref["rounds"])
    assert abs(res["final"]["test_rmse"] - ref["final"]["test_rmse"]) < 0.02   # one client in ten left out: within noise
    saved = json.loads((tmp_path / "bad" / "results.json").read_text())
    assert saved["rounds"][0]["rejected_updates"][0]["cid"] == 3


def test_both_engines_reject_the_same_update_and_agree(tmp_path, poisoned):
    _, bad = poisoned
    a = run_federated(output_dir=tmp_path / "s", experiment=bad, engine="sequential", **POISON)
    b = run_federated(output_dir=tmp_path / "v", experiment=bad, engine="vectorized", **POISON)
    assert [r["rejected_updates"] for r in a["rounds"]] == [r["rejected_updates"] for r in b["rounds"]]
    assert abs(a["final"]["test_rmse"] - b["final"]["test_rmse"]) < 1e-4


def test_a_round_with_every_update_rejected_is_skipped(tmp_path, poisoned, capsys):
    _, bad = poisoned
    res = run_federated(output_dir=tmp_path, experiment=bad, engine="sequential", **dict(POISON, num_clients=1, rounds=2))
    assert all(r["skipped"] and r["rejected"] == 1 for r in res["rounds"])
    assert "every client update was rejected, round skipped" in capsys.readouterr().out
    assert np.isfinite(res["final"]["test_rmse"])


# --- parameters -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,match", [
    (dict(lr=float("inf")), "parameter lr=inf: must be a finite number"),
    (dict(mu=float("inf")), "parameter mu=inf"),
    (dict(server_lr=float("-inf")), "parameter server_lr=-inf"),
    (dict(alpha=float("inf")), "parameter alpha=inf"),
])
def test_infinite_parameters_are_refused(tmp_path, bad, match):
    with pytest.raises(ParameterError, match=match):
        run_federated(output_dir=tmp_path, **dict(SMALL, **bad))


def test_output_dir_that_cannot_be_written_is_refused_before_loading(tmp_path, monkeypatch):
    import fedrec_nb.experiment as ex
    monkeypatch.setattr(ex, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the check"))
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ParameterError, match="parameter output_dir=.*taken.*is a file"):
        run_federated(output_dir=tmp_path / "taken", **SMALL)
    with pytest.raises(ParameterError, match="parameter output_dir=.*cannot be created"):
        run_federated(output_dir=tmp_path / "taken" / "run", **SMALL)
    with pytest.raises(ParameterError, match="parameter checkpoint_dir="):
        run_federated(output_dir=tmp_path / "ok", checkpoint_dir=tmp_path / "taken", **SMALL)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_parent_is_refused(tmp_path):
    ro = tmp_path / "ro"; ro.mkdir(); ro.chmod(0o555)
    try:
        with pytest.raises(ParameterError, match="not writable"):
            run_federated(output_dir=ro / "run", **SMALL)
    finally: ro.chmod(0o755)


def test_results_record_the_experiment_actually_run(tmp_path):
    exp = prepare_experiment("synthetic", seed=42, test_size=0.25, split="user", output_dir=tmp_path)
    res = run_federated(output_dir=tmp_path, experiment=exp, **dict(SMALL, rounds=1))
    p = json.loads((tmp_path / "results.json").read_text())["params"]
    assert (p["dataset"], p["test_size"], p["split"]) == ("synthetic", 0.25, "user")
    assert res["params"]["test_size"] == 0.25


def test_papermill_misspelled_parameter_stops_in_first_cell(tmp_path):
    pytest.importorskip("papermill")
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "nbs" / "06_federated.ipynb"), str(tmp_path / "out.ipynb"),
           "-p", "dataset", "synthetic", "-p", "output_dir", str(tmp_path / "run"), "-p", "num_client", "5",
           "-k", "python3", "--language", "python", "--cwd", str(ROOT / "nbs")]
    r = subprocess.run(cmd, env=dict(os.environ, MPLBACKEND="Agg"), capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "unknown parameter num_client" in out and "num_clients" in out
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resume_on_cuda_gives_the_uninterrupted_metrics(tmp_path):
    kw = dict(SMALL, device="cuda", engine="vectorized", partition="user", client_fraction=0.5, private_user_embeddings=True)
    full = run_federated(output_dir=tmp_path / "full", **kw)
    run_federated(output_dir=tmp_path / "cut", **dict(kw, rounds=2))
    resumed = run_federated(output_dir=tmp_path / "cut", resume=True, **kw)
    assert resumed["resume"]["from_round"] == 2
    assert resumed["final"]["test_rmse"] == pytest.approx(full["final"]["test_rmse"], abs=1e-6)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_local_optimizer_is_torch_optim_step_for_step(kind):
    "`LocalOptimizer` gives `torch.optim`'s numbers bit for bit, a tensor that skips a step included (it keeps a zero gradient)."
    from fedrec_nb.client import LocalOptimizer
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=g), torch.randn(4, generator=g), torch.randn(2, generator=g)]
    data = torch.randn(6, 3, generator=g)
    def loss(ps, k):   # the last tensor joins only from the second step on
        out = (data @ ps[0].T).pow(2).mean() + ps[1].sin().sum()
        return out + (ps[2].pow(3).sum() if k > 0 else 0)
    a = [t.clone().requires_grad_(True) for t in start]
    b = [t.clone().requires_grad_(True) for t in start]
    groups = [([a[0], a[2]], 0.05), ([a[1]], 0.2)] if kind == "sgd" else [(a, 0.05)]
    ref = (torch.optim.SGD([dict(params=[b[0], b[2]], lr=0.05), dict(params=[b[1]], lr=0.2)], lr=0.05, foreach=True)
           if kind == "sgd" else torch.optim.Adam(b, lr=0.05, foreach=True))
    opt = LocalOptimizer(groups, kind)
    for k in range(4):
        opt.step(loss(a, k))
        ref.zero_grad(set_to_none=False); loss(b, k).backward(); ref.step()
        for x, y in zip(a, b): assert torch.equal(x.detach(), y.detach())


def test_a_client_trains_without_importing_torch_dynamo():
    "A fresh process (a Flower ClientApp's, per message) trains a client without `torch._dynamo` (about 1 s to import)."
    code = ("import sys, torch\n"
            "from fedrec_nb.client import ClientData, LocalConfig, train_client\n"
            "from fedrec_nb.features import encode_features, encode_ratings\n"
            "from fedrec_nb.models import build_model\n"
            "from fedrec_nb.synthetic import synthetic_movielens\n"
            "syn = synthetic_movielens(n_users=20, n_items=80, n_ratings=600, seed=1); f = encode_features(syn)\n"
            "u, i, y = encode_ratings(syn.ratings, f); net = build_model('mf', f, 4)\n"
            "g = {n: p.detach().clone() for n, p in net.named_parameters()}\n"
            "for opt in ('adam', 'sgd'): train_client(net, g, ClientData(0, u, i, y), None, LocalConfig(1, 32, 0.01, optimizer=opt), 0, 0, f)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
