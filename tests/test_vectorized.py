"""Vectorized local training: the same results as the sequential reference (rounds, strategies, partitions, private
rows, whole runs), bounded groups, empty clients, unsupported models, memory figures."""
import numpy as np
import pytest
import torch

from fedrec_nb.splits import split_ratings
from fedrec_nb.features import encode_features, encode_ratings
from fedrec_nb.data import load_dataset
from fedrec_nb.federated import (ClientData, LocalConfig, PrivateState, build_clients, local_train_sequential,
                                 make_strategy, run_federated)
from fedrec_nb.models import build_model
from fedrec_nb.partitions import partition
from fedrec_nb import vectorized
from fedrec_nb.vectorized import (chunk_clients, local_train_vectorized, peak_memory, plan_groups, relative_difference,
                                  supports, unsupported_reason)


@pytest.fixture(scope="module")
def fed():
    "Real ML-100K when it is there (the synthetic twin otherwise), 90/10 split, features and encoded rows."
    try: data = load_dataset("ml-100k")
    except Exception: data = load_dataset("synthetic")
    train, _ = split_ratings(data.ratings, "random", 0.1, 42)
    feats = encode_features(data)
    u, i, y = encode_ratings(train, feats)
    def clients(method, k):
        return build_clients(u, i, y, partition(method, train, data, k, 0.5, 42), u[:0], i[:0], y[:0], np.zeros(0, int))
    return dict(data=data, train=train, feats=feats, clients=clients)


def _two_rounds(fn, net, clients, feats, cfg, strategy, private=None, **kw):
    "Global parameters after two rounds of `fn` local training and `strategy` aggregation."
    torch.manual_seed(0)
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    strat = make_strategy(strategy, None, cfg.mu)
    for r in range(2):
        w = strat.client_weights([c.n_train for c in clients])
        upd = fn(net, params, clients, w, feats, cfg, 7, r, private, "cpu", **kw)
        strat.apply(params, upd.delta)
    return params, upd


def _first_users(fed, model, n, seed, dim=16):
    "A fresh `model` (seeded), its parameters, the first `n` one-user clients and equal weights."
    torch.manual_seed(seed)
    net = build_model(model, fed["feats"], dim)
    gp = {k: p.detach().clone() for k, p in net.named_parameters()}
    return net, gp, fed["clients"]("user", 943)[:n], torch.full((n,), 1 / n)


# Batch sizes keep every client under ~100 local steps: over hundreds of steps the sequential reference itself is
# chaotic (a 1e-7 relative perturbation of its start moves its delta by about 5% after 422 steps of batch 32 on
# 6 IID clients of ML-100K), so no other float computation could match it to 1e-4 there.
@pytest.mark.parametrize("model,partition_,k,strategy,mu,private,batch", [
    ("expanded", "user", 943, "fedavg", 0.0, False, 64),     # the seed's model, one client per user (first 40 users)
    ("hybrid", "iid", 6, "fedprox", 0.05, False, 2048),      # FedProx: the clients' proximal term
    ("mf", "dirichlet", 8, "fedadam", 0.0, True, 1024),      # server Adam, private user rows, skewed clients
    ("hybrid", "user", 943, "fedavg_unweighted", 0.0, True, 32),
    ("mf", "user", 943, "fedavg", 0.0, True, 32),              # the per-user figure's configuration
])
def test_two_rounds_equal_the_sequential_reference(fed, model, partition_, k, strategy, mu, private, batch):
    torch.manual_seed(1)
    net = build_model(model, fed["feats"], 16 if model != "expanded" else 50)
    clients = fed["clients"](partition_, k)[:40]
    cfg = LocalConfig(local_epochs=2, batch_size=batch, lr=3e-3, mu=mu)
    ps = PrivateState(net.user_params, dict(net.named_parameters())) if private else None
    pv = PrivateState(net.user_params, dict(net.named_parameters())) if private else None
    a, ua = _two_rounds(local_train_sequential, net, clients, fed["feats"], cfg, strategy, ps)
    b, ub = _two_rounds(local_train_vectorized, net, clients, fed["feats"], cfg, strategy, pv, max_clients=16)
    diff = relative_difference(a, b)
    assert max(diff.values()) < 1e-4, diff
    assert set(ub.delta) == set(ua.delta)
    for sa, sb in zip(ua.client_stats, ub.client_stats):
        assert (sa["cid"], sa["n_train"]) == (sb["cid"], sb["n_train"])
        np.testing.assert_allclose([sb["train_loss"], sb["local_mae"], sb["local_rmse"]],
                                   [sa["train_loss"], sa["local_mae"], sa["local_rmse"]], rtol=1e-3)
    if private:
        for c in clients:
            for n in net.user_params:
                torch.testing.assert_close(pv.get(c)[1][n], ps.get(c)[1][n], rtol=1e-4, atol=1e-5)


