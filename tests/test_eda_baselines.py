"""Papermill runs of nbs/02_eda.ipynb and nbs/03_baselines.ipynb: results files, and bad parameters stopping the run."""
import json
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")

NBS = Path(__file__).resolve().parents[1] / "nbs"


def run_notebook(name, out_dir, **parameters):
    "Execute `nbs/name` with papermill from inside `nbs/`, the executed copy going to `out_dir`."
    return papermill.execute_notebook(str(NBS / name), str(out_dir / f"executed_{name}"), parameters=parameters,
                                      cwd=str(NBS), kernel_name="python3", language="python",
                                      progress_bar=False)


def test_baselines_results_json(tmp_path):
    out = tmp_path / "run"
    run_notebook("03_baselines.ipynb", tmp_path, dataset="synthetic", output_dir=str(out), cold_threshold=25)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["dataset"] == "synthetic" and res["params"]["cold_threshold"] == 25
    assert set(res["models"]) == {"global_mean", "item_mean", "user_mean", "bias"}
    assert res["n_train"] + res["n_test"] == 100_000 and res["n_test"] == 20_000
    for key, m in res["models"].items():
        for protocol in ("held_out", "in_sample"):
            assert set(m[protocol]) >= {"mae", "rmse", "r2"}, (key, protocol)
            assert 0 < m[protocol]["mae"] <= m[protocol]["rmse"] < 4, (key, protocol, m[protocol])
    held = {k: m["held_out"]["rmse"] for k, m in res["models"].items()}
    # the synthetic data has user and item biases, so the bias model must beat every other baseline held-out
    assert held["bias"] < min(held["item_mean"], held["user_mean"], held["global_mean"]), held
    cold = [r for r in res["cold_start"] if r["users"].startswith("cold")]
    assert len(cold) == 4 and all(r["n_ratings"] > 0 for r in cold)
    assert res["ablation"][-1]["variant"].startswith("no features") and res["ablation"][-1]["mae"] < 2
    csv = (out / "results.csv").read_text().splitlines()
    assert csv[0].startswith("key,model,protocol") and len(csv) == 1 + 8
    assert (out / "cold_start.png").stat().st_size > 1000


@pytest.mark.parametrize("params, needle", [(dict(cold_threshold=-1), "cold_threshold=-1"),
                                            (dict(dataset="nope"), "dataset='nope'"),
                                            (dict(test_size=1.5), "test_size=1.5")])
def test_baselines_bad_parameter(tmp_path, params, needle):
    out = tmp_path / "run"
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("03_baselines.ipynb", tmp_path, output_dir=str(out), **{"dataset": "synthetic", **params})
    assert needle in str(e.value) and "ParameterError" in str(e.value)
    assert not (out / "results.json").exists()


def test_eda_figures(tmp_path):
    out = tmp_path / "eda"
    run_notebook("02_eda.ipynb", tmp_path, dataset="synthetic", output_dir=str(out), min_ratings=50)
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["min_ratings"] == 50
    assert res["summary"]["n_ratings"] == 100_000
    pngs = {p.name for p in out.glob("*.png")}
    assert {"rating_distribution.png", "gender.png", "occupation.png", "item_popularity.png"} <= pngs, pngs
    for f in res["figures"]: assert (out / f).stat().st_size > 1000, f
    assert all(r["n_ratings"] >= 50 for r in res["top_rated"])


def test_eda_bad_parameter(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("02_eda.ipynb", tmp_path, dataset="synthetic", output_dir=str(tmp_path / "eda"), min_ratings=0)
    assert "min_ratings=0" in str(e.value)
