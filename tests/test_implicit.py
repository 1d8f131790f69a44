"""fedrec_nb.implicit: the leave-one-out tie rule, the shared negatives, HR/NDCG on a hand-made case, the training negatives
and losses, NeuMF and mf's logit, and a trained BPR-MF against most-popular on ML-100K."""
import numpy as np
import pandas as pd
import pytest
import torch

from fedrec_nb.ratings import load_ratings
from fedrec_nb.splits import LOO_TIES, split_ratings
from fedrec_nb.features import encode_features
from fedrec_nb.data import load_dataset
from fedrec_nb.experiment import ParameterError
from fedrec_nb.implicit import (ImplicitData, evaluate_topn, implicit_data, implicit_loss, implicit_loss_from_scores,
                                interaction_keys, is_rated, model_scorer, popularity_scorer, sample_negatives,
                                sample_train_negatives, topn_ranks, train_implicit)
from fedrec_nb.models import IMPLICIT_MODELS, MODELS, NeuMF, build_model, raw_score


def ties_frame():
    # user 1: items 9 and 5 at its latest second 2, item 7 earlier; user 2: items 3 and 4 both at second 5
    return pd.DataFrame({"user_id": [1, 1, 1, 2, 2], "item_id": [9, 5, 7, 3, 4], "rating": [3.0] * 5, "timestamp": [2, 2, 1, 5, 5]})


def test_leave_one_out_holds_out_the_last_tied_row_at_the_latest_second_whatever_the_seed():
    r = ties_frame()
    for seed in (0, 1, 42):
        tr, te = split_ratings(r, "leave_one_out", seed=seed)
        assert list(zip(te.user_id, te.item_id)) == [(1, 5), (2, 4)]
        assert len(tr) == 3 and not set(zip(te.user_id, te.item_id)) & set(zip(tr.user_id, tr.item_id))
    assert sorted(split_ratings(r.iloc[::-1], "leave_one_out")[1].item_id) == [3, 9]   # the rows' order is the rule
    assert split_ratings(r, "leave_one_out", ties="first_row")[1].item_id.tolist() == [9, 3]
    for order in (r, r.iloc[::-1], r.iloc[[3, 0, 4, 2, 1]]):                            # item_id: independent of the order
        assert sorted(split_ratings(order, "leave_one_out", ties="item_id")[1].item_id) == [4, 9]
    with pytest.raises(ValueError, match="parameter ties='newest'"):
        split_ratings(r, "leave_one_out", ties="newest")


def test_item_id_tie_rule_orders_mixed_ids_numbers_before_strings():
    d = load_ratings(pd.DataFrame({"user_id": [1, 1, 1], "item_id": pd.Series([5, "b", 70], dtype=object),
                                   "rating": [1.0, 2, 3], "timestamp": [4, 4, 4]}))
    assert split_ratings(d.ratings, "leave_one_out", ties="item_id")[1].item_id.tolist() == ["b"]   # numbers by value, then strings
    assert split_ratings(d.ratings, "leave_one_out")[1].item_id.tolist() == [70]                     # last_row


def test_random_ties_still_follow_the_seed():
    r = pd.DataFrame({"user_id": [1] * 20, "item_id": range(20), "rating": [1.0] * 20, "timestamp": [7] * 20})
    picks = {int(split_ratings(r, "leave_one_out", ties="random", seed=s)[1].item_id[0]) for s in range(10)}
    assert len(picks) > 1 and split_ratings(r.iloc[::-1], "leave_one_out")[1].item_id.tolist() == [0]
    assert LOO_TIES[0] == "last_row"


