"""The ML-20M-shaped data set and the per-client updates as touched entries: cheap checks by default, the full shape gated."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from fedrec_nb.client import ClientUpdates, LocalConfig, PrivateState, build_clients, local_train_sequential
from fedrec_nb.data import DATASET_NAMES, dataset_files
from fedrec_nb.defences import Defences
from fedrec_nb.experiment import ParameterError
from fedrec_nb.robust import GRAM_MAX_CLIENTS, sparse_from_dense, sparse_median
from fedrec_nb.strategies import FedAvg
from fedrec_nb.synthetic import ML20M_SHAPE, synthetic_ml20m

SLOW = pytest.mark.skipif(not os.environ.get("FEDREC_SLOW_TESTS"), reason="set FEDREC_SLOW_TESTS=1: generates 20M ratings")


def _shape_checks(d, users, ratings):
    r = d.ratings
    assert r.user_id.nunique() == users and len(r) == ratings and len(d.items) == ML20M_SHAPE["n_items"]
    per_user = r.groupby("user_id").size()
    assert per_user.min() >= 20                                     # every user at least 20 ratings, as in ML-20M
    assert per_user.max() > 8 * per_user.median()                   # a long tail of heavy users
    assert not r.duplicated(["user_id", "item_id"]).any()
    pop = np.sort(r.item_id.value_counts().to_numpy())[::-1]
    assert pop[: ML20M_SHAPE["n_items"] // 100].sum() > 0.2 * len(r)  # the top 1% of the films hold over a fifth of the ratings
    assert set(r.rating.unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_ml20m_shape_scaled_down_is_seeded_and_skewed():
    d = synthetic_ml20m(scale=0.005, seed=2)
    _shape_checks(d, 692, round(ML20M_SHAPE["n_ratings"] * 692 / ML20M_SHAPE["n_users"]))
    assert d.ratings.equals(synthetic_ml20m(scale=0.005, seed=2).ratings)
    assert not d.ratings.equals(synthetic_ml20m(scale=0.005, seed=3).ratings)
    assert d.name == "synthetic-ml-20m" and "synthetic-ml-20m" in DATASET_NAMES and dataset_files("synthetic-ml-20m") == []


def test_ml20m_scale_is_checked_before_any_work():
    for bad in (0, -0.5, 1.5, "half"):
        with pytest.raises(ValueError, match="parameter scale"): synthetic_ml20m(scale=bad)


@SLOW
def test_full_ml20m_shape_in_bounded_memory():
    code = ("import json, resource; from fedrec_nb.data import load_dataset; d = load_dataset('synthetic-ml-20m'); "
            "r = d.ratings; g = r.groupby('user_id').size(); "
            "print(json.dumps([int(r.user_id.nunique()), int(r.item_id.nunique()), len(r), int(g.min()), "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ))
    users, items, n, least, peak = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert (users, n) == (ML20M_SHAPE["n_users"], ML20M_SHAPE["n_ratings"]) and items <= ML20M_SHAPE["n_items"]
    assert least >= 20 and peak < 12e9


def test_client_updates_hold_only_the_touched_entries(tiny_case):
    model, glob, clients, features, private = tiny_case
    w = torch.full((len(clients),), 1 / len(clients))
    cfg = LocalConfig(local_epochs=1, batch_size=4, lr=0.05)
    from fedrec_nb.vectorized import local_train_vectorized
    a = local_train_sequential(model, glob, clients, w, features, cfg, 0, 0, private(), per_client=True).updates
    b = local_train_vectorized(model, glob, clients, w, features, cfg, 0, 0, private(), per_client=True).updates
    for u in (a, b):
        key = u.client * u.P + u.col
        assert torch.unique(key).numel() == key.numel()              # no (client, col) twice
        assert u.value.numel() == int(u.mask.sum()) < 0.5 * len(u) * u.P   # one entry per touched coordinate, far from dense
    assert a.cids == b.cids
    torch.testing.assert_close(b.U, a.U, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.mask, b.mask)


@pytest.fixture
def tiny_case():
    from fedrec_nb.features import encode_features, encode_ratings
    from fedrec_nb.models import build_model
    from fedrec_nb.partitions import client_of_user, partition_by_user
    from fedrec_nb.splits import split_ratings
    d = synthetic_ml20m(scale=0.0005, seed=0)      # 69 users over 26,744 films
    f = encode_features(d)
    train, test = split_ratings(d.ratings, "random", 0.1, 0)
    u, i, y = encode_ratings(train, f); tu, ti, ty = encode_ratings(test, f)
    parts = partition_by_user(train, int(train.user_id.nunique()), 0)
    owner = client_of_user(u.numpy(), parts, f.n_users)
    clients = build_clients(u, i, y, parts, tu, ti, ty, owner[tu.numpy()])[:12]
    torch.manual_seed(0)
    model = build_model("mf", f, 4, d.rating_scale)
    glob = {n: t.detach().clone() for n, t in model.named_parameters()}
    private = lambda: PrivateState(tuple(model.user_params), glob)
    return model, glob, clients, f, private


def _one_row_clients(K, rows, d, seed):
    "K clients that each touched one row of a (rows, d) item table, as `ClientUpdates`."
    g = torch.Generator().manual_seed(seed)
    item = torch.randint(0, rows, (K,), generator=g)
    client = torch.arange(K).repeat_interleave(d)
    col = (item[:, None] * d + torch.arange(d)).reshape(-1)
    return ClientUpdates(list(range(K)), [10] * K, client, col, torch.randn(K * d, generator=g) * 0.01, {"item_embedding.weight": (rows, d)})


class _Toy(torch.nn.Module): item_params = ("item_embedding.weight",)


def test_defences_combine_without_a_dense_matrix():
    K, rows, d = 50_000, 200_000, 8          # dense, the (K, P) matrix would be 8e10 floats (320 GB)
    ups, glob = _one_row_clients(K, rows, d, 0), {"item_embedding.weight": torch.zeros(rows, d)}
    for kw in (dict(aggregator="median"), dict(aggregator="trimmed_mean"), dict()):
        delta, _ = Defences(dict(seed=0, rounds=1, client_fraction=1.0, **kw), K, _Toy()).combine(ups, glob, FedAvg(), 0)
        assert delta["item_embedding.weight"].shape == (rows, d) and bool(torch.isfinite(delta["item_embedding.weight"]).all())
    small, glob = _one_row_clients(300, 50, d, 1), {"item_embedding.weight": torch.zeros(50, d)}
    ref = sparse_median(sparse_from_dense(small.U, small.mask))          # a few clients: the dense reference
    got = Defences(dict(seed=0, rounds=1, aggregator="median"), 300, _Toy()).combine(small, glob, FedAvg(), 0)[0]
    assert torch.equal(got["item_embedding.weight"].reshape(-1), ref)


def test_gram_defences_refuse_too_many_clients_per_round_naming_client_fraction():
    Toy = _Toy
    for agg in ("krum", "multi_krum", "foolsgold"):
        with pytest.raises(ValueError, match="client_fraction"):
            Defences(dict(seed=0, rounds=1, aggregator=agg, client_fraction=1.0), GRAM_MAX_CLIENTS + 1, Toy())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Defences(dict(seed=0, rounds=1, aggregator="krum", client_fraction=0.5), 30_000, Toy())
    assert any("GB each" in str(w.message) for w in caught)
    Defences(dict(seed=0, rounds=1, aggregator="krum", client_fraction=0.1), 30_000, Toy())   # sampled: fine
