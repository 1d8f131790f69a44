"""Write README.md from the docs' home page, `nbs/index.ipynb` (settings.ini: `readme_nb`), so the two cannot drift.

nbdev 2's `nbdev_readme` does this by rendering the notebook with Quarto, which cannot be installed on every machine
this project runs on; this script needs only the standard library. It writes what a reader of the repository needs:

- markdown cells as they are, except that links relative to `nbs/` (`06_federated.ipynb`, `06l_flower.ipynb#many-machines`)
  are rewritten relative to the repository root (`nbs/06_federated.ipynb`), where README.md lies; links inside code
  blocks and code spans, absolute URLs and `#anchors` are left alone;
- code cells as fenced `python` blocks, with their saved text outputs (stream and `text/plain`) as plain fenced
  blocks and `text/markdown` outputs as markdown; images are left out;
- nbdev's cell directives are followed as the docs follow them: `#| hide` and `#| include: false` drop the cell,
  `#| echo: false` keeps only its outputs, `#| output: false` only its code; the directive lines themselves are removed.

Usage (from the repository root):
    python scripts/make_readme.py            # write README.md
    python scripts/make_readme.py --check    # exit status 1 if README.md differs from what it would write
tests/test_docs.py checks that README.md is what this script writes.
"""
from __future__ import annotations

import argparse, configparser, json, posixpath, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTICE = ("<!-- This file is generated from {src} by scripts/make_readme.py: edit the notebook, then run"
          " `python scripts/make_readme.py`. -->")
_DIRECTIVE = re.compile(r"^\s*#\|\s*(.*?)\s*$")
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_FENCE = re.compile(r"^\s*(```|~~~)")


def readme_source(root: Path = ROOT) -> Path:
    "The notebook settings.ini names as `readme_nb`, inside `nbs_path`."
    cfg = configparser.ConfigParser()
    cfg.read(root / "settings.ini")
    d = cfg["DEFAULT"]
    return root / d.get("nbs_path", "nbs") / d.get("readme_nb", "index.ipynb")


def _rewrite_link(target: str, prefix: str) -> str:
    if not prefix or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "/")): return target
    path, sep, anchor = target.partition("#")
    return posixpath.normpath(posixpath.join(prefix, path)) + sep + anchor


def rewrite_links(markdown: str, prefix: str) -> str:
    "Markdown links and images relative to the notebooks' folder, made relative to the folder `prefix` names."
    out, in_fence = [], False
    for line in markdown.split("\n"):
        if _FENCE.match(line): in_fence = not in_fence; out.append(line); continue
        if in_fence: out.append(line); continue
        parts = re.split(r"(`+[^`]*`+)", line)  # leave code spans alone
        out.append("".join(p if i % 2 else _LINK.sub(lambda m: m[1] + _rewrite_link(m[2], prefix) + m[3], p)
                           for i, p in enumerate(parts)))
    return "\n".join(out)


def _directives(source: str) -> tuple[set[str], str]:
    "The cell's nbdev directives (normalised: `echo:false`) and its source without them."
    dirs, lines = set(), []
    for line in source.splitlines():
        m = _DIRECTIVE.match(line)
        if m: dirs.add(re.sub(r"\s+", "", m[1]).lower())
        else: lines.append(line)
    return dirs, "\n".join(lines).strip("\n")


def _text(x) -> str:
    return "".join(x) if isinstance(x, list) else str(x)


def _outputs(cell) -> list[str]:
    blocks = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream": blocks.append("```\n" + _text(o.get("text", "")).rstrip("\n") + "\n```")
        elif o.get("output_type") in ("execute_result", "display_data"):
            data = o.get("data", {})
            if "text/markdown" in data: blocks.append(_text(data["text/markdown"]).strip("\n"))
            elif "text/plain" in data and not any(k.startswith("image/") for k in data):
                blocks.append("```\n" + _text(data["text/plain"]).rstrip("\n") + "\n```")
        elif o.get("output_type") == "error":
            raise ValueError("the home page notebook holds an error output; re-execute it before writing README.md")
    return blocks


def render(nb_path: Path, root: Path = ROOT) -> str:
    "README.md's text for the notebook `nb_path` (a file inside `root`)."
    nb_path = Path(nb_path)
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    prefix = posixpath.relpath(nb_path.resolve().parent.as_posix(), Path(root).resolve().as_posix())
    prefix = "" if prefix == "." else prefix
    blocks = []
    for cell in nb["cells"]:
        dirs, src = _directives(_text(cell["source"]))
        if cell["cell_type"] == "raw" or dirs & {"hide", "include:false"}: continue
        if cell["cell_type"] == "markdown":
            if src.strip(): blocks.append(rewrite_links(src, prefix))
            continue
        if "echo:false" not in dirs and src.strip(): blocks.append("```python\n" + src + "\n```")
        if "output:false" not in dirs: blocks += _outputs(cell)
    notice = NOTICE.format(src=posixpath.join(prefix, nb_path.name) if prefix else nb_path.name)
    # the notice goes after the title line, where nbdev_readme puts its own
    if blocks and blocks[0].startswith("# "):
        title, _, rest = blocks[0].partition("\n")
        blocks[0:1] = [title, notice] + ([rest.strip("\n")] if rest.strip() else [])
    else: blocks.insert(0, notice)
    return "\n\n".join(blocks) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check that README.md is up to date")
    a = ap.parse_args(argv)
    src, dest = readme_source(), ROOT / "README.md"
    text = render(src)
    if a.check:
        if dest.exists() and dest.read_text(encoding="utf-8") == text: print("README.md is up to date"); return 0
        print(f"README.md differs from what {src.relative_to(ROOT)} generates; run: python scripts/make_readme.py")
        return 1
    dest.write_text(text, encoding="utf-8")
    print(f"wrote README.md from {src.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
