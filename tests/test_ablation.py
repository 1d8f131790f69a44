"""Dropping input groups (`build_model(drop=)`): a dropped group has no effect on the output and gets no gradient, in
every engine; unknown groups are refused naming `drop_inputs`; models built without a drop are the models they were.
The film's age (`encode_features(recency=True)`) and the ablation's table."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from fedrec_nb.ablation import ablation_table, run_grid
from fedrec_nb.splits import split_ratings
from fedrec_nb.features import encode_features, encode_ratings
from fedrec_nb.data import load_dataset
from fedrec_nb.experiment import Experiment, ParameterError
from fedrec_nb.federated import LocalConfig, build_clients, local_train_sequential
from fedrec_nb.models import INPUT_GROUPS, build_model, check_drop
from fedrec_nb.partitions import partition
from fedrec_nb.vectorized import local_train_vectorized, relative_difference


@pytest.fixture(scope="module")
def ml():
    "Real ML-100K when it is there (the synthetic twin otherwise): features with the film's age, a batch of 256 rows."
    try: data = load_dataset("ml-100k")
    except Exception: data = load_dataset("synthetic")
    feats = encode_features(data, recency=True)
    u, i, y = encode_ratings(data.ratings.sample(256, random_state=0), feats)
    return dict(data=data, feats=feats, u=u, i=i, y=y)


def _changed(feats, batch, group):
    "A copy of `batch` in which only input `group` differs (other users/items, other side features)."
    b, g = dict(batch), torch.Generator().manual_seed(3)
    if group == "user": b["user"] = (b["user"] + 1 + torch.randint(0, feats.n_users - 1, b["user"].shape, generator=g)) % feats.n_users
    elif group == "item": b["item"] = (b["item"] + 1 + torch.randint(0, feats.n_items - 1, b["item"].shape, generator=g)) % feats.n_items
    elif group == "age": b["age"] = (b["age"] + 1) % len(feats.age_names)
    elif group == "gender": b["gender"] = 1 - b["gender"]
    elif group == "genres": b["genres"] = 1 - b["genres"]
    elif group == "occupation": b["occupation"] = b["occupation"].roll(1, dims=1)
    else: b["recency"] = -3 * b["recency"] + 1
    return b


def _model(name, feats, drop=(), seed=0):
    "A seeded model whose output head is not zero (hybrid starts as the bias model, blind to the MLP's inputs)."
    torch.manual_seed(seed)
    m = build_model(name, feats, 16, drop=drop)
    if name == "hybrid":
        with torch.no_grad(): m.mlp[-1].weight.normal_(std=0.5)
    return m


OWNED = {"expanded": {"user": ("user_embedding.weight",), "item": ("movie_embedding.weight",)},   # parameters of a group
         "hybrid": {"user": ("user_embedding.weight", "user_bias.weight"), "item": ("item_embedding.weight", "item_bias.weight")}}


@pytest.mark.parametrize("name", ["expanded", "hybrid"])
@pytest.mark.parametrize("group", INPUT_GROUPS)
def test_a_dropped_group_has_no_effect_and_no_gradient(ml, name, group):
    feats = ml["feats"]
    b = feats.batch(ml["u"], ml["i"])
    full, without = _model(name, feats), _model(name, feats, (group,))
    with torch.no_grad():
        assert (full(b) - full(_changed(feats, b, group))).abs().max() > 1e-4      # the input matters to the full model
        torch.testing.assert_close(without(b), without(_changed(feats, b, group)), rtol=0, atol=1e-6)
    F.mse_loss(without(b), ml["y"]).backward()
    grads = {n: p.grad for n, p in without.named_parameters()}
    mine = OWNED[name].get(group, (f"{group.removesuffix('s')}_layer.weight", f"{group.removesuffix('s')}_layer.bias",
                                   f"{group}_embedding.weight"))
    mine = [n for n in mine if n in grads]
    assert mine and all(grads[n] is not None and not grads[n].any() for n in mine), group   # its parameters get no gradient
    assert all(grads[n].any() for n in grads if n not in mine), [n for n in grads if n not in mine and not grads[n].any()]  # the rest learns


def test_mf_drops_its_user_and_item_terms(ml):
    feats = ml["feats"]
    b = feats.batch(ml["u"], ml["i"], ("user", "item"))
    m = build_model("mf", feats, 8, drop=("user",))
    with torch.no_grad():
        m.user_bias.weight.normal_(); m.item_bias.weight.normal_()
        torch.testing.assert_close(m(b), m(_changed(feats, b, "user")), rtol=0, atol=1e-6)
        assert (m(b) - m(_changed(feats, b, "item"))).abs().max() > 1e-3


def test_unknown_groups_are_refused_naming_the_parameter(ml):
    for bad in (("genre",), ("user", "films"), 3, [None]):
        with pytest.raises(ValueError, match="drop_inputs"):
            build_model("hybrid", ml["feats"], 8, drop=bad)
    assert check_drop("age") == {"age"} and check_drop(()) == frozenset()


def _expanded_reference(m, b):
    "ExpandedRecommender.forward as it was before input groups could be dropped."
    x = [m.user_embedding(b["user"]), m.movie_embedding(b["item"]), F.relu(m.genre_layer(b["genres"])),
         F.relu(m.occupation_layer(b["occupation"])), m.age_embedding(b["age"]), m.gender_embedding(b["gender"])]
    return m.fc3(F.relu(m.fc2(F.relu(m.fc1(torch.cat(x, 1)))))).squeeze(-1)


def _hybrid_reference(m, b):
    "HybridRecommender.forward as it was before input groups could be dropped."
    u, i = b["user"], b["item"]
    x = [m.user_embedding(u), m.item_embedding(i), F.relu(m.genre_layer(b["genres"])), F.relu(m.occupation_layer(b["occupation"])),
         m.age_embedding(b["age"]), m.gender_embedding(b["gender"])]
    z = m.offset + m.user_bias(u).squeeze(-1) + m.item_bias(i).squeeze(-1) + m.mlp(torch.cat(x, 1)).squeeze(-1)
    lo, hi = m.rating_scale
    return lo + (hi - lo) * torch.sigmoid(z)


def test_default_models_are_unchanged(ml):
    "Default features carry no film age: the models have their old parameters, the old output, the same one with drop=()."
    feats = encode_features(ml["data"])
    assert feats.recency is None
    b = feats.batch(ml["u"], ml["i"])
    expected = {"expanded": ["user_embedding.weight", "movie_embedding.weight", "genre_layer.weight", "genre_layer.bias",
                             "age_embedding.weight", "gender_embedding.weight", "occupation_layer.weight", "occupation_layer.bias",
                             "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"],
                "hybrid": ["offset", "user_embedding.weight", "item_embedding.weight", "user_bias.weight", "item_bias.weight",
                           "genre_layer.weight", "genre_layer.bias", "occupation_layer.weight", "occupation_layer.bias",
                           "age_embedding.weight", "gender_embedding.weight", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight",
                           "mlp.2.bias", "mlp.4.weight", "mlp.4.bias"]}
    for name, ref in (("expanded", _expanded_reference), ("hybrid", _hybrid_reference)):
        a, d = _model(name, feats), _model(name, feats, ())
        assert [n for n, _ in a.named_parameters()] == expected[name] and not a.recency and a.drop == frozenset()
        with torch.no_grad():
            assert torch.equal(a(b), ref(a, b)) and torch.equal(a(b), d(b))
    # the film's age adds one layer and leaves every other parameter's shape except the first MLP layer's input width
    with_rec = _model("hybrid", ml["feats"])
    assert with_rec.recency and with_rec.recency_layer.weight.shape == (8, 1)


def test_engines_agree_and_keep_dropped_parameters_still(ml):
    "A round of the vectorized engine equals the sequential one for a model without genres; the genre layer does not move."
    data, feats = ml["data"], ml["feats"]
    train, _ = split_ratings(data.ratings, "random", 0.1, 42)
    u, i, y = encode_ratings(train, feats)
    clients = build_clients(u, i, y, partition("iid", train, data, 20, 0.5, 42), u[:0], i[:0], y[:0], np.zeros(0, int))[:4]
    net = _model("hybrid", feats, ("genres",))
    gp = {n: p.detach().clone() for n, p in net.named_parameters()}
    cfg, w = LocalConfig(1, 512, 3e-3), torch.full((4,), 0.25)
    a = local_train_sequential(net, gp, clients, w, feats, cfg, 0, 0)
    b = local_train_vectorized(net, gp, clients, w, feats, cfg, 0, 0)
    assert max(relative_difference(a.delta, b.delta).values()) < 1e-4
    for upd in (a, b):
        assert not upd.delta["genre_layer.weight"].any() and not upd.delta["genre_layer.bias"].any()
        assert upd.delta["mlp.0.bias"].abs().max() > 0


def test_film_age_feature(ml):
    data, feats = ml["data"], ml["feats"]
    r = feats.recency[:, 0]
    assert feats.recency.shape == (feats.n_items, 1) and abs(float(r.mean())) < 1e-4
    years = pd.to_numeric(data.items["year"], errors="coerce").to_numpy(float)
    ok = np.isfinite(years)
    assert np.corrcoef(years[ok], r.numpy()[ok])[0, 1] < -0.8       # newer films are younger
    assert (r.numpy()[~ok] == 0).all()
    assert "recency" in feats.batch(ml["u"], ml["i"]) and encode_features(data).recency is None


def test_run_grid_refuses_what_would_change_nothing(ml):
    data = ml["data"]
    train, test = split_ratings(data.ratings, "random", 0.1, 42)
    exp = Experiment(data, train, test, encode_features(data))
    with pytest.raises(ParameterError, match="not inputs of these features"):
        run_grid(exp, groups=("recency",))
    with pytest.raises(ValueError, match="drop_inputs"):
        run_grid(exp, groups=("title",))
    with pytest.raises(ParameterError, match="setting"):
        run_grid(exp, setting="both")


def test_ablation_table_pairs_each_run_with_the_same_seeds_full_model():
    runs = pd.DataFrame(dict(setting="central", model="hybrid", dropped=["none", "none", "age", "age"], seed=[0, 1, 0, 1],
                             test_rmse=[1.0, 2.0, 1.1, 2.3], test_mae=[0.5, 0.6, 0.5, 0.7]))
    t = ablation_table(runs).set_index("dropped")
    assert t.loc["age", "d_rmse"] == pytest.approx(0.2) and t.loc["age", "d_rmse_std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert t.loc["none", "d_rmse"] == 0 and t.loc["age", "rmse"] == pytest.approx(1.7)
