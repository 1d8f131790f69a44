"""Every notebook is runnable by papermill as the README says: a python3 kernelspec, and a parameters cell whose
every assignment papermill can read (a comment holding '=' silently hides the parameter from it)."""
import re
from pathlib import Path

import nbformat
import pytest
from papermill.translators import PythonTranslator

NBS = sorted((Path(__file__).resolve().parents[1] / "nbs").glob("[0-9]*.ipynb"))
EXPERIMENTS = [p for p in NBS if re.match(r"0[2-7]_|07a_", p.name)]  # 06a-06i are modules without parameters


@pytest.mark.parametrize("path", NBS, ids=lambda p: p.name)
def test_kernelspec_names_python(path):
    ks = nbformat.read(path, as_version=4).metadata.get("kernelspec", {})
    assert ks.get("name") == "python3" and ks.get("language") == "python"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_papermill_reads_every_parameter(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: expected one cell tagged 'parameters'"
    assigned = {ln.split("=")[0].strip() for ln in cells[0].source.splitlines()
                if re.match(r"^[A-Za-z_]\w*\s*=", ln)}
    read = {p.name for p in PythonTranslator.inspect(cells[0])}
    assert assigned == read, f"{path.name}: papermill cannot read {sorted(assigned - read)}"
    if path.name != "02_eda.ipynb":
        assert {"dataset", "data_dir", "seed", "test_size", "split", "output_dir"} <= read


def test_federated_parameter_names_are_the_documented_ones():
    nb = nbformat.read(next(p for p in NBS if p.name == "06_federated.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = {p.name for p in PythonTranslator.inspect(cell)}
    assert set("dataset data_dir seed test_size output_dir model partition num_clients alpha rounds local_epochs "
               "batch_size lr strategy mu server_lr client_fraction private_user_embeddings embedding_dim device "
               "checkpoint_dir resume".split()) <= names


@pytest.mark.parametrize("path", [p for p in EXPERIMENTS if re.match(r"0[3-7]_", p.name)], ids=lambda p: p.name)
def test_a_misspelled_parameter_stops_in_the_first_check(path):
    """Papermill's injected cell comes right after the parameters cell: replaying `_before`, the parameters, an injected
    cell with a typo and the check cell must stop naming the typo, and a correct injection must pass the name check."""
    from fedrec_nb.experiment import ParameterError
    nb = nbformat.read(path, as_version=4)
    k = next(k for k, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert nb.cells[k - 1].source.startswith("_before = set(globals())"), f"{path.name}: no `_before` cell before the parameters"
    check = nb.cells[k + 1].source
    names = [p.name for p in PythonTranslator.inspect(nb.cells[k])]
    ns = {}
    exec(nb.cells[k - 1].source, ns); exec(nb.cells[k].source, ns); exec(f"{names[-1]}_x = 5\nseed = 1", ns)
    with pytest.raises(ParameterError, match=f"unknown parameter {names[-1]}_x: the known parameters are"):
        exec(check, ns)
    if path.name != "06_federated.ipynb":  # 06's check cell goes on to load the data
        ns = {}
        exec(nb.cells[k - 1].source, ns); exec(nb.cells[k].source, ns); exec("seed = 1", ns); exec(check, ns)
