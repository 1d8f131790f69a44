"""The CUDA paths against their CPU references: the implicit engine, per-client rows, DP-FedAvg, SGD clients, sparse defences.

Every test here needs a CUDA GPU and is skipped without one (`scripts/gpu_check.sh` runs them on a GPU machine)."""
import math

import pytest
import torch

from fedrec_nb.client import (NEGATIVES_STREAM, ClientData, LocalConfig, PrivateState, client_generator,
                              client_negatives)
from fedrec_nb.features import encode_features, encode_ratings
from fedrec_nb.federated import local_train_sequential, run_federated
from fedrec_nb.models import LogitMF, NeuMF, PFedRec, build_model
from fedrec_nb.privacy import dp_aggregate_sparse, epsilon
from fedrec_nb.robust import sparse_from_dense, sparse_median, sparse_trimmed_mean, sparse_gram
from fedrec_nb.synthetic import synthetic_movielens
import fedrec_nb.vectorized as vz
from fedrec_nb.vectorized import local_train_vectorized

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = "cuda"


@pytest.fixture(scope="module")
def small():
    syn = synthetic_movielens(n_users=60, n_items=400, n_ratings=2_500, seed=1)
    f = encode_features(syn)
    u, i, y = encode_ratings(syn.ratings, f)
    return syn, f, u, i, y


def _one_user_clients(small, n=12):
    _, f, u, i, y = small
    return [ClientData(k, u[u == k], i[u == k], y[u == k]) for k in range(n)]


def _sequential_negatives(clients, U, I, owner, n_items, cfg, seed, round_idx):
    "The negatives `train_client` draws for each client (CPU generator), in the batched engine's layout, on U's device."
    per = [client_negatives(c, n_items, cfg, client_generator(seed, round_idx, c.cid, NEGATIVES_STREAM)) for c in clients]
    return torch.stack([torch.cat([p[e] for p in per]) for e in range(cfg.local_epochs)]).to(U.device)


def _cpu(upd):
    return {n: t.cpu() for n, t in upd.delta.items()}


@pytest.mark.parametrize("M", [LogitMF, NeuMF, PFedRec])
def test_cuda_implicit_engine_matches_cpu_sequential(small, M, monkeypatch):
    "Given the same negatives, the batched implicit engine on CUDA gives the CPU sequential engine's deltas and private rows."
    _, f, *_ = small
    torch.manual_seed(0)
    m = M(f, 8)
    glob = {n: p.detach().clone() for n, p in m.named_parameters()}
    clients = _one_user_clients(small)
    w = torch.tensor([c.n_train for c in clients], dtype=torch.float32); w /= w.sum()
    cfg = LocalConfig(2, 16, 1e-2, objective="implicit", num_negatives=3)
    ps, pv = PrivateState(m.user_params, glob), PrivateState(m.user_params, glob)
    for r in range(2):
        seq = local_train_sequential(m, glob, clients, w, f, cfg, 0, r, ps)
        monkeypatch.setattr(vz, "group_negatives", _sequential_negatives)
        vec = local_train_vectorized(m, glob, clients, w, f, cfg, 0, r, pv, device=CUDA)
        monkeypatch.undo()
        d = _cpu(vec)
        for n in d: torch.testing.assert_close(d[n], seq.delta[n], atol=1e-5, rtol=1e-4)
    for c in clients:
        for n in m.user_params:
            torch.testing.assert_close(pv.get(c)[1][n].cpu(), ps.get(c)[1][n], atol=1e-5, rtol=1e-4)


