"""The docs site's configuration (fast, no browser): the sidebar lists every notebook in order, the Quarto files are
what nbdev_docs expects, and scripts/check_docs.py recognises the notebooks that draw plots.
The browser check itself is `bash scripts/check_docs.sh` (CI runs it after the tests)."""
import importlib.util, json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"


@pytest.fixture(scope="module")
def cd():
    spec = importlib.util.spec_from_file_location("check_docs", ROOT / "scripts" / "check_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sidebar_lists_every_notebook_in_order(cd, monkeypatch):
    monkeypatch.chdir(ROOT)  # nbdev reads settings.ini from the working folder
    listed = yaml.safe_load((NBS / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    on_disk = sorted(p.name for p in NBS.glob("*.ipynb"))
    assert listed[0] == "index.ipynb"
    assert sorted(listed) == on_disk, f"sidebar.yml is stale; run .venv/bin/python scripts/check_docs.py --write-sidebar"
    assert listed[1:] == sorted(listed[1:])  # 00_, 01_, ..., 06_federated, 06a_, ..., 07_
    assert cd.check_sidebar(NBS) == []  # and it is exactly what nbdev_sidebar generates


def test_site_config_is_what_nbdev_docs_reads(cd, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cd.check_site_config(NBS) == []


def test_sidebar_check_names_a_missing_notebook(cd, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    for n in ("index.ipynb", "00_a.ipynb", "06_b.ipynb", "06a_c.ipynb"):
        (tmp_path / n).write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    (tmp_path / "sidebar.yml").write_text(cd.expected_sidebar(tmp_path))
    assert cd.check_sidebar(tmp_path) == []
    (tmp_path / "06z_new.ipynb").write_text((tmp_path / "index.ipynb").read_text())
    problems = cd.check_sidebar(tmp_path)
    assert len(problems) == 1 and "06z_new.ipynb" in problems[0] and "--write-sidebar" in problems[0]


@pytest.mark.parametrize("src,draws", [
    ("fig = plot_rating_distribution(data)", True),
    ("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar([1], [2])", True),
    ("sns.barplot(data=df, x='a', y='b')", True),
    ("df.plot.bar()", True),
    ("display(plot_age_groups(ml1m_like))", True),
    ("%matplotlib inline\nresults.plot(x='round')", True),
    ("#| export\ndef plot_x(df):\n    fig, ax = plt.subplots()\n    ax.plot(df.a)\n    return fig", False),
    ("sns.set_theme(); plt.rcParams['figure.dpi'] = 90", False),
    ("#| eval: false\nplot_federated(res)", False),
    ("print('no plot here')", False),
])
def test_recognises_cells_that_draw(cd, tmp_path, src, draws):
    nb = {"cells": [{"cell_type": "code", "source": src, "metadata": {}, "outputs": [], "execution_count": None}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    p = tmp_path / "x.ipynb"
    p.write_text(json.dumps(nb))
    assert bool(cd.plotting_cells(p)) == draws
