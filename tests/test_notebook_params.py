"""Issue 20: every experiment notebook honours every parameter it lists. Each notebook with a `parameters` cell (02, 03,
05, 07, 07a; 04 and 06 have their own tests) runs under papermill on the synthetic data with small non-default values,
and its results file and outputs must reflect each of them: the dataset named, the output_dir used, the seed, the sizes,
and only the models listed."""
import json
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")

NBS = Path(__file__).resolve().parents[1] / "nbs"


def run(tmp_path, name, **params):
    "Execute `nbs/name` from inside `nbs/` with `params` (output_dir in tmp_path); the results and the executed cells' outputs."
    out = tmp_path / "run"
    executed = tmp_path / f"executed_{name}"
    papermill.execute_notebook(str(NBS / name), str(executed), parameters=dict(dataset="synthetic", output_dir=str(out), **params),
                               cwd=str(NBS), kernel_name="python3", language="python", progress_bar=False)
    cells = json.loads(executed.read_text())["cells"]
    return out, json.loads((out / "results.json").read_text()), json.dumps([c.get("outputs", []) for c in cells])


def test_02_eda(tmp_path):
    out, res, shown = run(tmp_path, "02_eda.ipynb", min_ratings=7)
    assert res["params"] == dict(dataset="synthetic", data_dir=None, output_dir=str(out), min_ratings=7)
    assert res["summary"]["name"] == "synthetic" and all(r["n_ratings"] >= 7 for r in res["top_rated"])
    assert all((out / f).is_file() for f in res["figures"])
    # the ML-1M-shaped example reads the real ML-1M users and movies: not on a synthetic run, and it says so
    assert "ML-1M-shaped example: it reads the real ML-1M users and movies; dataset='synthetic', not run" in shown


def test_03_baselines(tmp_path):
    out, res, shown = run(tmp_path, "03_baselines.ipynb", seed=3, test_size=0.1, split="user", cold_threshold=7)
    p = res["params"]
    assert (p["dataset"], p["seed"], p["test_size"], p["split"], p["cold_threshold"], p["output_dir"]) == \
        ("synthetic", 3, 0.1, "user", 7, str(out))
    assert res["protocol"] == "synthetic, held-out (user split, test_size=0.1, seed=3)"
    assert abs(res["n_test"] - 10_000) < 500 and res["n_train"] + res["n_test"] == 100_000
    assert {r["users"] for r in res["cold_start"]} == {"cold (<= 7 training ratings)", "warm (> 7)", "all"}
    assert (out / "cold_start.png").is_file() and (out / "results.csv").is_file()


def test_05_ranking_metrics_fits_only_the_listed_models(tmp_path):
    out, res, shown = run(tmp_path, "05_ranking_metrics.ipynb", seed=5, test_size=0.1, k=3, threshold=5.0,
                          models="global_mean,bias")
    p = res["params"]
    assert (p["dataset"], p["seed"], p["test_size"], p["k"], p["threshold"], p["models"], p["output_dir"]) == \
        ("synthetic", 5, 0.1, 3, 5.0, ["global_mean", "bias"], str(out))
    assert res["dataset"] == "synthetic" and sorted({r["model"] for r in res["table"]}) == ["bias", "global_mean"]
    assert res["protocols"]["rated"]["relevant"] == "held-out rating >= 5"
    assert all("recall" in r for r in res["table"]) and "Recall@3" in json.dumps(res["seed_reproduction"])
    # neither SVD nor a KNN model is fitted when `models` lists none: the seed's functions run on the first model listed
    assert [r["model"] for r in res["seed_reproduction"]] == ["global_mean", "global_mean"]
    for row in res["seed_reproduction"]:
        assert row["seed Recall@3"] == pytest.approx(row["ours Recall@3"], abs=1e-12)
    assert res["knn_vs_svd"] is None
    assert "KNN against SVD: models=['global_mean', 'bias'] does not list both svd and a knn_ model; not run" in shown
    assert "'svd'" not in shown and "knn_basic" not in shown and "KNNBasic" not in shown   # no fitting time, no table row


def test_07_case_study(tmp_path):
    out, res, shown = run(tmp_path, "07_case_study.ipynb", seed=7, test_size=0.1, n=4, model="bias", models="bias",
                          ranking_models="bias,most_popular", fed_rounds=1, personal_rounds=1, cold_max=3, explain_k=2,
                          newcomer_ratings=2)
    p = res["params"]
    assert (p["dataset"], p["seed"], p["test_size"], p["n"], p["model"], p["models"], p["ranking_models"], p["cold_max"],
            p["explain_k"], p["newcomer_ratings"], p["device"], p["output_dir"]) == \
        ("synthetic", 7, 0.1, 4, "bias", ["bias"], ["bias", "most_popular"], 3, 2, 2, "cpu", str(out))
    assert res["dataset"] == "synthetic" and res["model"] == "bias" and len(res["recommendations"]) == 4
    assert list(res["side_by_side"]) == ["bias"] and list(res["fit_seconds"]) == ["bias", "most popular"]
    assert [b["model"] for b in res["beyond_accuracy"]] == ["bias", "most popular"]
    assert res["cold_user"]["n_train"] == 2 and res["cold_user"]["status"] == "cold"   # newcomer_ratings=2 <= cold_max=3
    assert (out / "beyond_accuracy.png").is_file()
    # the all-users lists are top-n (n=4), not top-10: the most-popular coverage is that of 4-film lists
    from fedrec_nb.case_study import MostPopular, top_n_positions
    from fedrec_nb.experiment import prepare_experiment
    from fedrec_nb.metrics import catalogue_coverage
    exp = prepare_experiment("synthetic", None, 7, 0.1, "random", str(tmp_path / "check"))
    users = sorted(exp.train.user_id.unique())
    ids = exp.data.items.item_id
    mp = MostPopular().fit(exp.train, exp.data)
    cov = {n: catalogue_coverage(top_n_positions(mp, exp.train, ids, users, n), len(ids)) for n in (4, 10)}
    assert cov[4] < cov[10]
    assert res["beyond_accuracy"][1]["coverage"] == pytest.approx(cov[4], abs=1e-12)


def test_07a_cold_start(tmp_path):
    out, res, shown = run(tmp_path, "07a_cold_start.ipynb", seed=1, test_size=0.1, split="random", compare_split="user",
                          models="global_mean,bias", fed_rounds=1, personal_rounds=1, central_epochs=1)
    p = res["params"]
    assert (p["dataset"], p["seed"], p["test_size"], p["split"], p["compare_split"], p["models"], p["central_epochs"]) == \
        ("synthetic", 1, 0.1, "random", "user", ["global_mean", "bias"], 1)
    assert set(res["fit_seconds"]) == {"random", "user"} and all(set(s) == {"global_mean", "bias"} for s in res["fit_seconds"].values())
    assert {r["split"] for r in res["table"]} == {"random", "user"} and {r["key"] for r in res["table"]} == {"global_mean", "bias"}
    assert all(abs(r["n_ratings"] - 10_000) < 500 for r in res["table"] if r["bucket"] == "all")
    assert (out / "cold_start.png").is_file() and (out / "random").is_dir() and (out / "user").is_dir()
