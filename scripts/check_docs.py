"""Check the documentation site as far as this machine can build it (Quarto is not installed here).

Run it through `scripts/check_docs.sh` (which installs Debian's chromium when it is missing), or directly:
`.venv/bin/python scripts/check_docs.py [--out out/docs_check] [--only 06_federated]`.

Steps, each naming the notebook that fails:

1. Sidebar: `nbs/sidebar.yml` is what nbdev's `nbdev_sidebar` generates from the notebooks, and lists every
   `nbs/*.ipynb` in order (index first). `nbdev_docs` regenerates it (settings.ini: custom_sidebar = False); the
   committed copy must not drift from what it will generate.
2. nbdev's own processing for the site: every notebook goes through `FilterDefaults` (the processors `nbdev_docs`
   and `nbdev_proc_nbs` run before Quarto, through the same `nbdev.serve_drv.main`), into a temporary folder. That
   processing executes the cells it needs for `show_doc` (exports and every cell holding an import), so a cell that
   mixes an import with code needing earlier cells breaks the site build; on failure every such cell is listed.
3. Every notebook is rendered to HTML by nbconvert from the outputs saved in it (nothing is executed), images
   embedded, into `<out>/html/`.
4. Each page is served from a localhost `http.server` and opened in headless Chromium, driven over the DevTools
   protocol through `--remote-debugging-pipe` (file descriptors 3 and 4: no port to collide with other sessions, no
   websocket package). Requests leaving localhost are refused by the `Fetch` domain and listed (the nbconvert
   template's CDN scripts: MathJax, require.js, the widget renderer), so the check runs without network. A page
   fails on any uncaught script exception, `console.error`, error log entry (other than a refused external request),
   failed or >= 400 local request, or broken image. Images are counted in the browser: `<img>` elements with
   `naturalWidth > 0` after every image has settled. A notebook whose code draws a plot (matplotlib/seaborn calls or
   a `plot_*` helper outside function definitions) must show at least one image.
5. A screenshot of the federated page (`06_federated`) is kept in `<out>/06_federated.png` (whole page, half
   scale) and `<out>/06_federated_first_plot.png` (the viewport at its first plot).

Exit status: 0 when every check passes, 1 otherwise; the summary names each failing page.
"""
from __future__ import annotations

import argparse, ast, base64, contextlib, functools, http.server, json, os, queue, re, shutil
import subprocess, sys, tempfile, threading, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-extensions",
                  "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "--disable-dev-shm-usage",
                  "--remote-debugging-pipe"]

# --------------------------------------------------------------------------- notebooks and the sidebar

def rel(p: Path) -> str:
    "`p` relative to the repository when it lies inside it (no machine paths in messages)."
    p = Path(p).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def notebooks(nbs: Path) -> list[Path]:
    "The site's notebooks: `nbs/*.ipynb` in nbdev's sidebar order (index first, then by name)."
    files = [p for p in nbs.glob("*.ipynb") if not p.name.startswith(("_", "."))]
    return sorted(files, key=lambda p: ("00" if p.name.startswith("index.") else p.name))


def expected_sidebar(nbs: Path) -> str:
    "The sidebar.yml text nbdev's `nbdev_sidebar` generates for the notebooks of `nbs` (top-level notebooks only)."
    from nbdev.quarto import nbdev_sidebar
    buf = __import__("io").StringIO()
    with contextlib.redirect_stdout(buf):
        # skip the gitignored run folders (nbs/runs/...) that papermill may fill with executed copies
        nbdev_sidebar.__wrapped__(path=str(nbs), printit=True, force=True, skip_folder_re=r"(?:^[_.]|^www\$|^runs$)")
    return buf.getvalue().rstrip("\n") + "\n"


def check_sidebar(nbs: Path) -> list[str]:
    "Problems with `nbs/sidebar.yml`: missing, drifted from nbdev's, or not listing every notebook in order."
    import yaml
    sb = nbs / "sidebar.yml"
    fix = "regenerate it: .venv/bin/python scripts/check_docs.py --write-sidebar"
    if not sb.exists(): return [f"{rel(sb)} is missing; {fix}"]
    try: listed = yaml.safe_load(sb.read_text())["website"]["sidebar"]["contents"]
    except Exception as e: return [f"{rel(sb)} is not a website.sidebar.contents YAML list ({e}); {fix}"]
    problems = []
    names = [p.name for p in notebooks(nbs)]
    if [x for x in listed if isinstance(x, str)] != names:
        missing = [n for n in names if n not in listed]
        extra = [x for x in listed if isinstance(x, str) and x not in names]
        problems.append(f"{rel(sb)} lists {listed} but the notebooks are {names}"
                        f" (missing: {missing}, not a notebook: {extra}); {fix}")
    elif sb.read_text() != expected_sidebar(nbs):
        problems.append(f"{rel(sb)} differs from what nbdev_sidebar generates; {fix}")
    return problems

