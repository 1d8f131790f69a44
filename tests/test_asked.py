"""Experiments that silently are not what was asked: an attack share that rounds to no attacker (or to every client),
an impossible epsilon, a dp_clip float32 cannot hold, a user's own ids mixing integers and strings, and an error message
suggesting an option the user cannot pass. Small synthetic data: each run takes about a second."""
import math, re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from fedrec_nb.case_study import pick_user
from fedrec_nb.experiment import Experiment, ParameterError
from fedrec_nb.features import encode_features
from fedrec_nb.federated import run_federated
from fedrec_nb.parameters import DATA_KEYS, PARAMS, resolve_params
from fedrec_nb.partitions import partition_by_user, partition_demographic
from fedrec_nb.privacy import epsilon, epsilon_per_round
from fedrec_nb.ratings import DataFormatError, id_order, load_ratings, unique_ids
from fedrec_nb.robust import fake_user_count, malicious_count
from fedrec_nb.splits import split_ratings

RUN = dict(rounds=1, local_epochs=1, batch_size=64, embedding_dim=4, engine="sequential", device="cpu", progress=False,
           plots=False, ranking=False)
MIXED = [1, 2, "a", "b", 3, "c", 4, "d", 5, "e", 6, "f"]   # a user's own ids: integers and strings in one column


def _ratings(users, n_items=120, per_user=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(u, int(i), float(rng.integers(1, 6)), int(1e9) + k * 100 + j)
            for k, u in enumerate(users) for j, i in enumerate(rng.choice(n_items, per_user, replace=False))]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    df["user_id"] = np.array(df["user_id"].tolist(), dtype=object)   # ints stay ints, strings stay strings
    return df


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    "40 users with integer ids, 120 films, 12 ratings each."
    path = tmp_path_factory.mktemp("data") / "small.csv"
    _ratings(list(range(40))).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def mixed_csv(tmp_path_factory):
    "A CSV whose user ids are 1, 2, 'a', 'b', ...: a text file, so every id of the column is read as its exact string."
    path = tmp_path_factory.mktemp("data") / "mixed.csv"
    _ratings(MIXED, n_items=400, per_user=15).to_csv(path, index=False)
    return path


def _no_data(monkeypatch):
    "Fail the test if a run reads any data (the refusals must come first)."
    import fedrec_nb.federation as federation
    def read(*a, **k): raise AssertionError("the data was read before the parameters were refused")
    monkeypatch.setattr(federation, "prepare_experiment", read)


# 1. an attack share that rounds to no attacker, or to every client

@pytest.mark.parametrize("fraction, count, hint", [(0.04, 0, "use at least 0.1"), (0.96, 10, "use at most 0.9")])
def test_attack_share_rounding_to_none_or_all_is_refused_before_the_data(monkeypatch, tmp_path, small_csv, fraction, count, hint):
    assert malicious_count(10, fraction) == count          # what the run would count
    _no_data(monkeypatch)
    with pytest.raises(ParameterError, match=rf"gives {count} of 10 clients as attackers.*{hint}"):
        run_federated(dataset=str(small_csv), attack="sign_flip", attack_fraction=fraction, num_clients=10,
                      output_dir=str(tmp_path), **RUN)


def test_fake_users_rounding_to_none_are_refused(monkeypatch, tmp_path, small_csv):
    assert fake_user_count(40, 0.01) == 0
    _no_data(monkeypatch)
    with pytest.raises(ParameterError, match="gives 0 fake users beside the 40 real clients.*use at least 0.025"):
        run_federated(dataset=str(small_csv), attack="promote_item", attack_fraction=0.01, partition="user", num_clients=40,
                      private_user_embeddings=True, output_dir=str(tmp_path), **RUN)
    assert fake_user_count(40, 0.025) == 1
    resolve_params(attack="promote_item", attack_fraction=0.025, partition="user", num_clients=40)


def test_the_suggested_share_runs_with_the_count_the_check_uses(tmp_path, small_csv):
    res = run_federated(dataset=str(small_csv), attack="sign_flip", attack_fraction=0.1, num_clients=10,
                        output_dir=str(tmp_path), **RUN)
    assert [r["malicious"] for r in res["rounds"]] == [malicious_count(10, 0.1)] == [1]


