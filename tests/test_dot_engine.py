"""The implicit objective's fast path for dot-product models (`train_dot_group`): given the same negatives, the update of the
sequential engine within 1e-5 (relative, on the aggregated update), on CPU and on CUDA; private and personal rows, per-client
rows for the defences, clients of several users, FedProx, and the cases it leaves to the autograd path."""
import os

import pytest
import torch

from fedrec_nb.client import NEGATIVES_STREAM, ClientData, LocalConfig, PrivateState, client_generator, client_negatives
from fedrec_nb.synthetic import synthetic_movielens
from fedrec_nb.features import encode_features, encode_ratings
from fedrec_nb.federated import local_train_sequential
from fedrec_nb.models import IMPLICIT_MODELS, LogitMF, NeuMF, PFedRec, dot_score, dot_score_grads
import fedrec_nb.vectorized as vz


@pytest.fixture(scope="module")
def small():
    syn = synthetic_movielens(n_users=40, n_items=200, n_ratings=1_600, seed=2)
    f = encode_features(syn)
    u, i, y = encode_ratings(syn.ratings, f)
    return f, u, i, y


def _clients(small, n=16, users_per_client=1):
    f, u, i, y = small
    out = []
    for k in range(n):
        mine = (u // users_per_client) == k
        out.append(ClientData(k, u[mine], i[mine], y[mine]))
    return out


def _sequential_negatives(clients, U, I, owner, n_items, cfg, seed, round_idx):
    "The negatives `train_client` draws for each client (its own generator), in the batched engine's layout."
    per = [client_negatives(c, n_items, cfg, client_generator(seed, round_idx, c.cid, NEGATIVES_STREAM)) for c in clients]
    return torch.stack([torch.cat([p[e] for p in per]) for e in range(cfg.local_epochs)]).to(U.device)


def _flat(delta): return torch.cat([delta[n].reshape(-1).double().cpu() for n in sorted(delta)])


def _rel(a, b):
    "Relative difference of two aggregated updates (every shared parameter, one vector)."
    x, y = _flat(a), _flat(b)
    return float((x - y).norm() / x.norm())


def _both(monkeypatch, model, clients, f, cfg, device="cpu", rounds=1, **kw):
    "Sequential (CPU) and fast-path (on `device`) rounds from the same start, the fast one handed the sequential negatives."
    glob = {n: p.detach().clone() for n, p in model.named_parameters()}
    w = torch.tensor([c.n_train for c in clients], dtype=torch.float32); w /= w.sum()
    ps, pv = PrivateState(model.user_params, glob), PrivateState(model.user_params, glob)
    out = []
    for r in range(rounds):
        seq = local_train_sequential(model, glob, clients, w, f, cfg, 0, r, ps, per_client=True)
        monkeypatch.setattr(vz, "group_negatives", _sequential_negatives)
        called = []
        orig = vz.train_dot_group
        monkeypatch.setattr(vz, "train_dot_group", lambda *a, **k: called.append(1) or orig(*a, **k))
        g_dev = {n: t.to(device) for n, t in glob.items()}
        vec = vz.local_train_vectorized(model, g_dev, clients, w.to(device), f.to(device), cfg, 0, r, pv, device=device,
                                        per_client=True, **kw)
        monkeypatch.undo()
        assert called, "the fast path did not run"
        out.append((seq, vec))
    return out, ps, pv


CASES = [  # (model, dim, cfg): the benchmark's configurations (plain SGD, lr 1, 3 epochs of 256), Adam, FedProx
    ("mf", 16, LocalConfig(3, 256, 1.0, optimizer="sgd", objective="implicit", loss="bpr")),
    ("pfedrec", 16, LocalConfig(3, 256, 1.0, optimizer="sgd", objective="implicit")),
    ("mf", 16, LocalConfig(3, 32, 3e-3, objective="implicit")),
    ("pfedrec", 16, LocalConfig(2, 32, 3e-3, objective="implicit")),   # bce: under bpr the score bias cancels, Adam magnifies its float noise
    ("mf", 8, LocalConfig(2, 32, 0.5, optimizer="sgd", objective="implicit", mu=0.1)),
]


SLOW = pytest.mark.skipif(not os.environ.get("FEDREC_SLOW_TESTS"), reason="the whole matrix: set FEDREC_SLOW_TESTS=1")
QUICK = [pytest.param(*CASES[0], None, 1), pytest.param(*CASES[1], 150, 2), pytest.param(*CASES[2], 150, 1)]
FULL = [pytest.param(*c, r, 2, marks=SLOW) for c in CASES for r in (None, 150)]


@pytest.mark.parametrize("name,dim,cfg,max_rows,rounds", QUICK + FULL)   # default groups, or many small ones (several blocks)
def test_fast_path_equals_sequential(small, monkeypatch, name, dim, cfg, max_rows, rounds):
    f = small[0]
    torch.manual_seed(0)
    model = IMPLICIT_MODELS[name](f, dim)
    clients = _clients(small)
    (res, ps, pv) = _both(monkeypatch, model, clients, f, cfg, rounds=rounds, max_rows=max_rows)
    for seq, vec in res:
        assert set(vec.delta) == set(seq.delta)
        assert _rel(seq.delta, vec.delta) < 1e-5
        for a, b in zip(seq.client_stats, vec.client_stats): assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        # the defences' per-client rows: the same clients, the same touched coordinates, the same values
        assert seq.updates.cids == vec.updates.cids and torch.equal(seq.updates.mask, vec.updates.mask)
        x, y = seq.updates.U.double(), vec.updates.U.double()
        assert float((x - y).norm() / x.norm()) < 1e-5
    mine = lambda p: torch.cat([p.get(c)[1][n].reshape(-1).double() for c in clients for n in model.user_params])
    a, b = mine(ps), mine(pv)   # the private user rows every client keeps
    assert float((a - b).norm() / a.norm()) < 1e-5
    if model.personal_items:   # pfedrec: each client's own fine-tuned item rows
        for c in clients:
            a, b = ps.items[c.cid]["item_embedding.weight"], pv.items[c.cid]["item_embedding.weight"]
            assert torch.equal(a.index, b.index)
            assert float((a.values - b.values).norm() / a.values.norm()) < 1e-5


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fast_path_with_clients_of_several_users(small, monkeypatch, optimizer):
    "A client of three users scores each positive with its own user's row (the general layout, not the one-user one)."
    f = small[0]
    torch.manual_seed(1)
    model = LogitMF(f, 8)
    cfg = LocalConfig(2, 64, 0.5 if optimizer == "sgd" else 1e-2, optimizer=optimizer, objective="implicit")
    (res, *_), = [_both(monkeypatch, model, _clients(small, 6, users_per_client=3), f, cfg)]
    seq, vec = res[0]
    assert _rel(seq.delta, vec.delta) < 1e-5


def test_fast_path_choice_and_blocks(small):
    f = small[0]
    imp = LocalConfig(objective="implicit")
    assert vz.dot_trainable(LogitMF(f, 8), imp) and vz.dot_trainable(PFedRec(f, 8), imp)
    assert not vz.dot_trainable(NeuMF(f, 8), imp)              # an MLP tower: the autograd path
    assert not vz.dot_trainable(LogitMF(f, 8), LocalConfig())  # the rating objective: the autograd path
    dropped = LogitMF(f, 8); dropped.drop = frozenset({"user"})
    assert not vz.dot_trainable(dropped, imp)
    assert vz.dot_blocks([10, 10, 10], [2, 2, 2], 4, 1, budget=40) == [(0, 2), (2, 3)]   # (10 + 2 * 5) floats a client
    assert vz.dot_blocks([100, 1], [1, 1], 4, 1, budget=40) == [(0, 1), (1, 2)]          # a client larger than the budget: alone
    assert vz.dot_group_rows(LogitMF(f, 8), imp) > vz.dot_group_rows(LogitMF(f, 64), imp) >= 1


def test_dot_score_grads_match_autograd():
    torch.manual_seed(0)
    for pu_shape in ((4, 1, 6), (4, 30, 6)):
        ins = [torch.randn(*pu_shape, dtype=torch.float64, requires_grad=True), torch.randn(4, 30, 6, dtype=torch.float64, requires_grad=True),
               torch.randn(4, 1, dtype=torch.float64, requires_grad=True), torch.randn(4, 30, dtype=torch.float64, requires_grad=True),
               torch.randn((), dtype=torch.float64, requires_grad=True)]
        ds = torch.randn(4, 30, dtype=torch.float64)
        ref = torch.autograd.grad(dot_score(*ins), ins, ds)
        for mine, r in zip(dot_score_grads(ds, *[x.detach() for x in ins]), ref): torch.testing.assert_close(mine, r)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name,dim,cfg", CASES[:3])
def test_fast_path_on_cuda_equals_cpu_sequential(small, monkeypatch, name, dim, cfg):
    "On CUDA (one group, one block: every client's step at once) the fast path gives the CPU sequential engine's update."
    f = small[0]
    torch.manual_seed(0)
    model = IMPLICIT_MODELS[name](f, dim)
    (res, ps, pv) = _both(monkeypatch, model, _clients(small), f, cfg, device="cuda", rounds=2)
    tol = 1e-5 if cfg.optimizer == "sgd" else 3e-5   # Adam on CUDA is torch's fused kernel: 1.13e-5 measured on an H200
    for seq, vec in res:
        assert all(t.device.type == "cuda" for t in vec.delta.values())
        assert _rel(seq.delta, vec.delta) < tol
        x, y = seq.updates.U.double().cpu(), vec.updates.U.double().cpu()
        assert float((x - y).norm() / x.norm()) < tol
