"""One definition of the experiment's parameters (`fedrec_nb.parameters.PARAMETERS`): notebook 06's parameters cell,
`run_federated`'s keywords, both Flower run configs and `results.json` all equal it, by value."""
import inspect, json, tomllib
from pathlib import Path

import pytest

from fedrec_nb.experiment import ParameterError
from fedrec_nb.parameters import DATA_KEYS, DEFAULTS, PARAMETERS, PARAMS, RESUMABLE, parameters_cell, parse_params, resolve_params

ROOT = Path(__file__).resolve().parents[1]
# what both Flower run configs set for a deployment: a folder of their own, two nodes on CPUs
DEPLOYMENT = dict(num_clients=2, device="cpu")


def test_notebook_parameters_cell_is_written_from_the_table():
    nb = json.loads((ROOT / "nbs" / "06_federated.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    assert "".join(cells[0]["source"]) == parameters_cell()
    ns = {}; exec(parameters_cell(), ns)   # and its values are the defaults
    assert {k: ns[k] for k in PARAMS} == DEFAULTS


def test_run_federated_keywords_are_the_table():
    from fedrec_nb.federated import run_federated
    sig = inspect.signature(run_federated).parameters
    assert {k: sig[k].default for k in PARAMS} == DEFAULTS
    assert set(sig) - set(PARAMS) == {"progress", "plots", "ranking", "experiment"}


@pytest.mark.parametrize("app, secure, out", [("flower_app", False, "runs/flower"), ("flower_app/secagg", True, "runs/flower_secagg")])
def test_flower_run_configs_are_the_defaults(app, secure, out):
    flower = pytest.importorskip("fedrec_nb.flower")
    cfg = tomllib.loads((ROOT / app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert set(cfg) == set(PARAMS) - {"engine"}   # flwr refuses a --run-config key the file does not name
    want = parse_params({**DEFAULTS, **DEPLOYMENT, "output_dir": out, "secure_aggregation": secure, "engine": "flower"})
    assert flower.params_from_run_config(cfg) == want


def test_every_row_is_checked_and_documented():
    for p in PARAMETERS:
        assert p.doc and p.group
        if p.check is not None: p.check(p.name, p.default)   # every default passes its own check
    assert set(DATA_KEYS) <= set(PARAMS) and set(RESUMABLE) <= set(PARAMS)
    with pytest.raises(ParameterError, match="unknown parameter num_client"): resolve_params(num_client=3)


def test_results_params_are_the_resolved_parameters(tmp_path):
    from fedrec_nb.federated import run_federated
    given = dict(dataset="synthetic", rounds=1, local_epochs=1, embedding_dim=4, engine="sequential", drop_inputs="",
                 output_dir=str(tmp_path))
    res = run_federated(**given, progress=False, plots=False, ranking=False)
    saved = json.loads((tmp_path / "results.json").read_text())["params"]
    assert saved == json.loads(json.dumps(resolve_params(given)))
