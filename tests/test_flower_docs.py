"""The deployment commands of nbs/06l_flower.ipynb ("Many machines", one machine with two SuperNodes), run as written.

The lines are read from the notebook's markdown, so the docs cannot drift from what works. Only the ports (free ones
instead of 9091/9094/9095, which another program may hold) and the dataset (a tiny ratings file instead of 'synthetic')
are replaced. Every process the commands start is ended by process id and group, and the test checks that none is
left (about 40 s on 2 cores)."""
import json, os, re, subprocess, sys
from pathlib import Path

import pytest

from fedrec_nb.flower import (end_processes, free_port, process_tree, render_commands, secure_commands, still_running,
                              wait_log, wait_port)
from fedrec_nb.synthetic import synthetic_movielens

ROOT = Path(__file__).resolve().parents[1]
LONG_RUNNING = ("flower-superlink", "flower-supernode")


def documented_blocks() -> list:
    "The bash blocks of 06l_flower's 'Many machines' section, in order: the secure steps, then the loopback ones."
    cells = json.loads((ROOT / "nbs" / "06l_flower.ipynb").read_text())["cells"]
    md = next("".join(c["source"]) for c in cells if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("## Many machines"))
    return re.findall(r"```bash\n(.*?)```", md, re.S)


def documented_commands() -> list:
    "The lines of the loopback bash block (plain HTTP) in 06l_flower's 'Many machines' section."
    block = next(b for b in documented_blocks() if "--insecure" in b)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_secure_steps_are_the_ones_secure_deployment_runs():
    "The first block is `secure_commands`' lines, which `SecureDeployment` (and so test_flower_secure.py) runs."
    shown = documented_blocks()[0].rstrip("\n")
    assert shown == render_commands(secure_commands("192.0.2.10", 2, dict(num_clients=2, rounds=20, output_dir="runs/fl")))
    assert "--insecure" not in shown and "--enable-supernode-auth" in shown and "root-certificates" in shown


def left_running(seen: dict) -> list:
    "Processes still running that are one of `seen` (same start time) or in a process group one of them led (Linux /proc)."
    groups, left = {g for p, (g, _) in seen.items() if g == p}, []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try: s = (d / "stat").read_text()
        except OSError: continue
        f = s[s.rindex(")") + 2:].split()
        pid, pgid, start, state = int(d.name), int(f[2]), int(f[19]), f[0]
        if state != "Z" and ((pid in seen and seen[pid][1] == start) or pgid in groups):
            left.append((pid, (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
    return left


def cmdlines(procs: dict) -> str:
    out = []
    for p in procs:
        try: out.append(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError: pass
    return "\n".join(out)


def test_docs_name_two_supernodes_with_their_own_ports():
    lines = documented_commands()
    nodes = [line for line in lines if line.startswith("flower-supernode")]
    assert len(nodes) == 2 and len({re.search(r"--port (\d+)", n).group(1) for n in nodes}) == 2
    assert any(line.startswith("flower-superlink") for line in lines) and "flwr run flower_app" in lines[-1]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="checks processes through Linux's /proc")
def test_documented_two_supernode_deployment_runs_and_leaves_nothing(tmp_path):
    synthetic_movielens(n_users=40, n_items=80, n_ratings=1200, seed=2).ratings.to_csv(tmp_path / "tiny.csv", index=False)
    (tmp_path / "flower_app").symlink_to(ROOT / "flower_app")   # the commands run from the repository root
    ports = {p: str(free_port()) for p in ("9091", "9094", "9095")}
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
               FEDREC_CACHE=str(tmp_path / "cache"), FLWR_HOME=str(tmp_path / "flwr_home"))
    procs, seen = [], {}
    try:
        for k, line in enumerate(documented_commands()):
            for a, b in ports.items(): line = line.replace(a, b)
            line = line.replace("dataset='synthetic'", f"dataset='{tmp_path / 'tiny.csv'}'")
            if line.startswith(LONG_RUNNING):
                log = tmp_path / f"proc{k}.log"
                with open(log, "wb") as f:
                    p = subprocess.Popen(["bash", "-c", line], cwd=tmp_path, env=env, stdout=f, stderr=subprocess.STDOUT,
                                         start_new_session=True)
                procs.append((p, log))
                wait_port(int(re.search(r"--port (\d+)", line).group(1)), 60, p, log)
                continue
            if line.startswith(("flwr run", "FLWR_HOME")):
                for p, log in procs[1:]: wait_log(log, "SuperNode ID", 60, p)   # both registered
                seen.update(process_tree([p.pid for p, _ in procs]))
            r = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
            assert r.returncode == 0, f"{line}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        seen.update(process_tree([p.pid for p, _ in procs]))
        assert "round 1/1:" in r.stdout and "updates accepted" in r.stdout, r.stdout[-3000:]   # the ServerApp's round line
        res = json.loads((tmp_path / "runs" / "fl" / "results.json").read_text())   # output_dir: the SuperLink's folder
        assert len(res["rounds"]) == 1 and res["rounds"][0]["clients_answered"] == 2
        assert "flower-superexec" in cmdlines(seen)   # the SuperExecs were seen, so the check below means something
    finally:
        seen.update(process_tree([p.pid for p, _ in procs]))
        end_processes(seen)
        for p, _ in procs: p.wait(10)
    assert left_running(seen) == []
