"""DP-FedAvg building blocks (fedrec_nb.privacy): batched clipping, the noise scale and fixed denominator, Poisson
sampling reproducible from (seed, round), and epsilon from Opacus's accountants against published reference values."""
import math

import numpy as np
import pytest
import torch

from fedrec_nb.privacy import clip_updates, dp_aggregate, epsilon, epsilon_per_round, noise_for_epsilon, poisson_sample


def test_clip_updates_bounds_every_norm_and_keeps_small_updates():
    g = torch.Generator().manual_seed(0)
    U = torch.randn(943, 500, generator=g) * torch.logspace(-3, 1, 943)[:, None]
    Uc, norms = clip_updates(U, 0.1)
    torch.testing.assert_close(norms, torch.linalg.vector_norm(U, dim=1))
    out = torch.linalg.vector_norm(Uc, dim=1)
    assert (out <= 0.1 * (1 + 1e-5)).all()
    small = norms <= 0.1
    assert small.any() and (~small).any()
    torch.testing.assert_close(Uc[small], U[small])
    torch.testing.assert_close(out[~small], torch.full_like(out[~small], 0.1))
    # direction is kept
    cos = torch.nn.functional.cosine_similarity(Uc[~small], U[~small], dim=1)
    torch.testing.assert_close(cos, torch.ones_like(cos))


def test_dp_aggregate_noise_std_is_z_clip_over_expected_clients():
    z, C, qN = 1.3, 0.5, 40.0
    out = dp_aggregate(torch.zeros(37, 300_000), C, z, qN, torch.Generator().manual_seed(3))
    assert float(out.delta.std()) == pytest.approx(z * C / qN, rel=0.01)
    assert abs(float(out.delta.mean())) < 1e-4 * z * C / qN * 100


def test_dp_aggregate_is_the_unweighted_clipped_sum_over_a_fixed_denominator():
    U = torch.tensor([[3., 4.], [0.03, 0.04], [0., -2.]])
    out = dp_aggregate(U, 1.0, 0.0, expected_clients=10.0)
    torch.testing.assert_close(out.delta, (torch.tensor([0.6, 0.8]) + torch.tensor([0.03, 0.04])
                                           + torch.tensor([0., -1.])) / 10.0)
    assert out.clipped == 2
    # the denominator does not follow the number of clients present
    out2 = dp_aggregate(U[:1], 1.0, 0.0, expected_clients=10.0)
    torch.testing.assert_close(out2.delta, torch.tensor([0.6, 0.8]) / 10.0)


def test_dp_aggregate_reproducible_and_dense():
    U = torch.zeros(1, 1000); U[0, :8] = 0.01                  # a one-user client touching one item row
    a = dp_aggregate(U, 0.1, 1.0, 283.0, torch.Generator().manual_seed(9)).delta
    b = dp_aggregate(U, 0.1, 1.0, 283.0, torch.Generator().manual_seed(9)).delta
    torch.testing.assert_close(a, b)
    assert int((a != 0).sum()) == 1000
    empty = dp_aggregate(torch.zeros(0, 10), 0.1, 1.0, 5.0, torch.Generator().manual_seed(0))
    assert empty.delta.shape == (10,) and (empty.delta != 0).all()


def test_dp_parameters_are_named():
    U = torch.ones(2, 3)
    with pytest.raises(ValueError, match="dp_clip"): dp_aggregate(U, 0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="dp_noise_multiplier"): dp_aggregate(U, 1.0, -1.0, 2.0)
    with pytest.raises(ValueError, match="expected_clients"): dp_aggregate(U, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="parameter U"): clip_updates(torch.ones(3), 1.0)
    with pytest.raises(ValueError, match="client_fraction"): poisson_sample(10, 1.5, 0, 0)
    with pytest.raises(ValueError, match="dp_delta"): epsilon_per_round(1.0, 0.1, 5, delta=1.0)
    with pytest.raises(ValueError, match="accountant"): epsilon(1.0, 0.1, 5, accountant="gdp")


def test_poisson_sample_reproducible_independent_and_rate_q():
    a = poisson_sample(943, 0.3, 42, 7)
    np.testing.assert_array_equal(a, poisson_sample(943, 0.3, 42, 7))
    assert not np.array_equal(a, poisson_sample(943, 0.3, 42, 8))
    assert not np.array_equal(a, poisson_sample(943, 0.3, 43, 7))
    assert np.all(np.diff(a) > 0)
    hits = np.zeros(943)
    sizes = []
    for r in range(400):
        s = poisson_sample(943, 0.3, 1, r)
        hits[s] += 1
        sizes.append(len(s))
    assert np.mean(sizes) == pytest.approx(0.3 * 943, rel=0.01)
    assert np.std(sizes) == pytest.approx(math.sqrt(943 * 0.3 * 0.7), rel=0.15)   # binomial: sizes vary
    assert hits.min() > 0.3 * 400 * 0.6 and hits.max() < 0.3 * 400 * 1.4


def test_epsilon_matches_opacus_reference_values():
    # Opacus's test suite: RDP, z=1.5, q=0.04, 2250 steps, delta=1e-5
    assert epsilon(1.5, 0.04, 2250, 1e-5) == pytest.approx(7.32911117143, abs=1e-6)
    assert epsilon_per_round(1.5, 0.04, 2250, 1e-5)[-1] == pytest.approx(7.32911117143, abs=1e-6)
    # values from Microsoft's prv_accountant that Opacus's PRV test checks against (delta=1e-6)
    for (z, q, t), ref in {(1.5, 0.05, 1000): 6.20996924657726712, (0.8, 0.2, 100): 24.3336641779225644,
                           (2.0, 0.001, 100): 0.0291045369484074882}.items():
        assert epsilon(z, q, t, 1e-6, "prv") == pytest.approx(ref, abs=1e-4)


def test_epsilon_monotone_in_rounds_and_decreasing_in_noise():
    eps = epsilon_per_round(1.0, 0.3, 100, 1e-5)
    assert len(eps) == 100 and all(a < b for a, b in zip(eps, eps[1:]))
    finals = [epsilon(z, 0.3, 100, 1e-5) for z in (0.8, 1.0, 2.0, 5.0)]
    assert all(a > b for a, b in zip(finals, finals[1:]))
    assert epsilon(1.0, 0.1, 100) < epsilon(1.0, 0.3, 100)        # subsampling amplifies privacy
    assert epsilon(1.0, 0.3, 100, 1e-3) < epsilon(1.0, 0.3, 100, 1e-6)
    prv = epsilon_per_round(1.0, 0.3, 5, 1e-5, "prv")
    assert all(a < b for a, b in zip(prv, prv[1:])) and prv[-1] < eps[4]   # PRV is the tighter bound
    assert epsilon_per_round(0.0, 0.3, 3) == [math.inf] * 3
    assert epsilon_per_round(1.0, 0.3, 0) == []


def test_noise_for_epsilon_reaches_the_target():
    z = noise_for_epsilon(10.0, 0.3, 100, 1e-5)
    assert epsilon(z, 0.3, 100, 1e-5) <= 10.0 < epsilon(z * 0.95, 0.3, 100, 1e-5)