# 2. differential privacy: an impossible epsilon, a large delta, a dp_clip float32 cannot hold

def test_negative_epsilon_is_an_error():
    with pytest.raises(ValueError, match=r"epsilon -0.062 < 0.*use a smaller dp_delta"):
        epsilon_per_round(10.0, 1.0, 5, 0.1)
    with pytest.raises(ValueError, match="epsilon -0.062 < 0"):
        epsilon(10.0, 1.0, 1, 0.1)
    assert epsilon_per_round(10.0, 1.0, 5, 1e-5)[-1] > 0


def test_delta_of_at_least_one_over_n_warns():
    with pytest.warns(UserWarning, match=r"dp_delta=0.1 with num_clients=10.*1/N"):
        resolve_params(dp_noise_multiplier=1.0, dp_delta=0.1, num_clients=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a small delta, or no DP: silent
        resolve_params(dp_noise_multiplier=1.0, dp_delta=1e-5, num_clients=10)
        resolve_params(dp_delta=0.5, num_clients=10)


def test_impossible_epsilon_stops_the_run(tmp_path, small_csv):
    with pytest.warns(UserWarning, match="dp_delta=0.1"), pytest.raises(ValueError, match="epsilon -0.062 < 0"):
        run_federated(dataset=str(small_csv), dp_noise_multiplier=10.0, dp_delta=0.1, num_clients=10,
                      output_dir=str(tmp_path), **RUN)


def test_dp_clip_too_large_for_float32_is_refused_before_any_work(tmp_path, small_csv):
    "A clip whose noise would overflow the float32 model stops the run at its parameter check, naming dp_clip."
    for clip in (1e39, 1e7):   # float32's inf, and noise of std 1e7 on the sum
        with pytest.raises(ParameterError, match=re.escape(f"parameter dp_clip={clip:.3g}") + ".*lower dp_clip"):
            run_federated(dataset=str(small_csv), dp_noise_multiplier=1.0, dp_clip=clip, num_clients=10,
                          output_dir=str(tmp_path / "big"), **dict(RUN, rounds=2))
    assert not (tmp_path / "big" / "results.json").exists()   # refused before any work: nothing written
    ok = run_federated(dataset=str(small_csv), dp_noise_multiplier=1.0, dp_clip=1.0, num_clients=10,
                       output_dir=str(tmp_path / "ok"), **RUN)
    assert not any(r["skipped"] for r in ok["rounds"])
    assert all(torch.isfinite(t).all() for t in ok["recommender"].net.parameters()) and math.isfinite(ok["final"]["test_mae"])


# 3. a user's own data: ids mixing integers and strings

def test_id_order_is_the_one_rule_for_mixed_ids():
    ids = np.array(MIXED, dtype=object)
    assert unique_ids(ids).tolist() == [1, 2, 3, 4, 5, 6, "a", "b", "c", "d", "e", "f"] == ids[id_order(ids)].tolist()
    u, inv = unique_ids(ids, return_inverse=True)
    assert u[inv].tolist() == ids.tolist()


def _mixed_experiment(split, tmp_path):
    df = _ratings(MIXED, n_items=400, per_user=15)   # enough films for 99 sampled negatives per test user
    users = pd.DataFrame({"user_id": np.array(MIXED, dtype=object), "occupation": ["x", "y", "z"] * 4})
    data = load_ratings(df, users=users)
    assert {type(x) for x in data.ratings.user_id} == {int, str}
    train, test = split_ratings(data.ratings, split, 0.1, 42)
    return Experiment(data, train, test, encode_features(data),
                      dict(dataset="custom", data_dir=None, seed=42, test_size=0.1, split=split), tmp_path)


def test_partitions_by_user_take_mixed_ids(tmp_path):
    exp = _mixed_experiment("random", tmp_path)
    parts = partition_by_user(exp.train, len(MIXED))
    assert all(exp.train.user_id.iloc[p].nunique() == 1 for p in parts)
    owner = {u: k for k, p in enumerate(partition_demographic(exp.train, exp.data.users, 3)) for u in exp.train.user_id.iloc[p]}
    assert len(owner) == len(MIXED) and set(owner.values()) == {0, 1, 2}
    assert pick_user(exp.train, exp.test, min_held_out=1) in MIXED


@pytest.mark.parametrize("kw", [dict(partition="user", num_clients=12), dict(partition="demographic", num_clients=3),
                                dict(partition="user", num_clients=12, objective="implicit", split="leave_one_out")])
def test_runs_on_mixed_ids(tmp_path, kw):
    exp = _mixed_experiment(kw.get("split", "random"), tmp_path)
    res = run_federated(experiment=exp, output_dir=str(tmp_path), **dict(RUN, **kw))
    assert len(res["clients"]) == kw["num_clients"]
    assert all(math.isfinite(r["train_loss"]) for r in res["rounds"])


@pytest.mark.parametrize("kw", [dict(partition="user", num_clients=12),
                                dict(partition="user", num_clients=12, objective="implicit", split="leave_one_out")])
def test_runs_on_a_csv_of_mixed_ids(tmp_path, mixed_csv, kw):
    res = run_federated(dataset=str(mixed_csv), output_dir=str(tmp_path), **dict(RUN, **kw))
    assert len(res["clients"]) == 12


# 4. every option an error message suggests is one the user can pass

def test_duplicates_message_names_an_option_run_federated_takes(tmp_path):
    df = _ratings(list(range(20)))
    df = pd.concat([df, df.iloc[[0]].assign(rating=1.0)], ignore_index=True)   # user 0 rates one film twice
    path = tmp_path / "twice.csv"; df.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match="Pass duplicates='last' or 'mean'") as e:
        run_federated(dataset=str(path), output_dir=str(tmp_path / "e"), **RUN)
    assert "run_federated" in str(e.value) and "duplicates" in PARAMS and "duplicates" in DATA_KEYS
    for how in ("last", "mean"):   # the options the message suggests are parameters of the run
        res = run_federated(dataset=str(path), duplicates=how, output_dir=str(tmp_path / how), **RUN)
        assert res["params"]["duplicates"] == how
        assert len(res["experiment"].data.ratings) == len(df) - 1
    with pytest.raises(ParameterError, match="parameter duplicates='first'"):
        resolve_params(duplicates="first")


