"""What users of the case study (07) and the cold-start study (07a) rely on: the beyond-accuracy metrics on lists whose
values are known by hand, the activity buckets, cold and unknown users, and the explanations of recommendations."""
import numpy as np
import pandas as pd
import pytest

from fedrec_nb.baselines import BiasModel, GlobalMean, ItemMean
from fedrec_nb.case_study import (MostPopular, beyond_accuracy, check_user, genre_matrix, intra_list_diversity,
                                  nearest_rated, novelty, popularity_rank, recommend, top_n_positions)
from fedrec_nb.cold_start import activity_bucket, bucket_labels, check_model_keys, error_by_bucket
from fedrec_nb.experiment import ParameterError
from fedrec_nb.metrics import catalogue_coverage

# four films, three users: film 1 rated by all, film 2 by two, film 3 by one, film 4 by nobody
RATINGS = pd.DataFrame({"user_id": [1, 2, 3, 1, 2, 3], "item_id": [1, 1, 1, 2, 2, 3], "rating": [5.0, 4, 3, 4, 2, 5]})
ITEMS = pd.DataFrame({"item_id": [1, 2, 3, 4], "title": ["A", "B", "C", "D"],
                      "genres": [["Drama"], ["Drama", "Comedy"], ["Horror"], ["Western"]]})


def test_coverage_counts_distinct_films_over_the_catalogue():
    assert catalogue_coverage(np.array([[0, 1], [1, -1]]), 4) == 0.5
    assert catalogue_coverage(np.array([[0, 1], [2, 3]]), 4) == 1.0


def test_novelty_of_known_lists():
    np.testing.assert_array_equal(popularity_rank(RATINGS, ITEMS.item_id), [1, 2, 3, 4])
    only_blockbuster = novelty(np.array([[0], [0]]), RATINGS, ITEMS.item_id)
    assert only_blockbuster["mean_popularity_rank"] == 1.0
    assert only_blockbuster["self_information"] == 0.0          # rated by every user: (3 + 1) / (3 + 1)
    tail = novelty(np.array([[3]]), RATINGS, ITEMS.item_id)
    assert tail["mean_popularity_rank"] == 4.0 and tail["self_information"] == pytest.approx(2.0)  # -log2(1/4)
    assert np.isnan(novelty(np.array([[-1]]), RATINGS, ITEMS.item_id)["mean_popularity_rank"])


def test_popularity_ties_share_their_mean_rank():
    r = pd.DataFrame({"user_id": [1, 2, 1], "item_id": [1, 2, 3], "rating": [4.0, 4, 4]})
    np.testing.assert_array_equal(popularity_rank(r, [1, 2, 3]), [2.0, 2.0, 2.0])


def test_intra_list_diversity_of_known_lists():
    G = genre_matrix(ITEMS)
    assert G.shape == (4, 4) and G.sum() == 5
    assert intra_list_diversity(np.array([[0, 1]]), G) == pytest.approx(0.5)     # {Drama} vs {Drama, Comedy}
    assert intra_list_diversity(np.array([[2, 3]]), G) == 1.0                    # nothing shared
    assert intra_list_diversity(np.array([[0, 0]]), G) == 0.0                    # the same genres
    assert intra_list_diversity(np.array([[0, 1, 2]]), G) == pytest.approx(1 - (0.5 + 0 + 0) / 3)
    assert intra_list_diversity(np.array([[0, 1], [2, 3]]), G) == pytest.approx(0.75)   # mean over lists
    assert np.isnan(intra_list_diversity(np.array([[0, -1]]), G))               # one film: no pair


def test_most_popular_lists_and_the_table():
    mp = MostPopular().fit(RATINGS)
    top = top_n_positions(mp, RATINGS, ITEMS.item_id, [1, 3, 9], n=3)
    np.testing.assert_array_equal(top, [[2, 3, -1], [1, 3, -1], [0, 1, 2]])  # rated films excluded; user 9 rated none
    t = beyond_accuracy({"most popular": top}, RATINGS, ITEMS, blockbusters=1).set_index("model")
    assert t.loc["most popular", "coverage"] == 1.0
    assert t.loc["most popular", "blockbuster_share"] == pytest.approx(1 / 7)
    assert t.loc["most popular", "n_lists"] == 3
    with pytest.raises(NotImplementedError, match="score_items"): mp.predict([1], [1])