def test_group_size_does_not_change_the_round(fed):
    net, gp, clients, w = _first_users(fed, "hybrid", 50, seed=2)
    cfg = LocalConfig(1, 32, 1e-3)
    one = local_train_vectorized(net, gp, clients, w, fed["feats"], cfg, 0, 0, max_clients=1)
    many = local_train_vectorized(net, gp, clients, w, fed["feats"], cfg, 0, 0, max_clients=64)
    few_rows = local_train_vectorized(net, gp, clients, w, fed["feats"], cfg, 0, 0, max_rows=500)
    for other in (many, few_rows):
        assert max(relative_difference(one.delta, other.delta).values()) < 1e-4


def test_how_a_step_is_cut_into_runs_does_not_change_the_round(fed, monkeypatch):
    "One run per step (all padding computed), one run per client, and the default cut give the same round."
    cfg = LocalConfig(2, 32, 3e-3)
    for model in ("mf", "hybrid"):
        net, gp, clients, w = _first_users(fed, model, 60, seed=4)
        ref = local_train_vectorized(net, gp, clients, w, fed["feats"], cfg, 0, 0)
        for cut in (lambda s, m, f, sl: [(0, len(s), max(s))] if s else [],           # one padded block
                    lambda s, m, f, sl: [(k, k + 1, x) for k, x in enumerate(s)]):    # one client at a time
            monkeypatch.setattr(vectorized, "chunk_clients", cut)
            other = local_train_vectorized(net, gp, clients, w, fed["feats"], cfg, 0, 0)
            assert max(relative_difference(ref.delta, other.delta).values()) < 1e-4
            for a, b in zip(ref.client_stats, other.client_stats):
                np.testing.assert_allclose([a["local_mae"], a["train_loss"]], [b["local_mae"], b["train_loss"]], rtol=1e-4)
        monkeypatch.undo()


def test_chunk_clients_covers_every_client_once():
    rng = np.random.default_rng(1)
    for fill, slack in ((0.75, 0), (0.5, 100), (0.0, 10**9)):
        s = rng.integers(1, 257, 500).tolist()
        runs = chunk_clients(s, max_rows=4096, fill=fill, slack=slack)
        assert [k for a, b, _ in runs for k in range(a, b)] == list(range(500))
        for a, b, width in runs:
            assert max(s[a:b]) == width == s[a] and (b - a) * width <= max(4096, width)
            for j in range(a, b):  # a client below `fill` joins only while the run's padding so far stays within slack
                assert s[j] >= fill * width or sum(width - x for x in s[a:j + 1]) <= slack


def test_plan_groups_bounds_clients_and_rows():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 300, 1000)
    groups = plan_groups(n, max_clients=64, max_rows=5_000)
    assert sorted(np.concatenate(groups).tolist()) == list(range(1000))
    for g in groups:
        assert len(g) <= 64 and (n[g].sum() <= 5_000 or len(g) == 1)
        assert (np.diff(n[g]) <= 0).all()      # largest first: finished clients form a tail


def test_empty_clients_and_order_are_kept(fed):
    net = build_model("mf", fed["feats"], 8)
    gp = {n: p.detach().clone() for n, p in net.named_parameters()}
    real = fed["clients"]("user", 943)[:3]
    empty = ClientData(99, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0))
    clients = [real[0], empty, real[1], real[2]]
    w = torch.tensor([0.4, 0.0, 0.3, 0.3])
    cfg = LocalConfig(1, 16, 1e-2)
    a = local_train_sequential(net, gp, clients, w, fed["feats"], cfg, 0, 0)
    b = local_train_vectorized(net, gp, clients, w, fed["feats"], cfg, 0, 0)
    for upd in (a, b):
        assert [s["cid"] for s in upd.client_stats] == [c.cid for c in clients]
        assert upd.client_stats[1]["n_train"] == 0 and np.isnan(upd.client_stats[1]["local_mae"])
    assert max(relative_difference(a.delta, b.delta).values()) < 1e-4