def test_cuda_negatives_are_unrated_and_reproducible(small):
    from fedrec_nb.implicit import interaction_keys, is_rated
    _, f, *_ = small
    clients = _one_user_clients(small, 20)
    U, I = torch.cat([c.users for c in clients]).cuda(), torch.cat([c.items for c in clients]).cuda()
    owner = torch.repeat_interleave(torch.arange(len(clients)), torch.tensor([c.n_train for c in clients])).cuda()
    cfg = LocalConfig(3, objective="implicit", num_negatives=5)
    a = vz.group_negatives(clients, U, I, owner, f.n_items, cfg, 7, 2)
    assert a.device.type == "cuda" and torch.equal(a, vz.group_negatives(clients, U, I, owner, f.n_items, cfg, 7, 2))
    assert not is_rated(U[None, :, None].expand_as(a), a, interaction_keys(U, I, f.n_items), f.n_items).any()


@pytest.mark.parametrize("model,private", [("mf", True), ("hybrid", False)])
def test_cuda_per_client_rows_equal_cpu(small, model, private):
    "The per-client rows the defences read: built on CUDA, equal to the CPU sequential engine's, summing to the delta."
    syn = synthetic_movielens(n_users=60, n_items=120, n_ratings=1_500, seed=1)
    f = encode_features(syn); u, i, y = encode_ratings(syn.ratings, f)
    clients = [ClientData(k, u[u % 6 == k], i[u % 6 == k], y[u % 6 == k]) for k in range(6)]
    torch.manual_seed(0); net = build_model(model, f, 8)
    g = {n: p.detach().clone() for n, p in net.named_parameters()}
    w = torch.tensor([c.n_train for c in clients], dtype=torch.float32); w /= w.sum()
    priv = lambda: PrivateState(net.user_params, g) if private else None
    a = local_train_sequential(net, g, clients, w, f, LocalConfig(1, 32, 0.01), 0, 0, priv(), per_client=True)
    b = local_train_vectorized(net, g, clients, w, f, LocalConfig(1, 32, 0.01), 0, 0, priv(), device=CUDA, per_client=True)
    assert b.updates.U.device.type == "cuda" and a.updates.cids == b.updates.cids
    # Adam's step is about lr whatever the gradient's size: where a gradient is float noise, reordered sums on the GPU move
    # that coordinate's step by up to a fraction of lr (on an H200: 8 of 6,486 entries, by at most 1.5e-4 at lr 0.01)
    x, y = a.updates.U, b.updates.U.cpu()
    torch.testing.assert_close(y, x, atol=0.05 * 0.01, rtol=1e-4)
    assert float(((x - y).abs() > 3e-5).float().mean()) < 0.01
    assert float((x - y).norm() / x.norm()) < 1e-3
    assert torch.equal(a.updates.mask, b.updates.mask.cpu())


def test_cuda_sgd_clients_equal_cpu():
    syn = synthetic_movielens(n_users=60, n_items=120, n_ratings=1_500, seed=1)
    f = encode_features(syn); u, i, y = encode_ratings(syn.ratings, f)
    clients = [ClientData(k, u[u % 4 == k], i[u % 4 == k], y[u % 4 == k]) for k in range(4)]
    torch.manual_seed(0); net = build_model("mf", f, 8)
    g = {n: p.detach().clone() for n, p in net.named_parameters()}
    w = torch.full((4,), 0.25)
    sgd = LocalConfig(1, 32, 0.5, optimizer="sgd")
    a = local_train_sequential(net, g, clients, w, f, sgd, 0, 0)
    b = _cpu(local_train_vectorized(net, g, clients, w, f, sgd, 0, 0, device=CUDA))
    for n in a.delta: torch.testing.assert_close(b[n], a.delta[n], atol=1e-5, rtol=1e-4)


