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


# --------------------------------------------------------------------------- README.md, the home page and the results page

@pytest.fixture(scope="module")
def mr():
    spec = importlib.util.spec_from_file_location("make_readme", ROOT / "scripts" / "make_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _markdown(nb_path):
    return "\n\n".join("".join(c["source"]) for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "markdown")


def test_readme_is_generated_from_the_home_page(mr):
    assert mr.readme_source(ROOT) == NBS / "index.ipynb"  # settings.ini: readme_nb = index.ipynb
    assert (ROOT / "README.md").read_text(encoding="utf-8") == mr.render(NBS / "index.ipynb"), \
        "README.md differs from nbs/index.ipynb: edit the notebook, then run `python scripts/make_readme.py`"


def _relative_links(markdown):
    import re
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    return [t for t in re.findall(r"\]\(([^)\s]+)", text) if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", t)]


@pytest.mark.parametrize("doc,base", [("README.md", ROOT), ("nbs/index.ipynb", NBS), ("nbs/results.ipynb", NBS)])
def test_every_relative_link_resolves_where_the_page_is_read(doc, base):
    p = ROOT / doc
    md = _markdown(p) if p.suffix == ".ipynb" else p.read_text(encoding="utf-8")
    links = _relative_links(md)
    assert links, f"{doc}: no relative links found"
    missing = [t for t in links if not (base / t.partition("#")[0]).exists()]
    assert missing == [], f"{doc}: links to files that are not there: {missing}"
    if doc == "README.md":  # the notebooks from the repository root, not as if README.md lay in nbs/
        assert "nbs/06_federated.ipynb" in links and "nbs/results.ipynb" in links
        assert "nbs/06l_flower.ipynb#many-machines" in links


def test_home_page_covers_what_a_new_reader_needs():
    from fedrec_nb.data import DATASET_NAMES
    md = _markdown(NBS / "index.ipynb")
    for name in DATASET_NAMES: assert f"`{name}`" in md, f"index.ipynb does not list the dataset {name}"
    order = ["## The two commands", "bash scripts/run_federated.sh", "bash scripts/test.sh", "source .venv/bin/activate",
             "## Datasets", "## GPU", "06l_flower.ipynb#many-machines", "## The notebooks, in reading order", "(results.ipynb)"]
    pos = [md.find(s) for s in order]
    assert -1 not in pos, [s for s, k in zip(order, pos) if k == -1]
    assert pos == sorted(pos), "the home page's parts are out of order"
    assert "python -m fedrec_nb.records compare runs/*" in md  # how to compare runs (tests/test_run_folders.py runs it)
    for f in ("results.json", "results.csv", "clients.csv"): assert f"`{f}`" in md
    # every notebook is in the map
    for p in NBS.glob("[0-9]*.ipynb"): assert f"[{p.stem}]({p.name})" in md, f"the notebook map lacks {p.name}"


@pytest.mark.parametrize("doc", ["nbs/index.ipynb", "nbs/results.ipynb", "README.md"])
def test_pages_use_no_internal_vocabulary(doc):
    import re
    p = ROOT / doc
    md = _markdown(p) if p.suffix == ".ipynb" else p.read_text(encoding="utf-8")
    for pat in [r"\bthe seed\b(?! parameter)", r"\bseed notebook", r"\bthe seed's\b", r"\bNOT met\b", r"\*\*met\*\*",
                r"issue's target", r"\bwave\b", r"rounds\.csv"]:
        assert not re.search(pat, md, flags=re.I), f"{doc}: {pat!r} found"


def test_results_page_is_markdown_with_commands():
    nb = json.loads((NBS / "results.ipynb").read_text())
    assert {c["cell_type"] for c in nb["cells"]} == {"markdown"}
    md = _markdown(NBS / "results.ipynb")
    assert md.startswith("# Results\n")
    for cmd in ("python benchmarks/federated_figures.py", "python benchmarks/bench_vectorized.py",
                "python benchmarks/privacy_robustness_figures.py", "papermill nbs/06_federated.ipynb"):
        assert cmd in md
    assert "Measured figures" not in (ROOT / "README.md").read_text(encoding="utf-8")  # the tables live on the page only
    import re
    scripts = set(re.findall(r"python (benchmarks/\w+\.py)", md))
    assert scripts and all((ROOT / s).is_file() for s in scripts), scripts
    bench = (ROOT / "benchmarks" / "README.md").read_text()
    assert "nbs/results.ipynb" in bench and "Measured figures" not in bench
    timed = {s.split("/")[1] for s in scripts if s.startswith("benchmarks/bench_")} - {"bench_surprise_cv.py"}  # accuracy only
    assert timed <= set(re.findall(r"\b(bench_\w+\.py)", bench)), "a speed script on the Results page lacks its section in benchmarks/README.md"


def test_readme_generator(mr, tmp_path):
    nbs = tmp_path / "nbs"; nbs.mkdir()
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# T\n\n> sub"},
        {"cell_type": "markdown", "metadata": {}, "source":
            "See [a](01_a.ipynb#x), [b](../scripts/b.sh), [w](https://x.org/y.ipynb), [h](#here), `[c](c.ipynb)`.\n"
            "```sh\n[d](d.ipynb)\n```"},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "source": "#| hide\nsecret = 1", "outputs": []},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "source": "#| echo: false\nshown_output()",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": ["only this\n"]}]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "source": "1 + 1",
         "outputs": [{"output_type": "execute_result", "metadata": {}, "execution_count": None,
                      "data": {"text/plain": ["2"]}}]},
        {"cell_type": "raw", "metadata": {}, "source": "raw"},
    ]
    nb = nbs / "index.ipynb"
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    out = mr.render(nb, tmp_path)
    assert out.startswith("# T\n\n<!-- This file is generated from nbs/index.ipynb")
    assert "\n\n> sub\n\n" in out
    assert "[a](nbs/01_a.ipynb#x)" in out and "[b](scripts/b.sh)" in out and "[w](https://x.org/y.ipynb)" in out
    assert "[h](#here)" in out and "`[c](c.ipynb)`" in out and "\n[d](d.ipynb)\n" in out
    assert "secret" not in out and "shown_output" not in out and "```\nonly this\n```" in out
    assert "```python\n1 + 1\n```\n\n```\n2\n```" in out and "raw" not in out and "#|" not in out
    assert mr.render(nb, nbs).count("](01_a.ipynb#x)") == 1  # read from nbs/ itself: links unchanged


