"""The sparse aggregators (fedrec_nb.robust `aggregate_sparse`, fedrec_nb.privacy `dp_aggregate_sparse`) against the dense
reference functions (`aggregate`, `dp_aggregate` on the (K, P) matrix) on random sparse updates with ties and
coordinates touched by no, one or every client; FoolsGold's sparse histories in `Defences`."""
import warnings

import pytest
import torch

import fedrec_nb.robust as robust
from fedrec_nb.defences import Defences
from fedrec_nb.privacy import dp_aggregate, dp_aggregate_sparse
from fedrec_nb.robust import (aggregate, aggregate_sparse, coordinate_median, foolsgold_weights, sparse_foolsgold_weights,
                              sparse_from_dense, sparse_gram, sparse_median, sparse_trimmed_mean, sparse_updates,
                              trimmed_mean)


def _sparse_case(K, P, density, seed, levels=None):
    "Dense U and its mask M: few distinct values (ties), column 0 touched by nobody, 1 by client 0, 2 by all (with zeros)."
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(K, P, generator=g)
    if levels: U = (U * levels).round() / levels                      # many equal values: ties inside a column
    M = torch.rand(K, P, generator=g) < density
    M[:, 0] = False; M[:, 1] = False; M[0, 1] = True; M[:, 2] = True
    U[:, 2] = torch.where(torch.rand(K, generator=g) < 0.3, 0.0, U[:, 2])   # touched zeros
    return U * M, M


CASES = [(9, 40, 0.3, 0, 2), (10, 60, 0.1, 1, 4), (25, 200, 0.05, 2, None), (40, 120, 0.5, 3, 1), (7, 30, 0.9, 4, 3)]


@pytest.mark.parametrize("K, P, density, seed, levels", CASES)
def test_median_equals_the_dense_median_exactly(K, P, density, seed, levels):
    U, M = _sparse_case(K, P, density, seed, levels)
    S = sparse_from_dense(U, M)
    assert torch.equal(sparse_median(S), coordinate_median(U, M))                  # over the touching clients (Defences)
    assert torch.equal(sparse_median(S, implicit_zeros=True), coordinate_median(U))  # untouched clients as zeros
    assert torch.equal(aggregate_sparse(S, torch.full((K,), 1 / K), "median").delta, aggregate(U, torch.full((K,), 1 / K), "median", mask=M).delta)


@pytest.mark.parametrize("K, P, density, seed, levels", CASES)
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.25, 0.4])
def test_trimmed_mean_within_1e6_of_the_dense_one(K, P, density, seed, levels, beta):
    U, M = _sparse_case(K, P, density, seed, levels)
    S = sparse_from_dense(U, M)
    torch.testing.assert_close(sparse_trimmed_mean(S, beta), trimmed_mean(U, beta, M), rtol=0, atol=1e-6)
    torch.testing.assert_close(sparse_trimmed_mean(S, beta, implicit_zeros=True), trimmed_mean(U, beta), rtol=0, atol=1e-6)


def test_entry_order_does_not_matter():
    U, M = _sparse_case(12, 50, 0.3, 5, 2)
    k, c = M.nonzero(as_tuple=True)
    p = torch.randperm(len(k), generator=torch.Generator().manual_seed(0))
    S = sparse_updates(k[p], c[p], U[k[p], c[p]], 12, 50)
    assert torch.equal(sparse_median(S), coordinate_median(U, M))


@pytest.mark.parametrize("K, P, density, seed, levels", CASES)
def test_krum_multi_krum_norm_bound_mean_and_foolsgold_match_the_dense_ones(K, P, density, seed, levels):
    U, M = _sparse_case(K, P, density, seed, levels)
    g = torch.Generator().manual_seed(seed + 10)
    w = torch.rand(K, generator=g); w /= w.sum()
    S = sparse_from_dense(U)
    for agg in ("krum", "multi_krum"):
        f = max(0, (K - 3) // 2 - 1)
        a, b = aggregate_sparse(S, w, agg, krum_f=f), aggregate(U, w, agg, krum_f=f)
        assert torch.equal(a.selected, b.selected), agg
        torch.testing.assert_close(a.delta, b.delta, rtol=0, atol=1e-6)
    for agg, kw in (("mean", {}), ("norm_bound", dict(clip_norm=0.7)), ("foolsgold", {})):
        torch.testing.assert_close(aggregate_sparse(S, w, agg, **kw).delta, aggregate(U, w, agg, **kw).delta, rtol=0, atol=1e-6)
    torch.testing.assert_close(sparse_foolsgold_weights(S), foolsgold_weights(U), rtol=0, atol=1e-6)
    torch.testing.assert_close(sparse_gram(S), U.double() @ U.double().T)


def test_foolsgold_identical_sparse_histories_get_no_weight():
    row = torch.zeros(30); row[[3, 7, 20]] = torch.tensor([0.1, -0.3, 0.7])
    H = row.expand(6, -1).clone()
    assert torch.equal(sparse_foolsgold_weights(sparse_from_dense(H)), torch.zeros(6))


@pytest.mark.parametrize("z", [0.0, 1.3])
def test_dp_aggregate_sparse_gives_the_same_clipping_and_noise(z):
    U, _ = _sparse_case(30, 400, 0.08, 7, None)
    U[3] *= 50                                                        # a clipped client
    dense = dp_aggregate(U, 0.8, z, 11.5, torch.Generator().manual_seed(4))
    sparse = dp_aggregate_sparse(sparse_from_dense(U), 0.8, z, 11.5, torch.Generator().manual_seed(4))
    assert sparse.clipped == dense.clipped >= 1
    torch.testing.assert_close(sparse.norms, dense.norms, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(sparse.delta, dense.delta, rtol=0, atol=1e-6)


def test_gram_warns_with_its_size_above_the_client_limit(monkeypatch):
    monkeypatch.setattr(robust, "GRAM_WARN_CLIENTS", 5)
    U, _ = _sparse_case(8, 20, 0.5, 0, None)
    with pytest.warns(UserWarning, match=r"8 clients: .* GB"):
        sparse_gram(sparse_from_dense(U))
    monkeypatch.setattr(robust, "GRAM_WARN_CLIENTS", 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error"); sparse_gram(sparse_from_dense(U))


def test_defences_foolsgold_history_is_the_dense_sum_and_survives_a_checkpoint():
    model = torch.nn.Linear(1, 1)                                    # not read by FoolsGold
    d = Defences(dict(aggregator="foolsgold"), 4, model)
    U1, _ = _sparse_case(3, 20, 0.3, 1, None)
    U2, _ = _sparse_case(2, 20, 0.3, 2, None)
    d._foolsgold_history(sparse_from_dense(U1), [0, 1, 2])
    H = d._foolsgold_history(sparse_from_dense(U2), [2, 3])
    dense = torch.zeros(2, 20).index_put_((H.client, H.col), H.value)
    torch.testing.assert_close(dense, torch.stack([U1[2] + U2[0], U2[1]]), rtol=0, atol=0)
    d2 = Defences(dict(aggregator="foolsgold"), 4, model)
    d2.load_state_dict(d.state_dict())
    for c in range(4):
        assert torch.equal(torch.zeros(20).index_put_((d2.history[c][0],), d2.history[c][1]),
                           torch.zeros(20).index_put_((d.history[c][0],), d.history[c][1]))