def _sparse_case(K=40, P=3_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(K, P, generator=g)
    mask = torch.rand(K, P, generator=g) < 0.05
    return U * mask, mask


def test_cuda_sparse_defences_equal_cpu():
    "Median exactly, trimmed mean within 1e-6, the Gram matrix within float tolerance: the same figures on both devices."
    U, mask = _sparse_case()
    c, d = sparse_from_dense(U, mask), sparse_from_dense(U.cuda(), mask.cuda())
    assert torch.equal(sparse_median(d).cpu(), sparse_median(c))
    torch.testing.assert_close(sparse_trimmed_mean(d, 0.1).cpu(), sparse_trimmed_mean(c, 0.1), atol=1e-6, rtol=0)
    torch.testing.assert_close(sparse_gram(d).cpu(), sparse_gram(c), atol=1e-4, rtol=1e-5)


def test_cuda_dp_aggregate_clips_as_cpu_and_noise_has_its_scale():
    U, mask = _sparse_case(K=200, P=20_000, seed=1)
    c, d = sparse_from_dense(U, mask), sparse_from_dense(U.cuda(), mask.cuda())
    a = dp_aggregate_sparse(c, clip=0.5, noise_multiplier=0.0, expected_clients=60.0)
    b = dp_aggregate_sparse(d, clip=0.5, noise_multiplier=0.0, expected_clients=60.0)
    assert a.clipped == b.clipped > 0
    torch.testing.assert_close(b.delta.cpu(), a.delta, atol=1e-6, rtol=1e-5)
    gen = torch.Generator(device=CUDA).manual_seed(3)
    n = dp_aggregate_sparse(d, clip=0.5, noise_multiplier=1.1, expected_clients=60.0, generator=gen)
    std = float((n.delta - b.delta).std())
    assert std == pytest.approx(1.1 * 0.5 / 60.0, rel=0.03)


def _runs(tmp_path, name, **kw):
    base = dict(dataset="synthetic", partition="user", num_clients=943, rounds=2, local_epochs=1, batch_size=32,
                embedding_dim=8, progress=False, plots=False)
    base.update(kw)
    cpu = run_federated(output_dir=tmp_path / f"{name}_cpu", device="cpu", engine="vectorized", **base)
    gpu = run_federated(output_dir=tmp_path / f"{name}_gpu", device=CUDA, engine="vectorized", **base)
    assert gpu["final"]["device"].startswith("cuda")
    return cpu, gpu


def test_cuda_dp_run_matches_the_accountant(tmp_path):
    "A DP run on CUDA (Poisson sampling, private user rows, seeded noise): the CPU run's epsilon and sampled counts."
    cpu, gpu = _runs(tmp_path, "dp", model="mf", client_fraction=0.3, private_user_embeddings=True, lr=1e-2,
                     dp_noise_multiplier=1.2, dp_clip=0.1, dp_seeded_noise=True, ranking=False)
    assert gpu["final"]["epsilon"] == pytest.approx(epsilon(1.2, 0.3, 2, 1e-5), rel=1e-9) == cpu["final"]["epsilon"]
    assert [r["sampled"] for r in gpu["rounds"]] == [r["sampled"] for r in cpu["rounds"]]
    assert gpu["rounds"][0]["clipped"] == cpu["rounds"][0]["clipped"]
    assert math.isfinite(gpu["final"]["test_rmse"]) and abs(gpu["final"]["test_rmse"] - cpu["final"]["test_rmse"]) < 0.05


@pytest.mark.parametrize("aggregator", ["median", "trimmed_mean", "krum"])
def test_cuda_defence_runs_equal_cpu(tmp_path, aggregator):
    cpu, gpu = _runs(tmp_path, aggregator, model="mf", client_fraction=0.1, lr=1e-2, aggregator=aggregator, ranking=False)
    assert gpu["final"]["test_rmse"] == pytest.approx(cpu["final"]["test_rmse"], rel=1e-4)


@pytest.mark.parametrize("model", ["mf", "pfedrec"])
def test_cuda_implicit_runs_equal_cpu(tmp_path, model):
    "Whole implicit runs: CUDA draws its own negatives, so the figures agree within sampling noise, not bit for bit."
    cpu, gpu = _runs(tmp_path, model, model=model, objective="implicit", split="leave_one_out", lr=1e-2,
                     private_user_embeddings=model == "pfedrec")
    for key in ("test_hr@10", "test_ndcg@10"):
        a, b = cpu["final"].get(key), gpu["final"].get(key)
        assert a is not None and b is not None and abs(a - b) < 0.05, (key, a, b)
