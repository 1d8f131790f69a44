"""fedrec_nb.metrics: edge cases of the ranking metrics and protocols, bad input, and a papermill run of
nbs/05_ranking_metrics.ipynb on the synthetic dataset."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedrec_nb.baselines import BiasModel, GlobalMean, Recommender
from fedrec_nb.experiment import ParameterError
from fedrec_nb.metrics import (evaluate_ranking, map_at_k, mrr_at_k, ndcg_at_k, precision_at_k, rated_ranking,
                               ranking_summary, recall_at_k, top_k)

NBS = Path(__file__).resolve().parents[1] / "nbs"


class Table(Recommender):
    "Scores from a dense (user, item) table; users and items are 0..n-1."
    def __init__(self, scores): self.scores = np.asarray(scores, float)
    def _fit(self, train, data): pass
    def _predict(self, u, i): return self.scores[u, i]


def frame(users, items, ratings):
    return pd.DataFrame({"user_id": users, "item_id": items, "rating": np.asarray(ratings, float)})


def fitted(model, train):
    model.fit(train); model.rating_scale = (-1e9, 1e9)
    return model


# --- users with no relevant items -------------------------------------------------------------------------------

def test_user_without_relevant_items_is_skipped_not_zero():
    hits = np.array([[True, False], [False, False]])
    for f in (recall_at_k, ndcg_at_k, map_at_k):
        v = f(hits, [1, 0])
        assert v[0] > 0 and np.isnan(v[1]), f.__name__
    s = ranking_summary(hits, [1, 0])
    assert s["recall@2"] == 1.0 and s["ndcg@2"] == 1.0 and s["n_users"] == 1 and s["n_users_without_relevant"] == 1


def test_rated_user_with_only_low_ratings():
    test = frame([1, 1, 2, 2], [10, 11, 10, 11], [5, 1, 2, 3])
    model = fitted(Table(np.zeros((3, 12))), test)
    r = evaluate_ranking(model, test, test, "rated", k=10)
    assert r["n_users"] == 1 and r["n_users_without_relevant"] == 1
    assert r["recall@10"] == 1.0
    assert r["ndcg_all_users@10"] == pytest.approx(r["ndcg@10"] / 2)   # the seed's second NDCG counts user 2 as 0


def test_no_relevant_item_at_all_gives_nan_not_an_error():
    test = frame([0, 1], [0, 1], [1, 2])
    model = fitted(Table(np.zeros((2, 2))), test)
    r = evaluate_ranking(model, test, test, "rated", k=5)
    assert np.isnan(r["recall@5"]) and r["n_users"] == 0


# --- k larger than the list --------------------------------------------------------------------------------------

def test_k_larger_than_the_candidate_list():
    users, hits, n_rel = rated_ranking([1, 1], [10, 11], [5, 5], [3.0, 4.0], k=10)
    assert hits.shape == (1, 10) and hits.sum() == 2
    assert recall_at_k(hits, n_rel)[0] == 1.0 and ndcg_at_k(hits, n_rel)[0] == pytest.approx(1.0)
    assert precision_at_k(hits, n_rel)[0] == pytest.approx(0.2)          # padded slots count as misses
    train = frame([0, 0], [0, 1], [4, 4]); test = frame([0], [2], [5])
    model = fitted(Table([[9.0, 8.0, 1.0, 0.5]]), train)
    r = evaluate_ranking(model, train, test, "full", k=10, items=np.arange(4))   # only items 2 and 3 are candidates
    assert r["recall@10"] == 1.0 and r["mrr@10"] == 1.0 and r["coverage@10"] == 0.5


def test_top_k_of_fewer_candidates_than_k():
    idx, ok = top_k(np.array([[1.0, -np.inf, 3.0]]), 5)
    assert idx.tolist() == [[2, 0, 1]] and ok.tolist() == [[True, True, False]]


# --- ties -------------------------------------------------------------------------------------------------------

def test_ties_broken_by_column_then_stable_sort():
    idx, _ = top_k(np.array([[2.0, 5.0, 5.0, 5.0, 1.0]]), 2)
    assert idx.tolist() == [[1, 2]]


def test_rated_tie_rules_match_the_seeds_functions():
    # equal predictions: the seed's first function puts the larger item id first, its second keeps row order
    u, i, r, p = [1, 1], [10, 20], [5, 1], [4.0, 4.0]
    assert rated_ranking(u, i, r, p, k=1, ties="item_id")[1].tolist() == [[False]]
    assert rated_ranking(u, i, r, p, k=1, ties="row")[1].tolist() == [[True]]


def test_full_ties_are_random_but_seeded():
    rng = np.random.default_rng(0)
    ratings = frame(rng.integers(0, 50, 3000), rng.integers(0, 200, 3000), rng.integers(1, 6, 3000)).drop_duplicates(
        ["user_id", "item_id"])
    train, test = ratings.iloc[:2000], ratings.iloc[2000:]
    model = GlobalMean().fit(train)                       # every item ties
    a = evaluate_ranking(model, train, test, "full", k=10, seed=1, items=np.arange(200))
    b = evaluate_ranking(model, train, test, "full", k=10, seed=1, items=np.arange(200))
    c = evaluate_ranking(model, train, test, "full", k=10, seed=2, items=np.arange(200))
    assert a["recall@10"] == b["recall@10"] and a["coverage@10"] == b["coverage@10"]
    assert a["recall@10"] != c["recall@10"]                        # another seed, another tie order
    assert 10 / 200 <= a["coverage@10"] < 0.2                      # one shared order, shifted only by masked items
    s = evaluate_ranking(model, train, test, "sampled", k=10, seed=3, items=np.arange(200))
    assert s["hit_rate@10"] == pytest.approx(10 / 100, abs=0.03)   # a tie-only model ranks the positive at random


def test_sampled_negatives_are_never_rated_and_seeded():
    rng = np.random.default_rng(1)
    ratings = frame(rng.integers(0, 40, 2000), rng.integers(0, 150, 2000), rng.integers(1, 6, 2000)).drop_duplicates(
        ["user_id", "item_id"])
    train, test = ratings.iloc[:1500], ratings.iloc[1500:]
    # a model that scores every item the user rated (train or test) above every unrated one: perfect HR
    rated = np.zeros((40, 150)); rated[ratings.user_id, ratings.item_id] = 1
    m = fitted(Table(rated), train)
    r = evaluate_ranking(m, train, test, "sampled", k=1, items=np.arange(150), seed=0)
    assert r["hit_rate@1"] == 1.0 and r["ndcg@1"] == 1.0
    # (had a negative been an item the user rated, it would tie with the positive and win half the time)
    bias, glob = BiasModel().fit(train), GlobalMean().fit(train)
    a = evaluate_ranking(bias, train, test, "sampled", k=10, items=np.arange(150), seed=0)
    evaluate_ranking(glob, train, test, "sampled", k=10, items=np.arange(150), seed=0)
    b = evaluate_ranking(bias, train, test, "sampled", k=10, items=np.arange(150), seed=0)
    assert a["ndcg@10"] == b["ndcg@10"] and a["n_cases"] == len(test)


# --- bad input --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, needle", [(dict(protocol="loo"), "parameter protocol='loo'"), (dict(k=0), "parameter k=0"),
                                        (dict(k=2.5), "parameter k=2.5"), (dict(n_negatives=0), "parameter n_negatives=0"),
                                        (dict(protocol="rated", threshold=float("nan")), "parameter threshold=nan")])
def test_bad_parameters_are_named(kw, needle):
    t = frame([0], [0], [5])
    with pytest.raises(ParameterError, match=needle.replace("(", r"\(")):
        evaluate_ranking(GlobalMean().fit(t), t, t, **kw)


def test_model_returning_nan_or_wrong_shape():
    t = frame([0, 1], [0, 1], [5, 4])
    class Broken(Table):
        def score_items(self, u, i): return np.full((len(u), len(i) + 1), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking(fitted(Table(np.full((2, 2), np.nan)), t), t, t, "full")
    with pytest.raises(ValueError, match="returned shape"):
        evaluate_ranking(fitted(Broken(np.zeros((2, 2))), t), t, t, "full")


# --- the notebook -----------------------------------------------------------------------------------------------

def run_notebook(out_dir, **parameters):
    papermill = pytest.importorskip("papermill")
    return papermill.execute_notebook(str(NBS / "05_ranking_metrics.ipynb"), str(out_dir / "executed_05.ipynb"),
                                      parameters=parameters, cwd=str(NBS), kernel_name="python3", language="python",
                                      progress_bar=False)


def test_notebook_on_synthetic_writes_results(tmp_path):
    out = tmp_path / "run"
    run_notebook(tmp_path, dataset="synthetic", output_dir=str(out), models=["global_mean", "bias", "svd"], k=5)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["dataset"] == "synthetic" and res["params"]["k"] == 5
    table = pd.DataFrame(res["table"])
    assert set(table.protocol) == {"rated", "full", "sampled"} and set(table.model) == {"global_mean", "bias", "svd"}
    assert table[["recall", "ndcg"]].apply(lambda c: c.between(0, 1)).all().all()
    full = table[table.protocol == "full"].set_index("model")
    assert full.recall["svd"] > full.recall["global_mean"] and full.recall["bias"] > full.recall["global_mean"]
    for row in res["seed_reproduction"]:
        assert row["seed Recall@5"] == pytest.approx(row["ours Recall@5"], abs=1e-12)
        assert row["seed NDCG@5"] == pytest.approx(row["ours NDCG@5"], abs=1e-12)
    assert [r["model"] for r in res["seed_reproduction"]] == ["svd", "svd"]
    assert res["knn_vs_svd"] is None  # `models` lists no knn_ model, so none is fitted (issue 20)
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 9
    assert (out / "ranking_bars.png").stat().st_size > 1000


def test_notebook_rejects_unknown_model(tmp_path):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "run"
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook(tmp_path, dataset="synthetic", output_dir=str(out), models=["svd", "nope"])
    assert "parameter models='nope'" in str(e.value) and "ParameterError" in str(e.value)
    assert not (out / "results.json").exists()


def test_case_study_notebook(tmp_path):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "case"
    papermill.execute_notebook(str(NBS / "07_case_study.ipynb"), str(tmp_path / "executed_07.ipynb"), cwd=str(NBS),
                               parameters=dict(dataset="synthetic", output_dir=str(out), n=7, model="bias", user_id=5),
                               kernel_name="python3", language="python", progress_bar=False)
    res = json.loads((out / "results.json").read_text())
    assert res["user_id"] == 5 and res["model"] == "bias" and len(res["recommendations"]) == 7
    assert [r["rank"] for r in res["recommendations"]] == list(range(1, 8))
    from fedrec_nb.splits import split_ratings
    from fedrec_nb.data import load_dataset
    train, test = split_ratings(load_dataset("synthetic", seed=42).ratings, "random", 0.2, 42)
    rec_ids = [r["item_id"] for r in res["recommendations"]]
    assert not set(rec_ids) & set(train.item_id[train.user_id == 5])            # never an item rated in training
    held = set(test.item_id[test.user_id == 5])
    assert [r["hit"] for r in res["recommendations"]] == [i in held for i in rec_ids]
    with pytest.raises(papermill.PapermillExecutionError, match="parameter user_id=999999"):
        papermill.execute_notebook(str(NBS / "07_case_study.ipynb"), str(tmp_path / "bad.ipynb"), cwd=str(NBS),
                                   parameters=dict(dataset="synthetic", output_dir=str(tmp_path / "bad"), user_id=999999),
                                   kernel_name="python3", language="python", progress_bar=False)
