"The implicit (top-N) objective of the federated engines: client negatives, parameter checks, the sequential fallback, a run's records."
import numpy as np
import pytest
import torch

from fedrec_nb.client import (NEGATIVES_STREAM, ClientData, LocalConfig, PrivateState, SparseRows, client_generator,
                              client_negatives, train_client)
from fedrec_nb.synthetic import synthetic_movielens
from fedrec_nb.splits import split_ratings
from fedrec_nb.features import encode_features, encode_ratings
from fedrec_nb.experiment import Experiment, ParameterError
from fedrec_nb.parameters import resolve_params
from fedrec_nb.federated import local_train_sequential, personal_scorer
from fedrec_nb.implicit import is_rated, interaction_keys
from fedrec_nb.models import LogitMF, NeuMF, PFedRec
import fedrec_nb.vectorized as vz
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
    (dict(model="pfedrec"), "model"),                                            # implicit feedback only
    (dict(objective="implicit", model="pfedrec"), "private_user_embeddings"),  # the score function stays on the device
    (dict(objective="implicit", private_refit_steps=3), "private_refit_steps"),
])
def test_check_federated_params_implicit(bad, name):
    p = {**dict(model="mf", split="leave_one_out"), **bad}
    with pytest.raises(ParameterError, match=name): resolve_params(p)
    resolve_params(model="ncf", split="leave_one_out", objective="implicit", loss="bpr")   # a valid one passes
    resolve_params(model="pfedrec", split="leave_one_out", objective="implicit", private_user_embeddings=True)


def _one_user_clients(small, n=12):
    _, f, u, i, y = small
    return [ClientData(k, u[u == k], i[u == k], y[u == k]) for k in range(n)]


def _sequential_negatives(clients, U, I, owner, n_items, cfg, seed, round_idx):
    "The negatives `train_client` draws for each client (its own generator), in the batched engine's layout."
    per = [client_negatives(c, n_items, cfg, client_generator(seed, round_idx, c.cid, NEGATIVES_STREAM)) for c in clients]
    return torch.stack([torch.cat([p[e] for p in per]) for e in range(cfg.local_epochs)])


@pytest.mark.parametrize("M", [LogitMF, NeuMF, PFedRec])
def test_vectorized_implicit_matches_sequential(small, M, monkeypatch):
    "Given the same negatives, the batched engine's deltas, private rows and personal item rows are the sequential engine's."
    _, f, *_ = small
    torch.manual_seed(0)
    m = M(f, 8)
    glob = {n: p.detach().clone() for n, p in m.named_parameters()}
    clients = _one_user_clients(small)
    w = torch.tensor([c.n_train for c in clients], dtype=torch.float32); w /= w.sum()
    cfg = LocalConfig(2, 16, 1e-2, objective="implicit", num_negatives=3)   # bce: under bpr the offset and user biases cancel, their gradients are float noise that Adam magnifies
    ps, pv = PrivateState(m.user_params, glob), PrivateState(m.user_params, glob)
    for r in range(2):   # the second round starts from the private rows the first wrote back
        seq = local_train_sequential(m, glob, clients, w, f, cfg, 0, r, ps)
        monkeypatch.setattr(vz, "group_negatives", _sequential_negatives)
        vec = local_train_vectorized(m, glob, clients, w, f, cfg, 0, r, pv)
        monkeypatch.undo()
        assert set(vec.delta) == set(glob) - set(m.user_params)
        for n in vec.delta: torch.testing.assert_close(vec.delta[n], seq.delta[n], atol=1e-6, rtol=1e-4)
        for a, b in zip(seq.client_stats, vec.client_stats): assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    for c in clients:
        for n in m.user_params: torch.testing.assert_close(ps.get(c)[1][n], pv.get(c)[1][n], atol=1e-6, rtol=1e-4)
    if M is PFedRec:   # each client kept its own fine-tuned item rows: the rows it trained (positives and negatives)
        assert set(ps.items) == set(pv.items) == {c.cid for c in clients}
        for c in clients:
            a, b = ps.items[c.cid]["item_embedding.weight"], pv.items[c.cid]["item_embedding.weight"]
            assert torch.equal(a.index, b.index) and set(torch.unique(c.items).tolist()) < set(a.index.tolist())
            torch.testing.assert_close(a.values, b.values, atol=1e-6, rtol=1e-4)
    else: assert ps.items == {} and pv.items == {}