def test_sampled_negatives_are_never_interacted_with_distinct_and_identical_across_calls():
    tr = pd.DataFrame({"user_id": np.repeat([10, 20, 30], 4), "item_id": [1, 2, 3, 4, 2, 3, 5, 6, 1, 7, 8, 9]})
    te = pd.DataFrame({"user_id": [30, 10, 20], "item_id": [11, 5, 12]})
    items = np.arange(1, 41)
    a = sample_negatives(tr, te, items, n=20, seed=3)
    assert a.shape == (3, 20) and (a == sample_negatives(tr, te, items, n=20, seed=3)).all()
    assert (a != sample_negatives(tr, te, items, n=20, seed=4)).any()
    for row, u in zip(a, te.user_id):
        mine = set(tr.item_id[tr.user_id == u]) | set(te.item_id[te.user_id == u])
        assert len(set(row)) == 20 and not mine & set(items[row])
    # test rows in another order: each user keeps its negatives
    b = sample_negatives(tr, te.iloc[[2, 0, 1]], items, n=20, seed=3)
    assert (b == a[[2, 0, 1]]).all()
    with pytest.raises(ParameterError, match="user_id 10 interacted with 5 of the 40 items"):
        sample_negatives(tr, te, items, n=36)
    with pytest.raises(ParameterError, match="parameter n=0"):
        sample_negatives(tr, te, items, n=0)


def hand_case():
    S = torch.tensor([[9., 5, 5, 7, 1, 0], [9, 1, 9, 2, 8, 0]])
    tu, ti = torch.tensor([0, 1, 1]), torch.tensor([0, 0, 2])
    data = ImplicitData(2, 6, tu, ti, torch.tensor([0, 1]), torch.tensor([1, 3]), torch.tensor([[2, 4], [1, 5]]), interaction_keys(tu, ti, 6))
    return data, (lambda u, i: S[u, i])


def test_hr_and_ndcg_are_exact_on_a_hand_made_case_with_pessimistic_ties():
    data, score = hand_case()
    # sampled: user 0's item 1 (5) ties negative 2 (5): rank 1; user 1's item 3 (2) beats 1 (1) and 5 (0): rank 0
    assert topn_ranks(score, data, "sampled").tolist() == [1, 0]
    r = evaluate_topn(score, data, "sampled", k=2, per_user=True)
    assert r["hr@2"] == 1.0 and r["ndcg@2"] == pytest.approx((1 / np.log2(3) + 1) / 2)
    assert r["per_user"]["hr"].tolist() == [1.0, 1.0] and r["per_user"]["user"].tolist() == [0, 1]
    assert evaluate_topn(score, data, "sampled", k=1)["hr@1"] == 0.5
    # full: user 0's training item 0 (score 9) is masked; items 2 (tie) and 3 (7) ahead: rank 2; user 1: item 4 (8) ahead: rank 1
    assert topn_ranks(score, data, "full").tolist() == [2, 1]
    r = evaluate_topn(score, data, "full", k=2)
    assert r["hr@2"] == 0.5 and r["ndcg@2"] == pytest.approx(1 / np.log2(3) / 2)
    assert evaluate_topn(lambda u, i: torch.zeros(len(u)), data, "full", k=3)["hr@3"] == 0.0   # all tied: ranks 4 and 3


def test_training_negatives_are_unrated_and_reproducible_with_a_generator():
    tu, ti = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2, 5])
    keys = interaction_keys(tu, ti, 8)
    users = torch.tensor([0, 1] * 500)
    a = sample_train_negatives(users, keys, 8, 4, torch.Generator().manual_seed(1))
    assert a.shape == (1000, 4) and not is_rated(users[:, None], a, keys, 8).any()
    assert (a == sample_train_negatives(users, keys, 8, 4, torch.Generator().manual_seed(1))).all()
    assert set(a[users == 0].flatten().tolist()) == {3, 4, 5, 6, 7}   # every unrated item, none rated
    with pytest.raises(RuntimeError, match="nearly all 3 items"):
        sample_train_negatives(torch.tensor([0]), interaction_keys(torch.zeros(3, dtype=torch.long), torch.arange(3), 3), 3, 1, max_rounds=2)


