"""Robust aggregation and attacks (fedrec_nb.robust): each aggregator's known answer, how it treats the weights, Krum's
resistance to f far-away attackers, norm bounding, the untargeted attacks, the crafted item promotion and ER@k."""
import math

import numpy as np
import pytest
import torch

from fedrec_nb.robust import (AGGREGATORS, aggregate, apply_attack, coordinate_median, craft_promotion,
                              exposure_ratio, foolsgold_weights, krum_scores, malicious_clients, noise,
                              pairwise_sq_distances, scale, sign_flip, trimmed_mean)


def _w(k): return torch.full((k,), 1.0 / k)


def _honest_and_attackers(k_honest=20, f=4, p=300, far=50.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(p, generator=g)
    honest = centre + 0.05 * torch.randn(k_honest, p, generator=g)
    bad = far * torch.randn(f, p, generator=g)
    U = torch.cat([honest, bad])
    perm = torch.randperm(len(U), generator=g)
    return U[perm], centre, set(torch.nonzero(perm >= k_honest).flatten().tolist())


def test_mean_is_todays_weighted_mean():
    g = torch.Generator().manual_seed(1)
    U = torch.randn(7, 40, generator=g)
    w = torch.rand(7, generator=g); w /= w.sum()
    out = aggregate(U, w, "mean")
    torch.testing.assert_close(out.delta, (w[:, None] * U).sum(0))
    assert out.selected is None


def test_median_known_answer_even_and_odd():
    U = torch.tensor([[1., 10.], [3., -2.], [2., 1e9]])
    torch.testing.assert_close(aggregate(U, _w(3), "median").delta, torch.tensor([2., 10.]))
    torch.testing.assert_close(coordinate_median(U[:2]), torch.tensor([2., 4.]))


def test_median_and_trimmed_mean_ignore_weights():
    g = torch.Generator().manual_seed(2)
    U = torch.randn(9, 30, generator=g)
    w = torch.rand(9, generator=g); w /= w.sum()
    for name in ("median", "trimmed_mean"):
        torch.testing.assert_close(aggregate(U, w, name, trim_fraction=0.2).delta,
                                   aggregate(U, _w(9), name, trim_fraction=0.2).delta)


def test_median_matches_torch_over_column_chunks():
    U = torch.randn(5, 3_500_001 // 5 + 17)   # more than one sort chunk
    torch.testing.assert_close(coordinate_median(U), U.median(0).values)


def test_trimmed_mean_equals_mean_when_nothing_trimmed_and_drops_extremes():
    g = torch.Generator().manual_seed(3)
    U = torch.randn(9, 25, generator=g)
    torch.testing.assert_close(trimmed_mean(U, 0.0), U.mean(0))
    torch.testing.assert_close(trimmed_mean(U, 0.1), U.mean(0))    # floor(0.9) = 0
    U2 = torch.tensor([[-1e6], [1.], [2.], [3.], [1e6]])
    torch.testing.assert_close(trimmed_mean(U2, 0.2), torch.tensor([2.]))


def test_krum_picks_an_honest_update_against_f_far_attackers():
    U, centre, bad = _honest_and_attackers(f=4)
    out = aggregate(U, _w(len(U)), "krum", krum_f=4)
    assert len(out.selected) == 1 and int(out.selected[0]) not in bad
    torch.testing.assert_close(out.delta, U[int(out.selected[0])])
    assert (out.delta - centre).norm() < 0.05 * math.sqrt(U.shape[1]) * 2


def test_multi_krum_keeps_exactly_the_honest_and_renormalises_their_weights():
    U, centre, bad = _honest_and_attackers(f=4)
    w = torch.rand(len(U), generator=torch.Generator().manual_seed(4)); w /= w.sum()
    out = aggregate(U, w, "multi_krum", krum_f=4)
    keep = out.selected.tolist()
    assert set(keep) == set(range(len(U))) - bad
    wk = w[keep] / w[keep].sum()
    torch.testing.assert_close(out.delta, (wk[:, None] * U[keep]).sum(0))
    plain = aggregate(U, w, "mean").delta
    assert (out.delta - centre).norm() < 0.05 * (plain - centre).norm()


def test_krum_distances_are_batched_and_exact_despite_far_attackers():
    U, _, _ = _honest_and_attackers(f=4, far=1e4)
    D = pairwise_sq_distances(U)
    ref = torch.cdist(U.double(), U.double(), compute_mode="donot_use_mm_for_euclid_dist") ** 2
    torch.testing.assert_close(D, ref, rtol=1e-9, atol=1e-6)


def test_krum_needs_enough_clients():
    with pytest.raises(ValueError, match="krum_f"):
        krum_scores(torch.randn(6, 3), krum_f=2)


def test_norm_bound_clips_then_takes_the_weighted_mean():
    U = torch.tensor([[30., 40.], [0.3, 0.4], [0., 0.]])
    w = torch.tensor([0.5, 0.25, 0.25])
    out = aggregate(U, w, "norm_bound", clip_norm=1.0)
    torch.testing.assert_close(out.delta, 0.5 * torch.tensor([0.6, 0.8]) + 0.25 * torch.tensor([0.3, 0.4]))
    torch.testing.assert_close(aggregate(U, w, "norm_bound", clip_norm=1e3).delta, aggregate(U, w).delta)


@pytest.mark.parametrize("name", [a for a in AGGREGATORS if a != "foolsgold"])
def test_every_aggregator_is_the_identity_on_identical_updates(name):
    row = torch.randn(50)
    U = row.expand(8, -1).clone()
    out = aggregate(U, _w(8), name, krum_f=1, clip_norm=1e6)
    torch.testing.assert_close(out.delta, row)


def test_foolsgold_gives_identical_clients_no_weight_and_keeps_distinct_ones():
    "FoolsGold's design: clients whose histories point the same way are sybils (weight 0), distinct ones keep weight 1."
    row = torch.randn(50, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(aggregate(row.expand(8, -1).clone(), _w(8), "foolsgold").delta, torch.zeros(50))
    U = torch.eye(8, 50)                                   # eight clients with nothing in common
    torch.testing.assert_close(aggregate(U, _w(8), "foolsgold").delta, aggregate(U, _w(8)).delta)


@pytest.mark.parametrize("seed", range(20))
def test_foolsgold_identical_directions_get_no_weight_whatever_the_rounding(seed):
    """Identical histories have cosine 1 only up to rounding (1 - eps or 1 + eps with the CPU's SIMD width); before the
    tolerance about a third of the random rows came out at 1 - eps and got weight 1. Rows equal up to float noise
    (1e-9 relative) or whose norms differ by rounding only (row * (1 + 1e-7)) count as identical: weight 0."""
    g = torch.Generator().manual_seed(seed)
    row = torch.randn(50, generator=g, dtype=torch.float64)
    same = row.expand(8, -1).clone()
    noisy = row * (1 + 1e-9 * torch.randn(8, 50, generator=g, dtype=torch.float64))
    scaled = torch.stack([row * (1 + 1e-7) ** i for i in range(8)])
    for H in (same, same.float(), noisy, scaled, scaled.float()):
        torch.testing.assert_close(foolsgold_weights(H), torch.zeros(8, dtype=H.dtype), rtol=0, atol=0)
    # the tolerance is a tolerance, not a blur: a sybil group with one distinct client keeps that client at weight 1
    H = torch.cat([noisy[:7], torch.randn(1, 50, generator=g, dtype=torch.float64)])
    w = foolsgold_weights(H)
    assert float(w[:7].max()) == 0.0 and float(w[7]) == 1.0


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "krum", "multi_krum"])
def test_robust_aggregators_hold_against_20_percent_sign_flip_and_scale(name):
    g = torch.Generator().manual_seed(5)
    centre = torch.randn(200, generator=g)
    U = centre + 0.1 * torch.randn(10, 200, generator=g)
    mal = [2, 7]
    for attack in ("sign_flip", "scale"):
        A = apply_attack(U, mal, attack, attack_scale=-20.0)
        clean = aggregate(U, _w(10), "mean").delta
        plain = aggregate(A, _w(10), "mean").delta
        robust = aggregate(A, _w(10), name, trim_fraction=0.2, krum_f=2).delta
        assert (robust - clean).norm() < 0.25 * (plain - clean).norm(), (name, attack)


def test_bad_parameters_are_named():
    U = torch.randn(4, 3)
    with pytest.raises(ValueError, match="parameter aggregator"): aggregate(U, _w(4), "avg")
    with pytest.raises(ValueError, match="parameter w"): aggregate(U, torch.ones(4), "mean")
    with pytest.raises(ValueError, match="parameter w"): aggregate(U, _w(3), "mean")
    with pytest.raises(ValueError, match="trim_fraction"): aggregate(U, _w(4), "trimmed_mean", trim_fraction=0.6)
    with pytest.raises(ValueError, match="clip_norm"): aggregate(U, _w(4), "norm_bound", clip_norm=0)
    with pytest.raises(ValueError, match="parameter U"): aggregate(torch.zeros(0, 3), torch.zeros(0), "mean")
    with pytest.raises(ValueError, match="parameter attack"): apply_attack(U, [0], "boost")
    with pytest.raises(ValueError, match="craft_promotion"): apply_attack(U, [0], "promote_item")
    with pytest.raises(ValueError, match="attack_fraction"): malicious_clients(10, 1.0, 0)


def test_attacks_change_only_the_malicious_rows():
    U = torch.randn(6, 5)
    before = U.clone()
    A = apply_attack(U, [0, 4], "sign_flip")
    torch.testing.assert_close(A[[0, 4]], -U[[0, 4]])
    torch.testing.assert_close(A[[1, 2, 3, 5]], U[[1, 2, 3, 5]])
    torch.testing.assert_close(U, before)
    torch.testing.assert_close(sign_flip(U), -U)
    torch.testing.assert_close(scale(U, 3.0), 3 * U)
    torch.testing.assert_close(apply_attack(U, [], "scale"), U)
    N = noise(torch.zeros(3, 200_000), 2.0, torch.Generator().manual_seed(0))
    assert abs(float(N.std()) - 2.0) < 0.02
    n1 = apply_attack(U, [1], "noise", noise_std=1.0, generator=torch.Generator().manual_seed(7))
    n2 = apply_attack(U, [1], "noise", noise_std=1.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(n1, n2)


def test_malicious_clients_fixed_by_seed_and_sized_by_fraction():
    a = malicious_clients(943, 0.05, 42)
    assert len(a) == 47 and len(set(a.tolist())) == 47 and a.max() < 943
    np.testing.assert_array_equal(a, malicious_clients(943, 0.05, 42))
    assert not np.array_equal(a, malicious_clients(943, 0.05, 43))
    assert len(malicious_clients(10, 0.0, 0)) == 0


def _world(seed=0, n_u=400, n_i=300, d=8):
    g = torch.Generator().manual_seed(seed)
    taste = torch.randn(d, generator=g)
    P = taste + 0.7 * torch.randn(n_u, d, generator=g)
    Q = 0.3 * torch.randn(n_i, d, generator=g)
    B = 0.1 * torch.randn(n_i, 1, generator=g)
    S = P @ Q.T + B.T
    pop = (torch.sigmoid(S) > 0.8).sum(0).numpy()
    rated = torch.rand(n_u, n_i, generator=g) < 0.05
    target = int(np.argsort(pop, kind="stable")[3])
    rated[:, target] = False
    rated[:4, target] = True
    return P, Q, B, pop, rated, target


def test_craft_promotion_is_bounded_and_touches_only_the_target_row():
    P, Q, B, pop, rated, target = _world()
    upd = craft_promotion(Q, B, target, pop, fake_user_embeddings=P[:5], max_norm=1.0)
    dE, dB = upd["item_embedding.weight"], upd["item_bias.weight"]
    assert dE.shape == Q.shape and dB.shape == B.shape
    assert torch.cat([dE.flatten(), dB.flatten()]).norm().item() == pytest.approx(1.0, rel=1e-5)
    assert set(torch.nonzero(dE.abs().sum(1) + dB.abs().flatten()).flatten().tolist()) == {target}
    assert float(dB[target]) > 0                        # the bias goes up
    assert float((P @ dE[target]).mean()) > 0           # and the row moves toward typical users
    with pytest.raises(ValueError, match="target_item"): craft_promotion(Q, B, 10_000, pop)


def test_promotion_raises_exposure_and_norm_bound_limits_it():
    P, Q, B, pop, rated, target = _world()
    n_u, n_fake, d = P.shape[0], 20, Q.shape[1]             # 5% fake users
    assert exposure_ratio(P @ Q.T + B.T, rated, target) < 0.05

    def run(aggregator, rounds=60):
        q, b, g = Q.clone(), B.clone(), torch.Generator().manual_seed(1)
        for _ in range(rounds):
            u = craft_promotion(q, b, target, pop)
            row = torch.cat([u["item_embedding.weight"][target], u["item_bias.weight"][target]])
            U = torch.cat([row.expand(n_fake, -1), 0.001 * torch.randn(n_u, d + 1, generator=g)])
            agg = aggregate(U, _w(n_fake + n_u), aggregator, clip_norm=0.01)
            q[target] += agg.delta[:d]
            b[target] += agg.delta[d:]
        return exposure_ratio(P @ q.T + b.T, rated, target)

    assert run("mean") > 0.5
    assert run("norm_bound") < 0.05
    assert run("median") < 0.05


def test_exposure_ratio_known_answer():
    scores = torch.tensor([[5., 4., 3., 9.],    # target 2 is third among unrated -> in top-2? no
                           [1., 2., 9., 0.],    # target first -> yes
                           [9., 8., 7., 6.]])   # rated the target: not counted
    rated = torch.tensor([[False, False, False, False],
                          [False, False, False, False],
                          [False, False, True, False]])
    assert exposure_ratio(scores, rated, 2, k=2) == 0.5
    assert exposure_ratio(scores, rated, 2, k=3) == 0.5       # 9, 5, 4 are above for user 0: rank 4
    assert exposure_ratio(scores, rated, 2, k=4) == 1.0
    rated[0, 3] = True                                        # the 9 is rated: excluded from user 0's list
    assert exposure_ratio(scores, rated, 2, k=3) == 1.0
    with pytest.raises(ValueError, match="rated_mask"): exposure_ratio(scores, rated[:2], 2)


def test_masked_median_and_trimmed_mean_use_only_the_touching_clients():
    g = torch.Generator().manual_seed(6)
    U = torch.randn(11, 400, generator=g)
    M = torch.rand(11, 400, generator=g) < 0.3
    U = U * M                                    # untouched coordinates are zeros, as the engine sends them
    med = aggregate(U, _w(11), "median", mask=M).delta
    tm = aggregate(U, _w(11), "trimmed_mean", trim_fraction=0.25, mask=M).delta
    for p in range(400):
        v = U[M[:, p], p].sort().values
        n = len(v)
        if n == 0:
            assert med[p] == 0 and tm[p] == 0
            continue
        assert float(med[p]) == pytest.approx(float((v[(n - 1) // 2] + v[n // 2]) / 2), abs=1e-6)
        b = int(math.floor(0.25 * n))
        assert float(tm[p]) == pytest.approx(float(v[b:n - b].mean()), abs=1e-6)
    # without a mask the zeros of the non-touching clients count
    torch.testing.assert_close(aggregate(U, _w(11), "median").delta, U.median(0).values)


def test_masked_trimmed_mean_is_exact_next_to_huge_values():
    U = torch.tensor([[1e30, 0.], [1., 0.], [2., 5.], [3., 0.], [-1e30, 0.]])
    M = torch.tensor([[True, False], [True, False], [True, True], [True, False], [True, False]])
    torch.testing.assert_close(trimmed_mean(U, 0.2, M), torch.tensor([2., 5.]))


def test_stack_and_unstack_round_trip_the_mf_deltas_and_aggregate_like_the_dict_mean():
    from types import SimpleNamespace
    from fedrec_nb.models import BiasedMF
    from fedrec_nb.robust import stack_updates, unstack
    net = BiasedMF(SimpleNamespace(n_users=30, n_items=40), embedding_dim=4)
    g = torch.Generator().manual_seed(8)
    deltas = [{n: torch.randn(p.shape, generator=g) for n, p in net.named_parameters() if n != "user_bias.weight" or k}
              for k in range(5)]
    U, layout = stack_updates(deltas)
    assert U.shape == (5, 30 * 4 + 40 * 4 + 30 + 40 + 1)
    assert layout == {n: tuple(p.shape) for n, p in sorted(net.named_parameters())}
    for k, d in enumerate(deltas):
        back = unstack(U[k], layout)
        for n in layout:
            torch.testing.assert_close(back[n], d.get(n, torch.zeros(layout[n])))
    w = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15])
    mean = unstack(aggregate(U, w).delta, layout)
    for n in layout:
        ref = sum(w[k] * d.get(n, torch.zeros(layout[n])) for k, d in enumerate(deltas))
        torch.testing.assert_close(mean[n], ref)
    with pytest.raises(ValueError, match="deltas"): stack_updates([])
    with pytest.raises(ValueError, match="vec"): unstack(torch.zeros(3), layout)


def test_fake_user_count_is_the_share_of_all_clients():
    from fedrec_nb.robust import fake_user_count
    n = fake_user_count(943, 0.05)
    assert n == 50 and abs(n / (943 + n) - 0.05) < 0.001
    assert fake_user_count(6040, 0.0) == 0
    with pytest.raises(ValueError, match="attack_fraction"): fake_user_count(943, 1.0)