def test_vectorized_negatives_on_device(small):
    "The batched engine's own negatives: never an item the row's user rated at its client, fresh per epoch, reproducible."
    _, f, *_ = small
    clients = _one_user_clients(small, 20)
    U, I = torch.cat([c.users for c in clients]), torch.cat([c.items for c in clients])
    owner = torch.repeat_interleave(torch.arange(len(clients)), torch.tensor([c.n_train for c in clients]))
    cfg = LocalConfig(3, objective="implicit", num_negatives=5)
    a = vz.group_negatives(clients, U, I, owner, f.n_items, cfg, 7, 2)
    assert a.shape == (3, len(U), 5) and torch.equal(a, vz.group_negatives(clients, U, I, owner, f.n_items, cfg, 7, 2))
    assert not torch.equal(a, vz.group_negatives(clients, U, I, owner, f.n_items, cfg, 7, 3))   # another round, other draws
    assert not is_rated(U[None, :, None].expand_as(a), a, interaction_keys(U, I, f.n_items), f.n_items).any()
    assert not torch.equal(a[0], a[1])


def test_run_federated_implicit_records(small, tmp_path):
    from fedrec_nb.federated import run_federated
    syn, f, *_ = small
    train, test = split_ratings(syn.ratings, "leave_one_out")
    exp = Experiment(syn, train, test, f, dict(dataset="synthetic", data_dir=None, seed=0, test_size=0.1, split="leave_one_out"), tmp_path)
    kw = dict(dataset="synthetic", split="leave_one_out", partition="user", num_clients=60, rounds=2, objective="implicit",
              lr=1e-2, output_dir=str(tmp_path / "run"), plots=False, progress=False, experiment=exp, seed=0)
    r = run_federated(model="mf", engine="sequential", **kw)
    assert r["final"]["engine"] == "sequential"
    for h in r["rounds"]: assert 0 <= h["test_hr@10"] <= 1 and 0 <= h["test_ndcg@10"] <= h["test_hr@10"] and h["eval_seconds"] > 0
    fin = r["final"]
    assert {"test_hr@10", "test_ndcg@10", "test_hr@10_full", "test_ndcg@10_full"} <= set(fin)
    assert fin["test_hr@10_full"] <= fin["test_hr@10"]   # every unrated item is harder than 100 candidates
    assert "test_hr@10_global_items" not in fin          # only a model with personal item rows reports them
    r2 = run_federated(model="mf", engine="sequential", **{**kw, "output_dir": str(tmp_path / "run2")})
    assert r2["final"]["test_hr@10"] == fin["test_hr@10"]   # reproducible
    p = run_federated(model="ncf", private_user_embeddings=True, **{**kw, "output_dir": str(tmp_path / "run3")})
    assert np.isfinite(p["final"]["test_ndcg@10"])


def test_pfedrec_run_scores_with_personal_items_and_resumes(small, tmp_path):
    "pfedrec on the batched engine: each user is scored with its client's own item rows; a resumed run ends where a whole one does."
    from fedrec_nb.federated import run_federated
    syn, f, *_ = small
    train, test = split_ratings(syn.ratings, "leave_one_out")
    exp = Experiment(syn, train, test, f, dict(dataset="synthetic", data_dir=None, seed=0, test_size=0.1, split="leave_one_out"), tmp_path)
    kw = dict(dataset="synthetic", split="leave_one_out", partition="user", num_clients=60, objective="implicit", model="pfedrec",
              private_user_embeddings=True, lr=5e-2, plots=False, progress=False, experiment=exp, seed=0)
    whole = run_federated(rounds=3, output_dir=str(tmp_path / "whole"), **kw)
    assert whole["final"]["engine"] == "vectorized"
    for k in ("test_hr@10_global_items", "test_hr@10_full_global_items"):   # the same users scored without their own item rows
        assert 0 <= whole["final"][k] <= 1
    run_federated(rounds=2, output_dir=str(tmp_path / "part"), **kw)
    resumed = run_federated(rounds=3, output_dir=str(tmp_path / "part"), resume=True, **kw)
    for k in ("test_hr@10", "test_ndcg@10", "test_hr@10_full"): assert resumed["final"][k] == whole["final"][k]
    # the personal scorer differs from the global model exactly on the (user, item) pairs the user's client kept
    net = whole["recommender"].net
    m = PFedRec(f, 32); m.load_state_dict(net.state_dict())
    priv = PrivateState(m.user_params, dict(m.named_parameters()))
    item = torch.tensor([3, 5]); vals = torch.randn(2, 32)
    priv.put(0, {n: torch.zeros(1, *p.shape[1:]) for n, p in m.named_parameters() if n in m.user_params},
             {"item_embedding.weight": SparseRows(item, vals)})
    owner = np.arange(f.n_users)
    s = personal_scorer(m, priv, owner)
    u = torch.tensor([0, 0, 0, 1, 1]); i = torch.tensor([3, 5, 7, 3, 5])
    with torch.no_grad():
        glob = m({"user": u, "item": i})
        mine = (m.score_weight.weight[0] * vals).sum(-1) + m.score_bias.weight[0, 0]
        got = s(u, i)
    torch.testing.assert_close(got[:2], mine); torch.testing.assert_close(got[2:], glob[2:])
