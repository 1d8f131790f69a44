"""The seams a federated runtime reuses: one client's training, the strategies' aggregate, evaluation as sums, sparse
updates and what they cost in bytes, and no import cycle between the engine's modules."""
import subprocess, sys

import numpy as np
import pytest
import torch

from fedrec_nb.client import (ClientData, LocalConfig, PrivateState, SparseRows, train_client, transfer_nbytes, update_nbytes,
                              accumulate)
from fedrec_nb.splits import split_ratings
from fedrec_nb.features import encode_features, encode_ratings
from fedrec_nb.data import load_dataset
from fedrec_nb.federated import (add_sums, build_clients, eval_sums, evaluate_global, load_params, local_train_sequential,
                                 metrics_from_sums, run_federated, sample_clients)
from fedrec_nb.models import build_model
from fedrec_nb.partitions import client_of_user, partition
from fedrec_nb.strategies import make_strategy


@pytest.fixture(scope="module")
def fed():
    data = load_dataset("synthetic")
    train, test = split_ratings(data.ratings, "random", 0.1, 0)
    f = encode_features(data)
    u, i, y = encode_ratings(train, f); tu, ti, ty = encode_ratings(test, f)
    parts = partition("user", train, data, 40, 0.5, 0)
    owner = client_of_user(u.numpy(), parts, f.n_users)
    clients = build_clients(u, i, y, parts, tu, ti, ty, owner[tu.numpy()])
    return data, f, clients, (tu, ti, ty), owner[tu.numpy()]


