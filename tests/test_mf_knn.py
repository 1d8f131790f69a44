"""fedrec_nb.mf_knn: fallbacks for unknown ids, vectorized predictions against Surprise's own, papermill runs of 04,
and the published-benchmark script. No network: ML-100K tests are skipped when the zip is not already on disk."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from fedrec_nb.downloads import find_movielens
from fedrec_nb.synthetic import synthetic_movielens
from fedrec_nb.splits import split_ratings
from fedrec_nb.experiment import ParameterError
from fedrec_nb.mf_knn import (SURPRISE_MODELS, KNNModel, build_trainset, compare_with_surprise, make_model,
                              parse_model_keys, sample_pairs)

ROOT = Path(__file__).resolve().parents[1]
FAST_KEYS = ["svd", "nmf", "slope_one", "co_clustering", "baseline_only", "knn_basic_item_cosine",
             "knn_basic_user_msd", "knn_means_user_pearson", "knn_baseline_item_pearson_baseline"]


@pytest.fixture(scope="module")
def small():
    data = synthetic_movielens(n_users=100, n_items=150, n_ratings=3000, seed=3)
    train, test = split_ratings(data.ratings, "random", 0.2, seed=3)
    return data, train, test


@pytest.mark.parametrize("key", FAST_KEYS)
def test_unknown_ids_fall_back(small, key):
    data, train, test = small
    m = make_model(key, seed=0).fit(train, data)
    u_known, i_known = train.user_id.iloc[0], train.item_id.iloc[0]
    users = np.array([-1, u_known, -1, 10**9])
    items = np.array([i_known, -2, -2, 10**9])
    pred = m.predict(users, items)
    assert pred.shape == (4,) and np.isfinite(pred).all()
    lo, hi = data.rating_scale
    assert ((pred >= lo) & (pred <= hi)).all()
    if m.fallback == "global mean":
        np.testing.assert_allclose(pred, np.clip(m.mu, lo, hi))
    # both unknown: the global mean under every documented fallback
    np.testing.assert_allclose(pred[2:], np.clip(m.mu, lo, hi))
    block = m.score_items(np.array([u_known, -1]), np.array([i_known, -2]))
    assert block.shape == (2, 2) and np.isfinite(block).all()
    # and the fallback is Surprise's own
    assert compare_with_surprise(m, users, items) < 1e-9


@pytest.mark.parametrize("key", FAST_KEYS + ["svdpp", "knn_basic_user_cosine", "knn_means_item_msd",
                                             "knn_baseline_user_pearson"])
def test_vectorized_predict_equals_surprise(small, key):
    data, train, test = small
    m = make_model(key, seed=1)
    if key == "svdpp": m.params["n_epochs"] = 3
    if isinstance(m, KNNModel): m.params.update(k=7, min_k=2)  # ties and the not-enough-neighbours branch matter
    m.fit(train, data)
    u, i = sample_pairs(m, test, n=400, seed=2)
    assert compare_with_surprise(m, u, i) < 1e-9
    # score_items is the same computation as predict, as a block
    block = m.score_items(u[:9], i[:6])
    np.testing.assert_allclose(block, m.predict(np.repeat(u[:9], 6), np.tile(i[:6], 9)).reshape(9, 6), atol=1e-12)


def test_build_trainset_equals_surprise(small):
    from surprise import Dataset, Reader
    data, train, _ = small
    ours = build_trainset(train, data.rating_scale)
    ref = Dataset.load_from_df(train[["user_id", "item_id", "rating"]], Reader(rating_scale=data.rating_scale)).build_full_trainset()
    assert dict(ours.ur) == dict(ref.ur) and dict(ours.ir) == dict(ref.ir)
    assert ours._raw2inner_id_items == ref._raw2inner_id_items and ours.rating_scale == ref.rating_scale


def test_registry_and_bad_keys():
    for key in ["svd", "svdpp", "nmf", "slope_one", "co_clustering", "baseline_only", "knn_basic_item_cosine",
                "knn_basic_user_cosine", "knn_basic_user_msd", "knn_means_user_pearson",
                "knn_baseline_item_pearson_baseline"]:
        m = SURPRISE_MODELS[key]()
        assert isinstance(m.name, str) and m.name and not hasattr(m, "algo")
    with pytest.raises(ParameterError, match=r"unknown model key\(s\) \['svdd'\]"):
        parse_model_keys("models", "svd,svdd")
    with pytest.raises(TypeError, match="random_state"):
        SURPRISE_MODELS["slope_one"](random_state=0)


def _papermill(tmp_path, **params):
    pm = pytest.importorskip("papermill")
    out = tmp_path / "out.ipynb"
    env_params = dict(dataset="synthetic", output_dir=str(tmp_path / "run"), slow_models="", seed_reproduction=False,
                      published_cv=False, **params)
    pm.execute_notebook(str(ROOT / "nbs" / "04_mf_knn.ipynb"), str(out), parameters=env_params,
                        cwd=str(ROOT / "nbs"), progress_bar=False, kernel_name="python3", language="python")
    return tmp_path / "run"


def test_papermill_synthetic_writes_results(tmp_path):
    run = _papermill(tmp_path, models="svd,baseline_only,knn_basic_user_msd")
    res = json.loads((run / "results.json").read_text())
    assert [r["key"] for r in res["models"]] == ["svd", "baseline_only", "knn_basic_user_msd"]
    assert res["params"]["dataset"] == "synthetic" and res["params"]["models"] == ["svd", "baseline_only", "knn_basic_user_msd"]
    for r in res["models"]:
        assert 0.3 < r["mae"] < 1.5 and r["rmse"] >= r["mae"] and r["max_gap_vs_surprise"] < 1e-9
    assert (run / "results.csv").read_text().splitlines()[0].startswith("key,model,mae,rmse")


def test_papermill_bad_model_key_fails_before_work(tmp_path):
    pm = pytest.importorskip("papermill")
    with pytest.raises(pm.PapermillExecutionError, match="models.*unknown model key"):
        _papermill(tmp_path, models="svd,no_such_model")
    assert not (tmp_path / "run").exists()


needs_ml100k = pytest.mark.skipif(find_movielens("ml-100k") is None, reason="ml-100k not on disk (tests never download)")


@needs_ml100k
def test_bench_surprise_cv_prints_both_sides_and_fails_outside_tolerance():
    # --tol 0 must fail (no measured figure equals the published one to 4 digits); the printed figures must still
    # be within 0.006 of the published ones
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_surprise_cv.py"), "--models", "BaselineOnly",
                        "--tol", "0"], capture_output=True, text=True, timeout=300, env={**os.environ})
    assert p.returncode == 1 and "FAIL" in p.stdout, p.stdout + p.stderr
    row = next(line.split() for line in p.stdout.splitlines() if line.startswith("BaselineOnly"))
    rmse, pub_rmse, mae, pub_mae = float(row[1]), float(row[2]), float(row[4]), float(row[5])
    assert (pub_rmse, pub_mae) == (0.944, 0.748)
    assert abs(rmse - pub_rmse) <= 0.006 and abs(mae - pub_mae) <= 0.006


def test_papermill_fits_only_the_listed_models_on_the_given_dataset(tmp_path):
    "README's `-p dataset synthetic -p models svd,baseline_only`, every other parameter at its default: those two models, on"
    "synthetic data, and nothing else (no slow model, no seed-split KNN, no cross-validation on the real ML-100K)."
    pm = pytest.importorskip("papermill")
    out, run = tmp_path / "out.ipynb", tmp_path / "run"
    pm.execute_notebook(str(ROOT / "nbs" / "04_mf_knn.ipynb"), str(out), parameters=dict(dataset="synthetic", models="svd,baseline_only",
                        output_dir=str(run)), cwd=str(ROOT / "nbs"), progress_bar=False, kernel_name="python3", language="python")
    res = json.loads((run / "results.json").read_text())
    assert res["params"]["dataset"] == "synthetic" and [r["key"] for r in res["models"]] == ["svd", "baseline_only"]
    assert [r["key"] for r in res["seed_split"]] == ["svd"] and "published_cv" not in res
    cells = json.loads(out.read_text())["cells"]
    first = next(k for k, c in enumerate(cells) if "rows = [run_model" in "".join(c["source"]))
    shown = json.dumps([c.get("outputs", []) for c in cells[first:]])
    for other in ("SVD++", "NMF", "SlopeOne", "CoClustering", "KNNBasic", "KNNWithMeans", "KNNBaseline"):
        assert other not in shown, f"{other} appears in the outputs of the model cells"
    assert "published_cv: Surprise's published figures are ML-100K's; dataset='synthetic', not run" in shown