def check_site_config(nbs: Path) -> list[str]:
    "Problems with `_quarto.yml` (one file at the top, linked from nbs/; valid YAML, a website reading nbdev.yml and sidebar.yml) and `nbdev.yml`."
    import yaml
    from nbdev.config import get_config
    from nbdev.quarto import _nbdev_yml
    problems = []
    q = nbs / "_quarto.yml"
    for f in (q, nbs / "nbdev.yml"):
        if not f.exists(): return [f"{rel(f)} is missing (restore it from git, or let nbdev write it from"
                                   " settings.ini: `python -c 'from nbdev.quarto import refresh_quarto_yml as r; r()'`)"]
    top = nbs.parent / "_quarto.yml"  # the one real file; nbs/_quarto.yml, where nbdev reads it, links to it
    if nbs.resolve() == (ROOT / "nbs").resolve() and (not top.is_file() or top.is_symlink() or not q.is_symlink()
                                                     or q.resolve() != top.resolve()):
        problems.append(f"{rel(q)} must be a relative link to the top-level _quarto.yml (the only copy):"
                        " `ln -sf ../_quarto.yml nbs/_quarto.yml`")
    text = q.read_text()
    for m in re.finditer(r"\{\{[^}<]*\}\}", text):  # nbdev does not template _quarto.yml; Quarto keeps it literal
        problems.append(f"{q.name}: `{m.group()}` is not replaced by nbdev or Quarto: write the value itself")
    try:
        cfg = yaml.safe_load(text)
        if (cfg.get("project") or {}).get("type") != "website": problems.append(f"{q.name}: project.type is not 'website'")
        missing = {"nbdev.yml", "sidebar.yml"} - set(cfg.get("metadata-files") or [])
        if missing: problems.append(f"{q.name}: metadata-files lacks {sorted(missing)}")
    except Exception as e: problems.append(f"{q.name} is not valid YAML: {e}")
    c = get_config()  # nbdev_docs rewrites nbdev.yml from settings.ini (refresh_quarto_yml): keep them in step
    vals = {k: c[k] for k in ["title", "description", "branch", "git_url", "doc_host", "doc_baseurl"]}
    vals["doc_path"] = c.doc_path.name
    if (nbs / "nbdev.yml").read_text() != _nbdev_yml.format(**vals):
        problems.append("nbdev.yml differs from what nbdev_docs writes from settings.ini; run"
                        " `.venv/bin/python -c 'from nbdev.quarto import refresh_quarto_yml; refresh_quarto_yml()'`")
    return problems

# --------------------------------------------------------------------------- nbdev's processing for the site