def test_activity_buckets():
    assert bucket_labels() == ["unseen", "1-5", "6-10", "11-20", "21-50", "51-100", ">100"]
    got = list(activity_bucket([0, 1, 5, 6, 20, 21, 100, 101]))
    assert got == ["unseen", "1-5", "1-5", "6-10", "11-20", "21-50", "51-100", ">100"]
    with pytest.raises(ParameterError, match="edges"): bucket_labels((5, 5))
    with pytest.raises(ValueError): activity_bucket([-1])


def test_error_by_bucket_scores_the_fallback_of_unseen_users():
    train = pd.DataFrame({"user_id": [1] * 6 + [2], "item_id": [1, 2, 3, 4, 5, 6, 1], "rating": [2.0] * 6 + [5.0]})
    test = pd.DataFrame({"user_id": [1, 2, 7], "item_id": [1, 2, 1], "rating": [2.0, 4.0, 5.0]})
    t = error_by_bucket({"item": ItemMean().fit(train), "global": GlobalMean().fit(train)}, train, test)
    got = t.set_index(["key", "bucket"])
    assert got.loc[("item", "unseen"), "mae"] == pytest.approx(1.5)  # item 1 mean 3.5, held out 5
    assert got.loc[("global", "unseen"), "n_users"] == 1 and got.loc[("global", "all"), "n_ratings"] == 3
    assert set(t.bucket) == {"unseen", "1-5", "6-10", "all"}


def test_cold_user_works_and_says_so():
    train = pd.concat([RATINGS, pd.DataFrame({"user_id": [5], "item_id": [4], "rating": [5.0]})], ignore_index=True)
    s = check_user(5, [1, 2, 3, 5, 6], train, cold_max=5)
    assert s["status"] == "cold" and s["n_train"] == 1 and "cold" in s["message"]
    recs = recommend(BiasModel().fit(train), 5, train, ITEMS, n=10)
    assert recs.item_id.tolist() and 4 not in recs.item_id.tolist()
    unseen = check_user(6, [1, 2, 3, 5, 6], train)
    assert unseen["status"] == "unseen" and "fallback" in unseen["message"]
    assert len(recommend(BiasModel().fit(train), 6, train, ITEMS, n=2)) == 2


def test_unknown_user_is_refused_with_the_parameter_named():
    with pytest.raises(ParameterError, match=r"user_id=99.*no such user"):
        check_user(99, pd.DataFrame({"user_id": [1, 2, 3]}), RATINGS)


def test_nearest_rated_films_explain_an_embedding_model():
    class Toy(BiasModel):  # SVD's attributes: item ids and item factors
        def _fit(self, train, data):
            super()._fit(train, data)
            self.items, self.qi = pd.Index([1, 2, 3, 4]), np.array([[1.0, 0], [0, 1.0], [-1.0, 0], [2.0, 0.1]])
    m = Toy().fit(RATINGS)
    why = nearest_rated(m, 1, [4], RATINGS, ITEMS, k=1)     # user 1 rated films 1 and 2; 4 points like 1
    assert why.loc[4].startswith("A (5, 1.00)")
    assert nearest_rated(BiasModel().fit(RATINGS), 1, [4], RATINGS, ITEMS) is None


def test_model_keys_are_checked():
    assert check_model_keys("models", "svd, fed_global") == ["svd", "fed_global"]
    with pytest.raises(ParameterError, match="models"): check_model_keys("models", "svd,bogus")


def test_cold_start_notebook_takes_the_shared_parameters():
    "07a is an experiment notebook like the others (tests/test_notebooks.py matches only 'NN_' names)."
    import nbformat
    from pathlib import Path
    from papermill.translators import PythonTranslator
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "nbs" / "07a_cold_start.ipynb", as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    names = {p.name for p in PythonTranslator.inspect(cells[0])}
    assert {"dataset", "data_dir", "seed", "test_size", "split", "output_dir", "compare_split", "models", "fed_rounds",
            "personal_rounds"} <= names