def test_quarto_yml_is_one_file_at_the_top(cd, monkeypatch, tmp_path):
    import os, shutil, subprocess
    top, link = ROOT / "_quarto.yml", NBS / "_quarto.yml"
    assert top.is_file() and not top.is_symlink()
    assert link.is_symlink() and os.readlink(link) == "../_quarto.yml"  # relative: works in any clone
    assert link.resolve() == top.resolve() and os.path.samefile(link, top)
    if shutil.which("git") and (ROOT / ".git").exists():  # committed as a link (mode 120000), not as a copy
        modes = subprocess.run(["git", "ls-files", "-s", "_quarto.yml", "nbs/_quarto.yml"], cwd=ROOT,
                               capture_output=True, text=True).stdout.split("\n")
        mode = {l.split("\t")[1]: l.split()[0] for l in modes if l.strip()}
        if mode: assert mode == {"_quarto.yml": "100644", "nbs/_quarto.yml": "120000"}, mode
    # nbdev's processing for the site copies nbs/_quarto.yml into its cache as a plain file holding the real text
    monkeypatch.chdir(ROOT)
    from nbdev.serve import _proc_file
    assert _proc_file(link, cache=tmp_path, path=NBS) is None
    assert not (tmp_path / "_quarto.yml").is_symlink() and (tmp_path / "_quarto.yml").read_text() == top.read_text()
    assert cd.check_site_config(NBS) == []