def _failing_cells(src: Path) -> list[str]:
    "Run nbdev's processors on `src`, continuing past failing `exec_show_docs` cells: one line per failing cell."
    from execnb.nbio import read_nb
    from nbdev.processors import FilterDefaults, exec_show_docs, _do_eval
    from nbdev.process import NBProcessor
    found = []
    originals = ["".join(c["source"]) for c in json.loads(src.read_text())["cells"]]

    def _meaningful(text):
        return next((l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#|")), "")

    def position(source):  # the cell's index in the .ipynb (nbdev's processors insert show_doc cells)
        if source in originals: return originals.index(source)
        first = _meaningful(source)
        return next((i for i, o in enumerate(originals) if first and _meaningful(o) == first), "?")

    class collect(exec_show_docs):
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, "k"): return
            if not _do_eval(cell): return
            self.k.exc = None
            self.k.cell(cell)
            if self.k.exc is not None:
                found.append(f"cells[{position(cell.source)}] ({type(self.k.exc).__name__}: {self.k.exc})"
                             f" starting `{_meaningful(cell.source)[:70]}`")
                self.k.exc = None

    procs = [collect if p is exec_show_docs else p for p in FilterDefaults().procs()]
    NBProcessor(nb=read_nb(src), procs=procs).process()
    return found


def nbdev_process(files: list[Path], dest: Path) -> dict[str, str]:
    "Process each notebook as `nbdev_docs` does, into `dest`; {notebook name: error} for those that fail."
    import nbdev.serve_drv
    from nbdev.processors import FilterDefaults
    errors = {}
    for src in files:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
                warnings.simplefilter("ignore")
                nbdev.serve_drv.main((src, dest / src.name, FilterDefaults))
        except Exception as e:
            cause = f" ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
            msg = re.sub(r" in cell \d+ :$", "", str(e).splitlines()[0]) + cause
            try:
                with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
                    warnings.simplefilter("ignore")
                    cells = _failing_cells(src)
            except Exception as e2: cells = [f"(listing the failing cells failed too: {e2})"]
            if cells:
                msg += ("\n      every cell nbdev runs for the docs that fails (a cell holding an import is run without"
                        " the cells before it: move its import into the notebook's imports cell):\n        "
                        + "\n        ".join(cells))
            errors[src.name] = msg
        finally: os.environ.pop("IN_TEST", None)
    return errors

# --------------------------------------------------------------------------- which notebooks draw plots

_PLT_DRAW = re.compile(r"^(subplots|figure|plot|bar|barh|hist|scatter|imshow|pie|boxplot|violinplot|errorbar|"
                       r"fill_between|step|stem|hexbin|contourf?|matshow|show|subplot_mosaic)$")
_SNS_NOT_DRAW = {"set", "set_theme", "set_style", "set_context", "set_palette", "color_palette", "move_legend",
                 "despine", "load_dataset", "axes_style", "plotting_context", "reset_defaults", "reset_orig"}
_DIRECTIVE = re.compile(r"^\s*#\|\s*(.*)$")


def _code(source: str) -> str:
    "Cell source with IPython magics and shell escapes commented out, so `ast` can parse it."
    return "\n".join("#" + l if l.lstrip().startswith(("%", "!")) else l for l in source.splitlines())


def _draw_calls(tree: ast.AST) -> list[str]:
    "Plot-drawing calls outside function and class bodies: `plt.x`, `sns.x`, `.plot(`, `.hist(`, `plot_*(`."
    found = []

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)): return
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id.startswith("plot_"): found.append(f.id)
            elif isinstance(f, ast.Attribute):
                base = f.value.id if isinstance(f.value, ast.Name) else None
                if base in ("plt", "pyplot") and _PLT_DRAW.match(f.attr): found.append(f"{base}.{f.attr}")
                elif base in ("sns", "seaborn") and f.attr not in _SNS_NOT_DRAW: found.append(f"{base}.{f.attr}")
                elif f.attr.startswith("plot_") or f.attr in ("plot", "hist"): found.append(f".{f.attr}")
                elif isinstance(f.value, ast.Attribute) and f.value.attr == "plot": found.append(f".plot.{f.attr}")
        for child in ast.iter_child_nodes(node): visit(child)

    visit(tree)
    return found


def plotting_cells(nb_path: Path) -> list[tuple[int, list[str], int]]:
    "(cell index, drawing calls, images in the cell's saved outputs) for each code cell that draws a plot."
    nb = json.loads(nb_path.read_text())
    res = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code": continue
        src = "".join(c["source"])
        dirs = [m.group(1).strip().lower() for m in map(_DIRECTIVE.match, src.splitlines()) if m]
        if any(re.match(r"eval\s*:\s*false", d) for d in dirs): continue
        try: tree = ast.parse(_code(src))
        except SyntaxError: continue
        calls = _draw_calls(tree)
        if not calls: continue
        imgs = sum(1 for o in c.get("outputs", []) for k in o.get("data", {}) if k.startswith("image/"))
        res.append((i, sorted(set(calls)), imgs))
    return res

# --------------------------------------------------------------------------- nbconvert

def render_html(files: list[Path], dest: Path) -> dict[str, str]:
    "Render each notebook's saved outputs to `dest/<name>.html` (nothing executed); {name: error} on failure."
    from nbconvert import HTMLExporter
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    errors = {}
    for src in files:
        try:
            body, _ = exporter.from_filename(str(src), resources={"metadata": {"path": str(src.parent)}})
            (dest / f"{src.stem}.html").write_text(body, encoding="utf-8")
        except Exception as e: errors[src.name] = f"nbconvert failed: {type(e).__name__}: {e}"
    return errors

# --------------------------------------------------------------------------- Chromium over the DevTools pipe

