"""The layout reads in order: every notebook imports only from lower-numbered notebooks (a chapter's main notebook,
`06_federated` or `07_case_study`, also from its own sub-notebooks, which it introduces), no module imports another's
private names, no import cycle, and the built-in engines run without importing `flwr`."""
import ast, json, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fedrec_nb"


def _notebooks():
    out = {}
    for f in sorted((ROOT / "nbs").glob("[0-9]*.ipynb")):
        cells = json.loads(f.read_text())["cells"]
        src = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        m = re.search(r"#\| default_exp (\S+)", src)
        out[f.stem] = (m.group(1) if m else None, set(re.findall(r"(?:from|import) fedrec_nb\.(\w+)", src)))
    return out


def _chapter(name): return re.match(r"\d+", name).group(0)


def test_notebooks_import_only_lower_numbered_ones():
    nbs = _notebooks()
    exporter = {mod: name for name, (mod, _) in nbs.items() if mod}
    bad = []
    for name, (mod, imports) in nbs.items():
        main = not re.match(r"\d+[a-z]", name)   # a chapter's main notebook: 06_federated, 07_case_study, ...
        for m in imports:
            src = exporter.get(m)
            if src is None or src == name or src < name: continue
            if main and _chapter(src) == _chapter(name): continue   # its own sub-notebooks
            bad.append(f"{name} imports fedrec_nb.{m} from the later {src}")
    assert not bad, bad
    assert all(mod is None for name, (mod, _) in nbs.items() if name in ("06_federated",)), "the main job notebook exports nothing"


def _module_imports():
    "module -> [(imported module, names, level)] of every import of the package, at any depth of the file."
    out = {}
    for f in PKG.glob("*.py"):
        if f.name == "_modidx.py": continue
        imps = []
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 1: imps.append((mod, [a.name for a in node.names]))
                elif mod.startswith("fedrec_nb."): imps.append((mod[len("fedrec_nb."):], [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                imps += [(a.name[len("fedrec_nb."):], []) for a in node.names if a.name.startswith("fedrec_nb.")]
        out[f.stem] = imps
    return out


def test_no_module_imports_another_modules_private_names():
    bad = [f"{m} imports {n} from {src}" for m, imps in _module_imports().items() for src, names in imps
           for n in names if n.startswith("_") and n != "__version__"]
    assert not bad, bad


def test_no_import_cycle():
    graph = {m: {src.split(".")[0] for src, _ in imps if src} for m, imps in _module_imports().items()}
    state, cycles = {}, []
    def visit(m, path):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1: cycles.append(path + [d])
            elif d not in state: visit(d, path + [d])
        state[m] = 2
    for m in sorted(graph):
        if m not in state: visit(m, [m])
    assert not cycles, cycles


def test_built_in_engines_do_not_import_flwr():
    mods = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in ("flower", "_modidx", "__init__"))
    code = (f"import sys\nfor m in {mods!r}: __import__('fedrec_nb.' + m)\n"
            "from fedrec_nb.federated import run_federated\n"
            "import tempfile\nd = tempfile.mkdtemp()\n"
            "run_federated(dataset='synthetic', rounds=1, local_epochs=1, embedding_dim=4, output_dir=d, progress=False, plots=False, ranking=False)\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'flwr'], 'flwr imported'\nprint('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_every_benchmark_writes_its_figures_as_json_one_way(tmp_path):
    "Each script in benchmarks/ takes `--json PATH` and writes through `benchjson` (the machine's fields in one place)."
    import importlib.util
    bench = ROOT / "benchmarks"
    scripts = [p for p in sorted(bench.glob("*.py")) if p.name != "benchjson.py"]
    missing = [p.name for p in scripts if "add_json_argument(" not in (s := p.read_text()) or "write_json(" not in s]
    assert not missing, f"benchmarks without --json through benchjson: {missing}"
    spec = importlib.util.spec_from_file_location("benchjson", bench / "benchjson.py")
    bj = importlib.util.module_from_spec(spec); spec.loader.exec_module(bj)
    bj.write_json(tmp_path / "f" / "x.json", dict(rows=[dict(a=1.5)]))
    got = json.loads((tmp_path / "f" / "x.json").read_text())
    assert got["rows"] == [dict(a=1.5)] and {"threads", "cpu", "cores", "torch", "python"} <= set(got["machine"])
    assert not list((tmp_path / "f").glob("*.tmp"))
