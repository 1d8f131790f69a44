"""Privacy and robustness in a run: per-client updates from both engines, attacks, robust aggregation, DP-FedAvg's epsilon."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from fedrec_nb.client import ClientData, LocalConfig, PrivateState
from fedrec_nb.synthetic import synthetic_movielens
from fedrec_nb.features import encode_features, encode_ratings
from fedrec_nb.experiment import ParameterError
from fedrec_nb.federated import local_train_sequential, run_federated
from fedrec_nb.models import build_model
from fedrec_nb.privacy import epsilon
from fedrec_nb.robust import unstack
from fedrec_nb.vectorized import local_train_vectorized

SYN = dict(model="mf", num_clients=10, rounds=4, local_epochs=1, batch_size=64, lr=1e-2, embedding_dim=8, device="cpu",
           progress=False, plots=False, ranking=False)


@pytest.fixture(scope="module", autouse=True)
def small_ratings(tmp_path_factory):
    "A small synthetic ratings file (200 users, 300 films, 12,000 ratings) as the dataset of every run here."
    syn = synthetic_movielens(n_users=200, n_items=300, n_ratings=12_000, seed=3)
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    syn.ratings.to_csv(path, index=False)
    SYN["dataset"] = str(path)
    yield path


@pytest.mark.parametrize("model,private", [("mf", True), ("hybrid", False)])
def test_both_engines_give_the_same_client_rows_and_they_sum_to_the_delta(model, private):
    syn = synthetic_movielens(n_users=60, n_items=120, n_ratings=1_500, seed=1)
    f = encode_features(syn); u, i, y = encode_ratings(syn.ratings, f)
    clients = [ClientData(k, u[u % 6 == k], i[u % 6 == k], y[u % 6 == k]) for k in range(6)]
    torch.manual_seed(0); net = build_model(model, f, 8)
    g = {n: p.detach().clone() for n, p in net.named_parameters()}
    w = torch.tensor([c.n_train for c in clients], dtype=torch.float32); w /= w.sum()
    priv = lambda: PrivateState(net.user_params, g) if private else None
    a = local_train_sequential(net, g, clients, w, f, LocalConfig(1, 32, 0.01), 0, 0, priv(), per_client=True)
    b = local_train_vectorized(net, g, clients, w, f, LocalConfig(1, 32, 0.01), 0, 0, priv(), per_client=True)
    assert a.updates.cids == b.updates.cids == list(range(6))
    assert torch.allclose(a.updates.U, b.updates.U, atol=1e-5)
    assert torch.equal(a.updates.mask, b.updates.mask)
    assert not any(n in a.updates.shapes for n in (net.user_params if private else ()))   # private rows never in a row
    summed = unstack(w @ a.updates.U, a.updates.shapes)
    for n, d in summed.items(): assert torch.allclose(d, a.delta[n], atol=1e-6)


def test_the_per_client_path_reproduces_the_plain_run(tmp_path):
    plain = run_federated(output_dir=tmp_path / "a", **SYN)
    loose = run_federated(output_dir=tmp_path / "b", aggregator="norm_bound", clip_norm=1e6, **SYN)
    assert abs(plain["final"]["test_rmse"] - loose["final"]["test_rmse"]) < 1e-5
    assert all(r["clipped"] == 0 for r in loose["rounds"])


def test_dp_run_records_the_accountants_epsilon_every_round(tmp_path):
    kw = dict(SYN, partition="user", num_clients=200, client_fraction=0.3, private_user_embeddings=True, batch_size=32,
              dp_noise_multiplier=1.2, dp_clip=0.1, rounds=4, dp_seeded_noise=True)
    res = run_federated(output_dir=tmp_path, **kw)
    eps = [r["epsilon"] for r in res["rounds"]]
    assert all(a < b for a, b in zip(eps, eps[1:]))
    assert res["final"]["epsilon"] == pytest.approx(epsilon(1.2, 0.3, 4, 1e-5), rel=1e-9)
    assert len({r["sampled"] for r in res["rounds"]}) > 1          # Poisson sampling: the count varies
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rounds"][-1]["epsilon"] == pytest.approx(eps[-1]) and saved["final"]["dp_delta"] == 1e-5
    again = run_federated(output_dir=tmp_path / "again", **kw)      # the same seed: the same noise (asked for: dp_seeded_noise)
    assert again["final"]["test_rmse"] == res["final"]["test_rmse"] and "seeded" in res["final"]["dp_noise"]
    private = [run_federated(output_dir=tmp_path / f"os{k}", **dict(kw, dp_seeded_noise=False))["final"] for k in range(2)]
    assert private[0]["test_rmse"] != private[1]["test_rmse"]       # by default: the operating system's entropy, never the seed
    assert private[0]["dp_noise"] == "the operating system's entropy"
    # the figures computed from the clients' data without noise are kept apart from the records epsilon covers
    apart = saved["not_covered_by_epsilon"]
    assert saved["final"]["not_covered_by_epsilon"] == "results.json: not_covered_by_epsilon"
    assert all(r["norm_median"] is None and r["clipped"] is None and r["train_loss"] is None for r in saved["rounds"])
    assert [r["round"] for r in apart["rounds"]] == [1, 2, 3, 4] and all(r["norm_median"] > 0 for r in apart["rounds"])
    assert all(c["train_loss"] is None for c in saved["clients"]) and saved["client_losses"] == {} and apart["client_losses"]
    csv = pd.read_csv(tmp_path / "results.csv")
    assert csv["norm_median"].isna().all() and "test_rmse" in csv and not csv["test_rmse"].isna().any()
    noisier = run_federated(output_dir=tmp_path / "z", **dict(kw, dp_noise_multiplier=5.0))
    assert noisier["final"]["epsilon"] < res["final"]["epsilon"]


def test_boosted_sign_flip_hurts_the_mean_and_the_median_holds(tmp_path):
    clean = run_federated(output_dir=tmp_path / "c", **SYN)["final"]["test_rmse"]
    kw = dict(SYN, attack="sign_flip", attack_fraction=0.2, attack_scale=5.0)
    mean = run_federated(output_dir=tmp_path / "m", **kw)
    median = run_federated(output_dir=tmp_path / "d", aggregator="median", **kw)
    assert all(r["malicious"] == 2 for r in mean["rounds"])
    assert mean["final"]["test_rmse"] > clean + 0.05
    assert median["final"]["test_rmse"] < clean + 0.03


def test_item_promotion_by_fake_users_raises_exposure(tmp_path):
    kw = dict(SYN, partition="user", num_clients=200, client_fraction=0.5, private_user_embeddings=True, batch_size=32,
              rounds=5)
    clean_er = run_federated(output_dir=tmp_path / "c", **dict(kw, attack="promote_item", attack_fraction=0.05,
                                                                  attack_scale=1e-9))
    attacked = run_federated(output_dir=tmp_path / "a", **dict(kw, attack="promote_item", attack_fraction=0.05,
                                                                 attack_scale=3.0))
    f = attacked["final"]
    assert f["fake_users"] == round(0.05 * 200 / 0.95) and f["target_item_ratings"] < 10
    assert f["test_er@10"] > clean_er["final"]["test_er@10"] + 0.2
    assert all("er@10" in r and r["fake"] >= 0 for r in attacked["rounds"])


def test_dropout_is_counted_in_the_round_record(tmp_path):
    res = run_federated(output_dir=tmp_path, client_dropout=0.5, **SYN)
    assert all(r["sampled"] == 10 and r["clients"] == 10 - r["dropped"] for r in res["rounds"])
    assert sum(r["dropped"] for r in res["rounds"]) > 0


@pytest.mark.parametrize("bad,match", [
    (dict(aggregator="avg"), "parameter aggregator='avg'"),
    (dict(attack="sign_flip"), "parameter attack_fraction=0"),
    (dict(dp_noise_multiplier=1.0, aggregator="krum"), "parameter aggregator='krum'"),
    (dict(dp_delta=0), "parameter dp_delta=0"),
    (dict(client_dropout=1.0), "parameter client_dropout=1.0"),
    (dict(aggregator="krum", krum_f=4), "parameter krum_f=4"),
    (dict(attack="promote_item", attack_fraction=0.1, target_item="no such film"), "parameter target_item='no such film'"),
])
def test_bad_defence_parameters_are_refused(tmp_path, bad, match):
    with pytest.raises(ParameterError, match=match):
        run_federated(output_dir=tmp_path, **dict(SYN, **bad))


def test_sgd_clients_agree_across_engines_and_differ_from_adam():
    syn = synthetic_movielens(n_users=60, n_items=120, n_ratings=1_500, seed=1)
    f = encode_features(syn); u, i, y = encode_ratings(syn.ratings, f)
    clients = [ClientData(k, u[u % 4 == k], i[u % 4 == k], y[u % 4 == k]) for k in range(4)]
    torch.manual_seed(0); net = build_model("mf", f, 8)
    g = {n: p.detach().clone() for n, p in net.named_parameters()}
    w = torch.full((4,), 0.25)
    sgd = LocalConfig(1, 32, 0.5, optimizer="sgd")
    a = local_train_sequential(net, g, clients, w, f, sgd, 0, 0)
    b = local_train_vectorized(net, g, clients, w, f, sgd, 0, 0)
    adam = local_train_sequential(net, g, clients, w, f, LocalConfig(1, 32, 0.5), 0, 0)
    for n in a.delta:
        assert torch.allclose(a.delta[n], b.delta[n], atol=1e-5)
    assert not torch.allclose(a.delta["item_bias.weight"], adam.delta["item_bias.weight"], atol=1e-3)