class Chromium:
    "Headless Chromium driven over `--remote-debugging-pipe` (JSON messages ended by NUL on fds 3 and 4)."

    def __init__(self, binary: str, user_data_dir: Path, log: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds():  # in the child: Chromium reads commands from fd 3 and writes answers to fd 4
            import fcntl
            r, w = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3); os.dup2(w, 4)

        self._log = open(log, "wb")
        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     preexec_fn=fds, close_fds=False)
        os.close(to_chrome_r); os.close(from_chrome_w)
        self._next, self._inbox = 0, queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True); self._reader.start()
        self.on_event = None  # callback(message) for every event

    def _read(self):
        buf = b""
        while True:
            try: chunk = os.read(self._from_chrome, 1 << 20)
            except OSError: chunk = b""
            if not chunk: self._inbox.put(None); return
            buf += chunk
            *msgs, buf = buf.split(b"\0")
            for m in msgs: self._inbox.put(json.loads(m))

    def _pump(self, until_id=None, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if until_id is None: return
                raise TimeoutError(f"no answer from Chromium within {timeout:.0f} s")
            try: msg = self._inbox.get(timeout=min(left, 0.2))
            except queue.Empty:
                if until_id is None: return
                continue
            if msg is None: raise RuntimeError("Chromium closed the DevTools pipe (crashed?)")
            if "id" in msg:
                if msg["id"] == until_id:
                    if "error" in msg: raise RuntimeError(f"DevTools error: {msg['error']}")
                    return msg.get("result", {})
            elif self.on_event: self.on_event(msg)

    def post(self, method, params=None, session=None) -> int:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session: msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        return self._next

    def send(self, method, params=None, session=None, timeout=30.0):
        "Send a command and wait for its answer, handling the events that arrive meanwhile."
        return self._pump(self.post(method, params, session), timeout)

    def idle(self, seconds: float):
        "Handle events for `seconds`."
        end = time.monotonic() + seconds
        while time.monotonic() < end: self._pump(None, timeout=max(end - time.monotonic(), 0.01))

    def close(self):
        with contextlib.suppress(Exception): self.post("Browser.close")
        try: self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            with contextlib.suppress(OSError): os.close(fd)
        self._log.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


@contextlib.contextmanager
def serve(folder: Path):
    "A localhost http.server for `folder` on a free port; yields its base URL."
    handler = functools.partial(_Quiet, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        t = threading.Thread(target=httpd.serve_forever, daemon=True); t.start()
        try: yield f"http://127.0.0.1:{httpd.server_address[1]}/"
        finally: httpd.shutdown()


_IMAGES_JS = """(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.addEventListener('load', r);
                                                                        i.addEventListener('error', r); })));
  return JSON.stringify(imgs.map(i => ({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete,
                                        src: i.src.slice(0, 80)})));
})()"""


def check_page(ch: Chromium, url: str, base: str, shots: dict[str, Path] | None = None, timeout=60.0) -> dict:
    "Open `url` in a fresh tab; its script errors, refused external requests and images (and screenshots)."
    target = ch.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    sid = ch.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    errors, blocked, requests, state = [], [], {}, {"loaded": False}

    def on_event(m):
        if m.get("sessionId") != sid: return
        method, p = m["method"], m.get("params", {})
        if method == "Fetch.requestPaused":
            u = p["request"]["url"]
            if u == base + "favicon.ico":  # the browser's own request, not the page's: answer it empty
                ch.post("Fetch.fulfillRequest", {"requestId": p["requestId"], "responseCode": 204}, sid)
            elif u.startswith(base): ch.post("Fetch.continueRequest", {"requestId": p["requestId"]}, sid)
            else:
                blocked.append(u)
                ch.post("Fetch.failRequest", {"requestId": p["requestId"], "errorReason": "BlockedByClient"}, sid)
        elif method == "Network.requestWillBeSent": requests[p["requestId"]] = p["request"]["url"]
        elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
            errors.append(f"HTTP {p['response']['status']} for {p['response']['url'][:120]}")
        elif method == "Network.loadingFailed":
            u = requests.get(p["requestId"], "?")
            if u.startswith(base) or not (p.get("blockedReason") or "BLOCKED_BY_CLIENT" in p.get("errorText", "")):
                if u not in blocked: errors.append(f"request failed: {u[:120]} ({p.get('errorText')})")
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            desc = (d.get("exception") or {}).get("description") or d.get("text")
            errors.append(f"uncaught exception at {d.get('url', '')[:80]}:{d.get('lineNumber')}: {desc[:300]}")
        elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            errors.append(f"console.{p['type']}: {args[:300]}")
        elif method == "Log.entryAdded":
            e = p["entry"]
            if e["level"] != "error": return
            u = e.get("url", "")
            if e.get("source") == "network" and (u in blocked or "ERR_BLOCKED_BY_CLIENT" in e.get("text", "")): return
            errors.append(f"log ({e.get('source')}): {e.get('text', '')[:300]} {u[:120]}")
        elif method == "Page.loadEventFired": state["loaded"] = True

    ch.on_event = on_event
    try:
        for m in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"): ch.send(m, session=sid)
        ch.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, sid)
        ch.send("Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, sid)
        nav = ch.send("Page.navigate", {"url": url}, sid)
        if nav.get("errorText"): errors.append(f"navigation failed: {nav['errorText']}")
        end = time.monotonic() + timeout
        while not state["loaded"]:
            if time.monotonic() > end: raise TimeoutError(f"the page did not finish loading in {timeout:.0f} s")
            ch.idle(0.1)
        r = ch.send("Runtime.evaluate", {"expression": _IMAGES_JS, "awaitPromise": True, "returnByValue": True},
                    sid, timeout=timeout)
        imgs = json.loads(r["result"]["value"])
        ch.idle(0.5)  # late errors (DOMContentLoaded handlers, timers)
        loaded = [i for i in imgs if i["w"] > 0]
        errors += [f"broken image {i['src']}" for i in imgs if i["complete"] and i["w"] == 0]
        for kind, path in (shots or {}).items():
            if kind == "full":
                size = ch.send("Page.getLayoutMetrics", session=sid)["cssContentSize"]
                clip = {"x": 0, "y": 0, "width": 1280, "height": min(size["height"], 30000), "scale": 0.5}
                shot = ch.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                          "clip": clip}, sid, timeout=60)
            else:  # the viewport scrolled to the first loaded image
                ch.send("Runtime.evaluate", {"expression": "(() => { const i = [...document.images].find("
                        "i => i.naturalWidth > 0); if (i) i.scrollIntoView({block: 'start'}); window.scrollBy(0, -60);"
                        " })()"}, sid)
                ch.idle(0.3)
                shot = ch.send("Page.captureScreenshot", {"format": "png"}, sid, timeout=60)
            path.write_bytes(base64.b64decode(shot["data"]))
        return {"errors": errors, "blocked": sorted(set(blocked)), "images": len(loaded), "img_elements": len(imgs)}
    finally:
        ch.on_event = None
        with contextlib.suppress(Exception): ch.send("Target.closeTarget", {"targetId": target}, timeout=10)

# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/docs_check", help="output folder (rendered HTML, screenshots)")
    ap.add_argument("--nbs", default="nbs", help="the notebooks' folder")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"), help="Chromium binary")
    ap.add_argument("--only", default="", help="regex: check only the notebooks whose name matches")
    ap.add_argument("--write-sidebar", action="store_true", help="(re)write nbs/sidebar.yml from the notebooks and stop")
    a = ap.parse_args(argv)

    nbs = (ROOT / a.nbs).resolve()
    if not nbs.is_dir(): ap.error(f"--nbs {a.nbs}: no such folder")
    os.chdir(ROOT)  # nbdev reads settings.ini from here
    if a.write_sidebar:
        (nbs / "sidebar.yml").write_text(expected_sidebar(nbs))
        print(f"wrote {rel(nbs / 'sidebar.yml')}"); return 0
    if not Path(a.chromium).exists():
        ap.error(f"--chromium {a.chromium}: not found; install it (apt-get install -y chromium) or run scripts/check_docs.sh")
    out = (ROOT / a.out).resolve()
    if out == ROOT or ROOT.is_relative_to(out): ap.error(f"--out {a.out}: refusing to empty a folder holding the repository")
    pages = [p for p in notebooks(nbs) if re.search(a.only, p.stem)]
    if not pages: ap.error(f"--only {a.only!r}: no notebook in {a.nbs} matches")
    if out.exists(): shutil.rmtree(out)
    (out / "html").mkdir(parents=True)
    os.environ.setdefault("MPLBACKEND", "Agg")
    failures: dict[str, list[str]] = {}
    t0 = time.monotonic()

    def fail(page, msg): failures.setdefault(page, []).append(msg)

    print("== 1. site configuration and sidebar")
    for p in check_sidebar(nbs): fail("sidebar.yml", p)
    for p in check_site_config(nbs): fail("_quarto.yml/nbdev.yml", p)
    print(f"   {'ok' if not failures else 'FAILED'}: sidebar.yml lists {len(notebooks(nbs))} notebooks in order")

    print("== 2. nbdev's processing for the site (FilterDefaults, as nbdev_docs runs it)")
    with tempfile.TemporaryDirectory(prefix="nbdev_proc_") as tmp:
        proc_errors = nbdev_process(pages, Path(tmp))
    for name, msg in proc_errors.items(): fail(name, f"nbdev processing: {msg}")
    print(f"   {len(pages) - len(proc_errors)}/{len(pages)} processed without error "
          f"({time.monotonic() - t0:.0f} s)")

    print("== 3. nbconvert to HTML from the saved outputs")
    t1 = time.monotonic()
    conv_errors = render_html(pages, out / "html")
    for name, msg in conv_errors.items(): fail(name, msg)
    print(f"   {len(pages) - len(conv_errors)}/{len(pages)} rendered ({time.monotonic() - t1:.0f} s)")

    print(f"== 4. headless Chromium ({a.chromium})")
    results = {}
    with tempfile.TemporaryDirectory(prefix="chromium_profile_") as profile, serve(out / "html") as base:
        ch = Chromium(a.chromium, Path(profile), out / "chromium.log")
        try:
            try: print(f"   {ch.send('Browser.getVersion', timeout=60)['product']}")
            except Exception as e:
                fail("chromium", f"Chromium did not start ({type(e).__name__}: {e}); see {rel(out / 'chromium.log')}")
                pages_to_open = []
            else: pages_to_open = pages
            for p in pages_to_open:
                if p.name in conv_errors: continue
                shots = ({"full": out / "06_federated.png", "plot": out / "06_federated_first_plot.png"}
                         if p.stem == "06_federated" else None)
                try: results[p.name] = check_page(ch, f"{base}{p.stem}.html", base, shots)
                except Exception as e:
                    fail(p.name, f"browser: {type(e).__name__}: {e}")
                    if ch.proc.poll() is not None:
                        fail(p.name, f"Chromium exited (status {ch.proc.returncode}); see {rel(out / 'chromium.log')}")
                        break
        finally: ch.close()

    print("== 5. pages")
    no_image = []
    for p in pages:
        r = results.get(p.name)
        draws = plotting_cells(p)
        if r is None: print(f"   {p.stem:<22} not checked in the browser"); continue
        for e in r["errors"]: fail(p.name, f"script/page error: {e}")
        if draws and r["images"] == 0:
            no_image.append(p.name)
            fail(p.name, "draws plots (cells " + ", ".join(f"{i} {'/'.join(c)}" for i, c, _ in draws)
                 + ") but the rendered page shows no image: re-execute it and commit its outputs")
        elif draws:
            for i, calls, n in draws:
                if n == 0: print(f"   note: {p.name} cell {i} ({'/'.join(calls)}) has no saved image output")
        print(f"   {p.stem:<22} images {r['images']:>3} of {r['img_elements']:>3} <img>"
              f"  plots in source: {'yes' if draws else 'no ':<3}  script errors: {len(r['errors'])}"
              f"  refused external requests: {len(r['blocked'])}")
    blocked = sorted({u for r in results.values() for u in r["blocked"]})
    if blocked:
        print("   external requests refused (no network here; the nbconvert template's CDN scripts):")
        for u in blocked: print(f"     {u}")

    shot = out / "06_federated.png"
    print("== summary")
    print(f"   pages checked in the browser: {len(results)} of {len(pages)}; "
          f"images found: {sum(r['images'] for r in results.values())}")
    print("   images per page: " + ", ".join(f"{Path(k).stem} {v['images']}" for k, v in results.items()))
    if shot.exists(): print(f"   screenshot: {rel(shot)}"
                            f" (and {shot.with_name('06_federated_first_plot.png').name})")
    elif any(p.stem == "06_federated" for p in pages): fail("06_federated.ipynb", "no screenshot was taken")
    if no_image: print(f"   notebooks that draw plots but show no image: {', '.join(no_image)}")
    print(f"   rendered HTML: {rel(out / 'html')}"
          f"   time: {time.monotonic() - t0:.0f} s")
    if failures:
        print(f"FAILED: {len(failures)} page(s): {', '.join(failures)}")
        for page, msgs in failures.items():
            for m in msgs: print(f" - {page}: {m}")
        return 1
    print("OK: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