# --- a user's own ratings: click files, typos, a declared scale ------------------------------------------------------------
def _ratings_csv(path, ratings):
    import pandas as pd
    rng = np.random.default_rng(0)
    n = len(ratings)
    pd.DataFrame({"user_id": rng.integers(0, 40, n), "item_id": rng.integers(0, 300, n), "rating": ratings,
                  "timestamp": np.arange(n)}).drop_duplicates(["user_id", "item_id"]).to_csv(path, index=False)
    return path


def test_a_click_file_runs_the_implicit_objective(tmp_path):
    csv = _ratings_csv(tmp_path / "clicks.csv", np.ones(1500))
    from fedrec_nb.ratings import load_ratings
    assert load_ratings(csv).rating_scale == (0.0, 1.0)
    res = run_federated(dataset=str(csv), objective="implicit", split="leave_one_out", model="mf", num_negatives=2, num_clients=4,
                        rounds=1, local_epochs=1, embedding_dim=4, engine="sequential", output_dir=str(tmp_path / "run"),
                        progress=False, plots=False, ranking=False)
    assert 0 <= res["final"]["test_hr@10"] <= 1


def test_a_typo_rating_is_a_warning_naming_its_row_and_a_declared_scale_an_error(tmp_path):
    v = np.random.default_rng(1).integers(1, 6, 3000).astype(float); v[17] = 50.0
    csv = _ratings_csv(tmp_path / "typo.csv", v)
    from fedrec_nb.ratings import load_ratings
    with pytest.warns(UserWarning, match="rating 50 in row .* rating_scale"): load_ratings(csv)
    with pytest.raises(ValueError, match="outside the scale 1.0..5.0; first in row"):
        run_federated(dataset=str(csv), rating_scale="1,5", rounds=1, local_epochs=1, embedding_dim=4, engine="sequential",
                      output_dir=str(tmp_path / "run"), progress=False, plots=False, ranking=False)
    with pytest.raises(ParameterError, match="rating_scale"): resolve_params(rating_scale="5,1")
    with pytest.raises(ValueError, match="rating_scale declares the scale of your own ratings file"):
        run_federated(dataset="synthetic", rating_scale="1,5", output_dir=str(tmp_path / "syn"), progress=False, plots=False)