def test_unsupported_model_is_refused_before_work(fed):
    class Dropped(torch.nn.Module):
        user_params, item_params = ("emb.weight",), ()
        def __init__(self):
            super().__init__(); self.emb, self.drop = torch.nn.Embedding(3, 2), torch.nn.Dropout(0.5)
        def forward(self, b): return self.drop(self.emb(b["user"])).sum(-1)
    assert not supports(Dropped()) and "Dropout" in unsupported_reason(Dropped())
    assert "user_params" in unsupported_reason(torch.nn.Linear(2, 1))
    with pytest.raises(NotImplementedError, match="Dropout"):
        local_train_vectorized(Dropped(), {}, [], torch.ones(0), fed["feats"], LocalConfig(), 0, 0)


def test_whole_runs_of_both_engines_agree(tmp_path):
    kw = dict(dataset="synthetic", model="hybrid", partition="user", num_clients=943, rounds=2, local_epochs=1,
              batch_size=64, lr=3e-3, embedding_dim=8, device="cpu", progress=False, plots=False, client_fraction=0.1)
    seq = run_federated(output_dir=tmp_path / "seq", engine="sequential", **kw)
    vec = run_federated(output_dir=tmp_path / "vec", engine="vectorized", **kw)
    assert vec["final"]["engine"] == "vectorized" and seq["final"]["engine"] == "sequential"
    for a, b in zip(seq["rounds"], vec["rounds"]):
        for key in ("test_mae", "test_rmse", "train_loss", "local_mae"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), key


def test_peak_memory_is_reported():
    assert 10 * 2**20 < peak_memory("cpu") < 1 << 40


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_cpu_sequential(fed):
    net, gp, clients, w = _first_users(fed, "hybrid", 30, seed=3)
    cfg = LocalConfig(1, 32, 1e-3)
    a = local_train_sequential(net, gp, clients, w, fed["feats"], cfg, 0, 0)
    torch.cuda.reset_peak_memory_stats()
    b = local_train_vectorized(net, {n: p.cuda() for n, p in gp.items()}, clients, w.cuda(), fed["feats"].to("cuda"),
                               cfg, 0, 0, device="cuda")
    new = lambda d: {n: gp[n] + d[n].cpu() for n in d}
    assert max(relative_difference(new(a.delta), new(b.delta)).values()) < 1e-4
    assert peak_memory("cuda") > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_per_user_configuration_with_private_rows(fed):
    "mf, batch 32, private user rows, two rounds: CUDA vectorized against the CPU sequential reference."
    torch.manual_seed(5)
    net = build_model("mf", fed["feats"], 8)
    clients = fed["clients"]("user", 943)[:80]
    cfg = LocalConfig(1, 32, 2e-2)
    ps = PrivateState(net.user_params, dict(net.named_parameters()))
    pv = PrivateState(net.user_params, dict(net.named_parameters()))
    a, _ = _two_rounds(local_train_sequential, net, clients, fed["feats"], cfg, "fedavg", ps)
    def gpu(*args, **kw):
        upd = local_train_vectorized(*args[:9], device="cuda")
        upd.delta = {n: t.cpu() for n, t in upd.delta.items()}
        return upd
    b, _ = _two_rounds(gpu, net, clients, fed["feats"], cfg, "fedavg", pv)
    assert max(relative_difference(a, b).values()) < 1e-4
    for c in clients:
        torch.testing.assert_close(pv.get(c)[1]["user_embedding.weight"], ps.get(c)[1]["user_embedding.weight"],
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replay_equals_eager_steps(fed, monkeypatch):
    "10 IID clients, batch 256: full steps replayed from a captured CUDA graph give the eager round."
    torch.manual_seed(6)
    net = build_model("hybrid", fed["feats"], 16)
    gp = {n: p.detach().cuda() for n, p in net.named_parameters()}
    clients = fed["clients"]("iid", 10)
    w = torch.full((10,), 0.1, device="cuda")
    feats, cfg = fed["feats"].to("cuda"), LocalConfig(1, 256, 1e-3)
    assert vectorized._use_cuda_graph(torch.device("cuda"), 10, 256, 30)
    graphed = local_train_vectorized(net, gp, clients, w, feats, cfg, 0, 0, device="cuda")
    monkeypatch.setenv("FEDREC_CUDA_GRAPHS", "0")
    eager = local_train_vectorized(net, gp, clients, w, feats, cfg, 0, 0, device="cuda")
    new = lambda d: {n: gp[n] + d[n] for n in d}
    assert max(relative_difference(new(eager.delta), new(graphed.delta)).values()) < 1e-5
