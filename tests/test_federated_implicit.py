"The implicit (top-N) objective of the federated engines: client negatives, parameter checks, the sequential fallback, a run's records."
import numpy as np
import pytest
import torch

from fedrec_nb.client import ClientData, LocalConfig, SparseRows, client_generator, client_negatives, train_client
from fedrec_nb.data import encode_features, encode_ratings, split_ratings, synthetic_movielens
from fedrec_nb.experiment import Experiment, ParameterError
from fedrec_nb.federation import check_federated_params
from fedrec_nb.models import LogitMF, NeuMF
from fedrec_nb.vectorized import local_train_vectorized


@pytest.fixture(scope="module")
def small():
    syn = synthetic_movielens(n_users=60, n_items=400, n_ratings=2_500, seed=1)
    f = encode_features(syn)
    u, i, y = encode_ratings(syn.ratings, f)
    return syn, f, u, i, y


def _client(small, n_users=5):
    _, f, u, i, y = small
    mine = u < n_users
    return ClientData(0, u[mine], i[mine], y[mine])


def _values(v): return v.values if isinstance(v, SparseRows) else v


def test_client_negatives_are_unrated_and_reproducible(small):
    _, f, *_ = small
    c = _client(small)
    cfg = LocalConfig(local_epochs=3, objective="implicit", num_negatives=4)
    a = client_negatives(c, f.n_items, cfg, client_generator(0, 0, c.cid))
    b = client_negatives(c, f.n_items, cfg, client_generator(0, 0, c.cid))
    assert len(a) == 3 and all(n.shape == (c.n_train, 4) for n in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    rated = set(zip(c.users.tolist(), c.items.tolist()))
    for n in a:   # never an item the positive's user rated
        assert not any((int(uu), int(it)) in rated for uu, row in zip(c.users, n) for it in row)
    assert not torch.equal(a[0], a[1])   # fresh negatives each local epoch


@pytest.mark.parametrize("M", [LogitMF, NeuMF])
def test_train_client_implicit(small, M):
    _, f, *_ = small
    torch.manual_seed(0)
    m = M(f, 8)
    glob = {n: p.detach().clone() for n, p in m.named_parameters()}
    c = _client(small)
    cfg = LocalConfig(2, 64, 1e-2, objective="implicit", num_negatives=4)
    r1, r2 = (train_client(m, glob, c, None, cfg, 0, 0, f) for _ in range(2))
    assert all(torch.equal(_values(r1.update[n]), _values(r2.update[n])) for n in r1.update)   # reproducible
    assert np.isfinite(r1.stats["train_loss"]) and np.isnan(r1.stats["local_mae"])
    item_rows = r1.update[m.item_params[0]].index
    assert set(torch.unique(c.items).tolist()) < set(item_rows.tolist())   # the negatives' rows move too
    bpr = train_client(m, glob, c, None, LocalConfig(2, 64, 1e-2, objective="implicit", loss="bpr"), 0, 0, f)
    assert bpr.stats["train_loss"] != r1.stats["train_loss"]
    # the default objective is the rating one: the MSE of the ratings
    rating = train_client(m, glob, c, None, LocalConfig(2, 64, 1e-2), 0, 0, f)
    assert np.isfinite(rating.stats["local_mae"])


@pytest.mark.parametrize("bad, name", [
    (dict(objective="ranking"), "objective"),
    (dict(objective="implicit", split="random"), "split"),
    (dict(objective="implicit", model="hybrid"), "model"),
    (dict(objective="implicit", num_negatives=0), "num_negatives"),
    (dict(objective="implicit", loss="mse"), "loss"),
    (dict(objective="implicit", engine="flower"), "engine"),
    (dict(objective="implicit", private_refit_steps=3), "private_refit_steps"),
])
def test_check_federated_params_implicit(bad, name):
    p = {**dict(model="mf", split="leave_one_out"), **bad}
    with pytest.raises(ParameterError, match=name): check_federated_params(**p)
    check_federated_params(model="ncf", split="leave_one_out", objective="implicit", loss="bpr")   # a valid one passes


def test_vectorized_refuses_implicit_with_reason(small):
    _, f, *_ = small
    m = LogitMF(f, 8)
    glob = {n: p.detach().clone() for n, p in m.named_parameters()}
    with pytest.raises(NotImplementedError, match="sequential"):
        local_train_vectorized(m, glob, [_client(small)], torch.ones(1), f, LocalConfig(objective="implicit"), 0, 0)


def test_run_federated_implicit_records(small, tmp_path):
    from fedrec_nb.federated import run_federated
    syn, f, *_ = small
    train, test = split_ratings(syn.ratings, "leave_one_out")
    exp = Experiment(syn, train, test, f, dict(dataset="synthetic", data_dir=None, seed=0, test_size=0.1, split="leave_one_out"), tmp_path)
    kw = dict(dataset="synthetic", split="leave_one_out", partition="user", num_clients=60, rounds=2, objective="implicit",
              lr=1e-2, output_dir=str(tmp_path / "run"), plots=False, progress=False, experiment=exp, seed=0)
    r = run_federated(model="mf", **kw)
    assert r["final"]["engine"].startswith("sequential (vectorized: objective='implicit'")
    for h in r["rounds"]: assert 0 <= h["test_hr@10"] <= 1 and 0 <= h["test_ndcg@10"] <= h["test_hr@10"] and h["eval_seconds"] > 0
    fin = r["final"]
    assert {"test_hr@10", "test_ndcg@10", "test_hr@10_full", "test_ndcg@10_full"} <= set(fin)
    assert fin["test_hr@10_full"] <= fin["test_hr@10"]   # every unrated item is harder than 100 candidates
    r2 = run_federated(model="mf", **{**kw, "output_dir": str(tmp_path / "run2")})
    assert r2["final"]["test_hr@10"] == fin["test_hr@10"]   # reproducible
    p = run_federated(model="ncf", private_user_embeddings=True, **{**kw, "output_dir": str(tmp_path / "run3")})
    assert np.isfinite(p["final"]["test_ndcg@10"])