def _init(model, f, data):
    torch.manual_seed(0)
    net = build_model(model, f, 8, data.rating_scale)
    return net, {n: p.detach().clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize("model,private,mu", [("mf", False, 0.0), ("hybrid", True, 0.01)])
def test_a_loop_over_train_client_is_the_sequential_engine(fed, model, private, mu):
    data, f, clients, _, _ = fed
    net, g = _init(model, f, data)
    cfg, sampled = LocalConfig(2, 64, 1e-2, mu), clients[:12]
    strat = make_strategy("fedavg")
    w = strat.client_weights([c.n_train for c in sampled])
    ps = PrivateState(net.user_params, g) if private else None
    ref = local_train_sequential(net, g, sampled, w, f, cfg, 3, 1, PrivateState(net.user_params, g) if private else None)
    delta = {n: torch.zeros_like(t) for n, t in g.items() if not (private and n in net.user_params)}
    for k, c in enumerate(sampled):
        res = train_client(net, g, c, ps.get(c)[1] if private else None, cfg, 3, 1, f)
        accumulate(delta, res.update, float(w[k]))
        assert res.stats["train_loss"] == ref.client_stats[k]["train_loss"]
    assert set(delta) == set(ref.delta)
    for n in delta: assert torch.equal(delta[n], ref.delta[n]), n


def test_aggregate_outside_the_loop_is_the_run_loop_step(fed):
    data, f, clients, _, _ = fed
    net, g = _init("mf", f, data)
    cfg, sampled = LocalConfig(1, 64, 1e-2), clients[:10]
    for name in ("fedavg", "fedadam"):
        loop, outside = make_strategy(name), make_strategy(name)
        w = loop.client_weights([c.n_train for c in sampled])
        upd = local_train_sequential(net, g, sampled, w, f, cfg, 0, 0)
        expected = {n: t.clone() for n, t in g.items()}; loop.apply(expected, upd.delta)
        new = outside.aggregate(g, [train_client(net, g, c, None, cfg, 0, 0, f) for c in sampled])
        for n in g: torch.testing.assert_close(new[n], expected[n], rtol=0, atol=1e-7)
        assert outside.last_round["rejected"] == [] and len(outside.last_round["accepted"]) == 10


def test_sparse_and_dense_updates_aggregate_to_the_same_model(fed):
    data, f, clients, _, _ = fed
    net, g = _init("mf", f, data)
    cfg = LocalConfig(1, 64, 1e-2)
    sparse = [train_client(net, g, c, None, cfg, 0, 0, f) for c in clients]
    dense = [train_client(net, g, c, None, cfg, 0, 0, f, sparse=False) for c in clients]
    a, b = make_strategy("fedavg").aggregate(g, sparse), make_strategy("fedavg").aggregate(g, dense)
    for n in g: assert torch.equal(a[n], b[n]), n
    up_s, up_d = sum(update_nbytes(r.update) for r in sparse), sum(update_nbytes(r.update) for r in dense)
    assert up_s < up_d
    for c, r in zip(clients, sparse):   # the bytes run_federated records are the bytes the updates take
        nu, ni = int(torch.unique(c.users).numel()), int(torch.unique(c.items).numel())
        assert transfer_nbytes(net, g, nu, ni) == update_nbytes(r.update)


def test_client_eval_sums_add_up_to_the_global_figures(fed):
    data, f, clients, (tu, ti, ty), test_owner = fed
    net, _ = _init("mf", f, data)
    m, _, _ = evaluate_global(net, f, tu, ti, ty, test_owner, len(clients), data.rating_scale)
    parts = [eval_sums(net, f, c.test_users, c.test_items, c.test_ratings, data.rating_scale) for c in clients]
    total = add_sums(parts)
    assert total["count"] == int((test_owner >= 0).sum()) == len(ty)
    got = metrics_from_sums(total)
    for k in ("test_mae", "test_rmse", "test_mse", "test_mape", "test_r2"):
        assert got[k] == pytest.approx(m[k], rel=1e-12, abs=1e-12), k


def test_sampling_is_reproducible_from_seed_and_round():
    assert np.array_equal(sample_clients(943, 0.1, 7, 3), sample_clients(943, 0.1, 7, 3))
    assert not np.array_equal(sample_clients(943, 0.1, 7, 3), sample_clients(943, 0.1, 7, 4))


def test_every_engine_records_bytes_per_round(tmp_path):
    kw = dict(dataset="synthetic", model="mf", partition="user", num_clients=30, rounds=2, batch_size=64, embedding_dim=8,
              device="cpu", progress=False, plots=False, client_fraction=0.5)
    a = run_federated(output_dir=tmp_path / "s", engine="sequential", **kw)
    b = run_federated(output_dir=tmp_path / "v", engine="vectorized", **kw)
    for r, s in zip(a["rounds"], b["rounds"]):
        assert r["bytes_up"] == s["bytes_up"] > 0 and r["bytes_down"] == s["bytes_down"] > 0
    n_items, dim = a["recommender"].net.item_embedding.weight.shape
    assert a["rounds"][0]["bytes_up"] < 15 * n_items * dim * 4   # far less than 15 full item tables


def test_no_import_cycle_between_the_engine_modules():
    code = ("import sys; import fedrec_nb.client, fedrec_nb.strategies, fedrec_nb.vectorized; "
            "assert 'fedrec_nb.federated' not in sys.modules, 'a seam module imports the run loop'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_federation_is_reproducible_and_one_client_loads_alone(tmp_path, monkeypatch):
    from fedrec_nb import federation as fm
    p = dict(dataset="synthetic", model="mf", partition="dirichlet", num_clients=12, embedding_dim=8, output_dir=str(tmp_path))
    a, b = fm.build_federation(p), fm.build_federation(p)
    assert [c.n_train for c in a.clients] == [c.n_train for c in b.clients]
    for n in a.initial_params: assert torch.equal(a.initial_params[n], b.initial_params[n])
    fm.save_clients(a, tmp_path / "cache")
    monkeypatch.setattr(fm, "build_federation", lambda *x, **k: pytest.fail("re-split for one client"))
    c = fm.load_client(p, 5, tmp_path / "cache")
    assert torch.equal(c.users, a.client(5).users) and torch.equal(c.test_ratings, a.client(5).test_ratings)
