"""Runs are easy to find and compare (issue 20): the output folder is named after what ran, a run into another
experiment's folder is refused naming `overwrite`, `python -m fedrec_nb.records compare` tabulates finished runs, and the
implicit objective's evaluation negatives are a parameter (`eval_negatives`) that a small catalogue must fit."""
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedrec_nb.experiment import ParameterError
from fedrec_nb.federated import run_federated
from fedrec_nb.parameters import resolve_params, run_label

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(dataset="synthetic", rounds=2, local_epochs=1, embedding_dim=4, engine="sequential", seed=0, progress=False,
             plots=False, ranking=False)


def test_the_default_folder_is_named_after_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run_federated(**SMALL, attack="sign_flip", attack_fraction=0.2, aggregator="median")
    want = Path("runs/synthetic-mf-iid-fedavg-median-sign_flip-20")
    assert res["params"]["output_dir"] == str(want) and (tmp_path / want / "results.json").is_file()
    assert run_label(res["params"]) == "synthetic · mf · iid · fedavg · median · sign_flip 20%"
    clean = resolve_params(dataset="synthetic")
    assert clean["output_dir"] == "runs/synthetic-mf-iid-fedavg" != res["params"]["output_dir"]   # another run, another folder


def test_another_experiments_folder_is_refused_unless_overwrite(tmp_path):
    out = str(tmp_path / "run")
    first = run_federated(**SMALL, output_dir=out)
    again = run_federated(**SMALL, output_dir=out)   # the same experiment again: fine, and the same figures (seeded)
    assert again["final"]["test_rmse"] == pytest.approx(first["final"]["test_rmse"], abs=1e-6)
    with pytest.raises(ParameterError, match=r"output_dir=.*run.*another experiment.*lr=0\.003 there, 0\.01 here.*overwrite=True"):
        run_federated(**{**SMALL, "lr": 0.01}, output_dir=out)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["params"]["lr"] == 0.003   # left as it was
    run_federated(**{**SMALL, "lr": 0.01, "overwrite": True}, output_dir=out)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["params"]["lr"] == 0.01
    (tmp_path / "bad").mkdir(); (tmp_path / "bad" / "results.json").write_text("not json")
    with pytest.raises(ParameterError, match="not a readable fedrec_nb results file.*overwrite=True"):
        run_federated(**SMALL, output_dir=str(tmp_path / "bad"))


def _compare(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fedrec_nb.records", "compare", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})


def test_compare_tabulates_two_runs_and_plots_their_curves(tmp_path):
    a = run_federated(**SMALL, output_dir=str(tmp_path / "a"))
    b = run_federated(**SMALL, dp_noise_multiplier=1.0, dp_clip=0.5, output_dir=str(tmp_path / "b"))
    r = _compare(tmp_path / "a", tmp_path / "b", "--plot", tmp_path / "cmp.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["label", "rounds", "test_mae", "test_rmse"] and "epsilon" in lines[0]
    assert "synthetic · mf · iid · fedavg " in lines[1] and "DP z=1.0" in lines[2]
    assert f"{a['final']['test_rmse']:.4f}" in lines[1] and f"{b['final']['epsilon']:.4f}" in lines[2]
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    r = _compare(tmp_path / "a", tmp_path / "nothing", cwd=tmp_path)   # a folder without results.json: named, exit 2
    assert r.returncode == 2 and "nothing: no results.json" in r.stderr
    r = _compare(tmp_path / "a", cwd=tmp_path)   # the plot's default place: compare.png in the current folder
    assert r.returncode == 0 and (tmp_path / "compare.png").is_file() and "compare.png" in r.stdout


@pytest.fixture(scope="module")
def catalogue_45(tmp_path_factory):
    "30 users, each rating 10 of 45 films (1..5 stars): a catalogue too small for 99 evaluation negatives."
    rng = np.random.default_rng(0)
    rows = [(u, int(i), int(rng.integers(1, 6)), 1_000 * u + k) for u in range(30) for k, i in enumerate(rng.choice(45, 10, replace=False))]
    path = tmp_path_factory.mktemp("data") / "films45.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).to_csv(path, index=False)
    return path


def test_eval_negatives_fit_a_small_catalogue(tmp_path, catalogue_45):
    kw = dict(SMALL, dataset=str(catalogue_45), objective="implicit", split="leave_one_out", num_clients=3, num_negatives=2)
    with pytest.raises(ParameterError, match=r"parameter eval_negatives=99: .* of the 45 items.*lower eval_negatives"):
        run_federated(**kw, output_dir=str(tmp_path / "99"))
    res = run_federated(**kw, eval_negatives=20, output_dir=str(tmp_path / "20"))
    assert res["params"]["eval_negatives"] == 20 and 0 <= res["final"]["test_hr@10"] <= 1
    assert json.loads((tmp_path / "20" / "results.json").read_text())["params"]["eval_negatives"] == 20
    nine = run_federated(**kw, eval_negatives=9, output_dir=str(tmp_path / "9"))   # 10 candidates: every held-out item is in the top 10
    assert nine["final"]["test_hr@10"] == pytest.approx(1.0)


def test_eval_negatives_are_part_of_the_data_key():
    from fedrec_nb.federation import federation_key
    from fedrec_nb.parameters import DATA_KEYS, PARAMS
    assert "eval_negatives" in DATA_KEYS and PARAMS["central_epochs"].resumable and PARAMS["overwrite"].resumable
    p = resolve_params(dataset="synthetic", objective="implicit", split="leave_one_out")
    assert federation_key(p) != federation_key(dict(p, eval_negatives=20))   # a Flower node's cached negatives are not reused
    assert federation_key(p) == federation_key(dict(p, central_epochs=0, overwrite=True))


def test_folder_command_names_the_folder_of_papermill_parameters(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "fedrec_nb.records", "folder", *a], capture_output=True, text=True,
                                    timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    r = run("-p", "attack", "sign_flip", "-p", "attack_fraction", "0.2", "-p", "aggregator", "median", "-k", "python3")
    assert r.returncode == 0 and r.stdout.strip() == "runs/ml-100k-mf-iid-fedavg-median-sign_flip-20"   # -k: papermill's, ignored
    assert run("-p", "output_dir", str(tmp_path / "mine")).stdout.strip() == str(tmp_path / "mine")
    r = run("-p", "num_client", "3")
    assert r.returncode == 2 and "unknown parameter num_client" in r.stderr