def test_losses_at_zero_logits_and_with_padding():
    for loss in ("bce", "bpr"):
        assert float(implicit_loss_from_scores(torch.zeros(3), torch.zeros(3, 4), loss)) == pytest.approx(np.log(2))
        per_client = implicit_loss_from_scores(torch.zeros(2, 3), torch.zeros(2, 3, 4), loss, weight=torch.tensor([[1., 1, 0], [1, 0, 0]]))
        assert per_client.shape == (2,) and torch.allclose(per_client, torch.full((2,), float(np.log(2))))
    # bce: -log sigmoid(2) and 4 x -log(1 - sigmoid(-1)), averaged over the 5 pairs
    want = (np.log1p(np.exp(-2.0)) + 4 * np.log1p(np.exp(-1.0))) / 5
    assert float(implicit_loss_from_scores(torch.tensor([2.0]), torch.full((1, 4), -1.0), "bce")) == pytest.approx(want, rel=1e-5)
    assert float(implicit_loss_from_scores(torch.tensor([2.0]), torch.full((1, 4), -1.0), "bpr")) == pytest.approx(np.log1p(np.exp(-3.0)), rel=1e-5)
    with pytest.raises(ParameterError, match="parameter loss='mse'"):
        implicit_loss_from_scores(torch.zeros(3), torch.zeros(3, 4), "mse")


@pytest.fixture(scope="module")
def ml100k_implicit():
    import os
    from pathlib import Path
    d = os.environ.get("FEDREC_DATA")
    if not d or not (Path(d) / "ml-100k.zip").is_file() and not (Path(d) / "ml-100k").is_dir():
        pytest.skip("real ML-100K not available (set FEDREC_DATA)")
    data = load_dataset("ml-100k"); feats = encode_features(data)
    train, test = split_ratings(data.ratings, "leave_one_out")
    return implicit_data(train, test, feats), feats


def test_ncf_and_logit_mf_follow_the_model_interface(ml100k_implicit):
    data, feats = ml100k_implicit
    assert MODELS["ncf"] is NeuMF and IMPLICIT_MODELS["ncf"] is NeuMF
    b = {"user": data.test_users[:8], "item": data.test_items[:8]}
    torch.manual_seed(0); m = build_model("mf", feats, 8)
    with torch.no_grad():
        for p in m.parameters(): p.normal_()
    lm = IMPLICIT_MODELS["mf"](feats, 8); lm.load_state_dict(m.state_dict())
    assert torch.allclose(1 + 4 * torch.sigmoid(lm(b)), m(b), atol=1e-5) and torch.equal(raw_score(m, b), lm(b))
    n = build_model("ncf", feats, 8)
    assert n(b).shape == (8,) and set(n.user_params) | set(n.item_params) <= set(dict(n.named_parameters()))
    with pytest.raises(ValueError, match="no raw score"):
        raw_score(build_model("hybrid", feats, 8), b)


def test_a_few_epochs_of_bpr_mf_beat_most_popular_and_random_on_ml100k(ml100k_implicit):
    data, feats = ml100k_implicit
    torch.set_num_threads(1)
    pop = evaluate_topn(popularity_scorer(data), data, "sampled")["hr@10"]
    torch.manual_seed(0)
    mf = IMPLICIT_MODELS["mf"](feats, 32)
    untrained = evaluate_topn(model_scorer(mf), data, "sampled")["hr@10"]
    hist = train_implicit(mf, data, "bpr", epochs=3, lr=5e-3, seed=0)
    hr = evaluate_topn(model_scorer(mf), data, "sampled")["hr@10"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert untrained < 0.2 and 0.25 < pop < 0.45 and hr > pop + 0.1, (untrained, pop, hr)


def test_implicit_loss_trains_neumf_one_step_down(ml100k_implicit):
    data, feats = ml100k_implicit
    torch.manual_seed(0)
    n = IMPLICIT_MODELS["ncf"](feats, 8)
    opt = torch.optim.Adam(n.parameters(), 1e-2)
    u, i = data.train_users[:512], data.train_items[:512]
    neg = sample_train_negatives(u, data.rated_keys, data.n_items, 4, torch.Generator().manual_seed(0))
    losses = []
    for _ in range(20):
        l = implicit_loss(n, u, i, neg, "bce"); opt.zero_grad(); l.backward(); opt.step(); losses.append(l.item())
    assert losses[-1] < losses[0] - 0.1, losses
