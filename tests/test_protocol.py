"""PFedRec's evaluation protocol (`protocol='pfedrec'`): its split's tie rule, its disjoint negatives, the refused combinations."""
import numpy as np
import pandas as pd
import pytest
import torch

from fedrec_nb.experiment import ParameterError
from fedrec_nb.features import encode_features
from fedrec_nb.federation import build_federation
from fedrec_nb.implicit import disjoint_negatives, protocol_data
from fedrec_nb.parameters import resolve_params
from fedrec_nb.splits import leave_two_out
from fedrec_nb.synthetic import synthetic_movielens


def test_tie_rule_earlier_row_is_test_next_is_validation():
    # user 1: three ratings in its latest second (rows 0, 1, 3) and one earlier; user 2: no tie
    r = pd.DataFrame({"user_id": [1, 1, 2, 1, 2, 1, 2], "item_id": [10, 11, 12, 13, 14, 15, 16],
                      "rating": [4.0] * 7, "timestamp": [9, 9, 1, 9, 2, 3, 3]})
    train, valid, test = leave_two_out(r)
    assert test.set_index("user_id").item_id.to_dict() == {1: 10, 2: 16}    # the earlier of the tied rows, then the latest
    assert valid.set_index("user_id").item_id.to_dict() == {1: 11, 2: 14}   # the next tied row; user 2's second latest
    assert sorted(train.item_id) == [12, 13, 15]
    # the same ratings in another row order: the order alone decides among the tied rows
    _, valid2, test2 = leave_two_out(r.iloc[[3, 1, 0, 2, 4, 5, 6]])
    assert test2.set_index("user_id").item_id[1] == 13 and valid2.set_index("user_id").item_id[1] == 11
    # as pandas' rank(method='first', ascending=False) per user, which PFedRec's code uses
    rank = r.groupby("user_id").timestamp.rank(method="first", ascending=False)
    assert set(r.item_id[rank == 1]) == set(test.item_id) and set(r.item_id[rank == 2]) == set(valid.item_id)


def test_negatives_disjoint_never_rated_and_dealt_at_random():
    data = synthetic_movielens(n_users=40, n_items=300, n_ratings=2000, seed=3)
    feats = encode_features(data)
    train, valid, test = leave_two_out(data.ratings)
    vneg, tneg = disjoint_negatives(train, valid, test, feats.item_ids, 30, seed=0)
    assert vneg.shape == (len(valid), 30) and tneg.shape == (len(test), 30)
    rated = set(zip(data.ratings.user_id, data.ratings.item_id))
    tpos = dict(zip(test.user_id, tneg))
    for u, row in zip(valid.user_id, vneg):
        assert not set(row) & set(tpos[u])                                   # disjoint
        assert len(set(row)) == 30
    for d, ng in ((valid, vneg), (test, tneg)):
        assert not any((u, feats.item_ids[i]) in rated for u, row in zip(d.user_id, ng) for i in row)   # never rated
    assert abs(vneg.mean() - tneg.mean()) < 30                               # neither half gets the low positions
    assert (disjoint_negatives(train, valid, test, feats.item_ids, 30, seed=1)[1] != tneg).any()
    td, vd = protocol_data("pfedrec", train, test, feats, 30, valid)
    assert np.array_equal(td.negatives.numpy(), tneg) and np.array_equal(vd.negatives.numpy(), vneg)
    with pytest.raises(ParameterError, match="user_id"):                     # too few unrated items for 2n
        disjoint_negatives(train, valid, test, feats.item_ids, 200, seed=0, name="eval_negatives")


@pytest.mark.parametrize("given, named", [
    (dict(objective="rating"), "parameter protocol='pfedrec'"),
    (dict(client_fraction=0.5), "parameter client_fraction=0.5"),
    (dict(client_dropout=0.1), "parameter client_dropout=0.1"),
    (dict(dp_noise_multiplier=1.0), "parameter dp_noise_multiplier=1.0"),
    (dict(engine="flower"), "parameter protocol='pfedrec'"),
    (dict(client_optimizer="adam", item_lr=10.0), "parameter item_lr=10.0"),
])
def test_refused_combinations(given, named, tmp_path):
    base = dict(dataset="synthetic", objective="implicit", split="leave_one_out", protocol="pfedrec", client_optimizer="sgd",
                output_dir=str(tmp_path))
    resolve_params(base)   # the base is fine
    with pytest.raises(ParameterError, match=named.replace("(", r"\(")):
        resolve_params({**base, **given})


def test_item_lr_is_the_item_tables_step_in_both_engines(tmp_path):
    "item_lr=lr is the plain run; a larger item_lr moves the item tables further and the user side no further, in both engines."
    from fedrec_nb.federated import run_federated
    synthetic_movielens(n_users=30, n_items=80, n_ratings=900, seed=2).ratings.to_csv(tmp_path / "r.csv", index=False)
    base = dict(dataset=str(tmp_path / "r.csv"), objective="implicit", split="leave_one_out", model="mf", client_optimizer="sgd",
                lr=0.05, rounds=1, local_epochs=1, num_clients=4, embedding_dim=8, device="cpu", eval_negatives=20)
    init = build_federation(dict(base, output_dir=str(tmp_path / "i"))).initial_params
    def params(i, **kw):
        r = run_federated(output_dir=str(tmp_path / str(i)), plots=False, progress=False, ranking=False, **base, **kw)
        return {n: t.detach().clone() for n, t in r["recommender"].net.named_parameters()}
    moved = lambda p, n: float((p[n] - init[n]).abs().sum())
    for k, engine in enumerate(("vectorized", "sequential")):
        plain, same, fast = params(3 * k, engine=engine), params(3 * k + 1, engine=engine, item_lr=0.05), params(3 * k + 2, engine=engine, item_lr=0.5)
        assert all(torch.equal(plain[n], same[n]) for n in plain), engine
        assert moved(fast, "item_embedding.weight") > 5 * moved(plain, "item_embedding.weight"), engine   # the item tables' larger step
        assert moved(fast, "user_embedding.weight") < 2 * moved(plain, "user_embedding.weight"), engine   # the user side keeps lr's
