"""The secure "Many machines" steps of nbs/06l_flower.ipynb run across Linux network namespaces that stand in for
machines, and who is kept out.

A SuperLink in one namespace and two SuperNodes in two others, each with its own address on a private bridge the test
creates, TLS and SuperNode authentication on, started by `SecureDeployment` from `secure_commands`' lines (the lines the
notebook shows; `test_flower_docs.py` checks that the two agree); `flwr run` from the SuperLink's namespace; a fourth
namespace holds the outsiders. Needs root and `ip netns` (skipped elsewhere, with the reason). The namespaces, their
links and every process are removed in a `finally`, also when a test fails; the last test checks that nothing is left.
About 45-60 s on 2 cores; the run itself (`flwr run` across the namespaces against the sequential engine) with
FEDREC_SLOW_TESTS=1, about 40-70 s more."""
import json, os, re, shlex, shutil, subprocess, sys
from pathlib import Path

import pytest

from fedrec_nb.experiment import ParameterError
from fedrec_nb.federated import run_federated
from fedrec_nb.flower import (LocalDeployment, SecureDeployment, connection_line, credential_lines, free_port, node_key_line,
                              run_config_from_params, wait_log)
from fedrec_nb.synthetic import synthetic_movielens
from test_flower_docs import left_running

ROOT = Path(__file__).resolve().parents[1]
SUBNET = "10.47.0"   # inside the namespaces only: their routes never meet the host's
MACHINES = ("server", "node0", "node1", "outsider")
PARAMS = dict(model="mf", partition="iid", num_clients=2, rounds=1, local_epochs=1, batch_size=256, lr=3e-3,
              strategy="fedavg", embedding_dim=8, device="cpu", seed=0, test_size=0.1, split="random")


def _ip(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def why_no_namespaces() -> str:
    "Why network namespaces cannot be made here ('' when they can)."
    if not sys.platform.startswith("linux"): return "network namespaces are Linux only"
    if os.geteuid() != 0: return "creating network namespaces needs root"
    for tool in ("ip", "openssl", "ssh-keygen"):
        if shutil.which(tool) is None: return f"`{tool}` is not installed"
    probe = f"fedrec-probe-{os.getpid()}"
    r = _ip("netns", "add", probe)
    _ip("netns", "del", probe)
    return "" if r.returncode == 0 else f"`ip netns add` failed: {r.stderr.strip()}"


class Machines:
    """One network namespace per name, joined by a bridge in the first (the server): `SUBNET.1` for it, `.10`, `.11`, ...
    for the others. Each is removed by `close` (deleting a namespace deletes its links), also if making one fails."""
    def __init__(self, names):
        self.tag, self.names = f"fedrec{os.getpid()}", list(names)
        self.ns = {m: f"{self.tag}-{m}" for m in self.names}
        self.addr = {m: f"{SUBNET}.{1 if i == 0 else 9 + i}" for i, m in enumerate(self.names)}
        self.made = []

    def run(self, ns, *args):
        r = _ip("-n", ns, *args)
        if r.returncode != 0: raise RuntimeError(f"ip -n {ns} {' '.join(args)}: {r.stderr}")

    def __enter__(self):
        try:
            for m in self.names:
                r = _ip("netns", "add", self.ns[m])
                if r.returncode != 0: raise RuntimeError(f"ip netns add {self.ns[m]}: {r.stderr}")
                self.made.append(self.ns[m]); self.run(self.ns[m], "link", "set", "lo", "up")
            hub = self.ns[self.names[0]]
            self.run(hub, "link", "add", "br0", "type", "bridge")
            self.run(hub, "addr", "add", f"{self.addr[self.names[0]]}/24", "dev", "br0"); self.run(hub, "link", "set", "br0", "up")
            for i, m in enumerate(self.names[1:]):   # a veth pair created inside the two namespaces: nothing in the host's
                r = _ip("link", "add", "eth0", "netns", self.ns[m], "type", "veth", "peer", "name", f"port{i}", "netns", hub)
                if r.returncode != 0: raise RuntimeError(f"veth for {m}: {r.stderr}")
                self.run(hub, "link", "set", f"port{i}", "master", "br0", "up")
                self.run(self.ns[m], "addr", "add", f"{self.addr[m]}/24", "dev", "eth0"); self.run(self.ns[m], "link", "set", "eth0", "up")
        except BaseException:
            self.close(); raise
        return self

    def prefix(self, m) -> list: return ["ip", "netns", "exec", self.ns[m]]

    def close(self):
        for ns in self.made: _ip("netns", "del", ns)
        self.made = []
    def __exit__(self, *exc): self.close()

    def left(self) -> list:
        "Namespaces of this test still listed, and links of the host's namespace named after them (empty: none)."
        listed = _ip("netns", "list").stdout + _ip("link", "show").stdout
        return [ns for ns in self.ns.values() if ns in listed]


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    "Machines and the secure deployment across them; ended (processes, namespaces, files) in a `finally`, also on failure."
    if why := why_no_namespaces(): pytest.skip(why)
    d = tmp_path_factory.mktemp("secure")
    synthetic_movielens(n_users=40, n_items=80, n_ratings=1200, seed=2).ratings.to_csv(d / "tiny.csv", index=False)
    env = dict(FEDREC_CACHE=str(d / "cache"), PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    machines = Machines(MACHINES)
    dep = SecureDeployment(2, d / "fl", env, host=machines.addr["server"], machines={m: machines.prefix(m) for m in MACHINES})
    state = dict(machines=machines, dep=dep, dir=d, seen={})
    def close():
        try:
            if dep.procs: state["seen"] = dep.track()
            dep.close()
        finally:
            machines.close()
    state["close"] = close
    try:
        with machines:
            dep.__enter__()
            start_intruders(dep)
            yield state
    finally:
        close()


def start_intruders(dep):
    """From the outsider's namespace, all at once (each test below reads how its one ended): a SuperNode with a key the
    server never registered, one without a key, one with a registered key that trusts another CA, one on plain HTTP."""
    dep.shell("outsider", node_key_line("stranger", "outsider"))   # a well-formed P-384 key pair
    for line in credential_lines(dep.host, "outsider/other_ca"): dep.shell("outsider", line)   # an impostor's CA
    dep.intrude("stranger", "outsider/stranger", machine="outsider")
    dep.intrude("keyless", None, machine="outsider")
    dep.intrude("other_ca", "certs/node1", ca="outsider/other_ca/ca.crt", machine="outsider")
    dep.intrude("plain", None, machine="outsider", line=f"flower-supernode --insecure --superlink {dep.host}:{dep.port} --max-retries 2 --port {free_port()}")


def outsider(fed, line: str) -> subprocess.CompletedProcess:
    return fed["dep"].shell("outsider", line, timeout=60, check=False)


def node_list(fed) -> list:
    r = fed["dep"].shell("server", "FLWR_HOME=flwr_home flwr supernode list secure --format json")
    return json.loads(r.stdout[r.stdout.index("{"):])["nodes"]


def squeeze(text: str) -> str:
    "The words of a CLI's boxed message, on one line."
    return " ".join(w for w in text.split() if w not in "│╭╮╰╯─" and not set(w) <= set("│╭╮╰╯─"))


def record(fed, name: str, tried: str, code, got: str):
    "Keep what a refused attempt got back (written by `write_refusals`)."
    fed.setdefault("refused", {})[name] = dict(tried=tried, exit_code=code, got=got)


def test_unregistered_key_is_refused(fed):
    dep = fed["dep"]
    code, why = dep.outcome("stranger")
    record(fed, "stranger", "SuperNode with a P-384 key that was never registered", code, why)
    assert code not in (None, 0) and "[code: 2004] Failed to activate SuperNode" in why, why
    assert any(r[0] == "/v1/fleet/activate-node" and r[1] == 2004 for r in dep.refusals()), dep.refusals()
    code, why = dep.outcome("keyless")   # no key at all: it may not register itself
    record(fed, "keyless", "SuperNode without an authentication key", code, why)
    assert code not in (None, 0) and "[code: 2001]" in why, why
    nodes = node_list(fed)
    assert len(nodes) == 2 and {n["status"] for n in nodes} == {"online"}   # only the two registered ones


def test_node_trusting_another_ca_cannot_connect(fed):
    dep = fed["dep"]
    code, why = dep.outcome("other_ca")
    record(fed, "other_ca", "SuperNode with a registered key that trusts another CA", code, why)
    assert code not in (None, 0) and "CERTIFICATE_VERIFY_FAILED" in why, why
    assert len(node_list(fed)) == 2


def test_client_without_the_certificate_cannot_reach_the_apis(fed):
    dep, host, port = fed["dep"], fed["dep"].host, fed["dep"].port
    outsider(fed, connection_line("nocert", host, port, ca=None, home="outsider/home"))   # system CAs only
    r = outsider(fed, "FLWR_HOME=outsider/home flwr supernode list nocert")
    out = (r.stdout + r.stderr).strip()
    record(fed, "cli_nocert", "`flwr supernode list` on a connection without root-certificates", r.returncode, squeeze(out))
    assert r.returncode != 0 and "Connection to the SuperLink is unavailable" in out, out   # flwr hides the TLS reason
    outsider(fed, f"printf '[superlink.plain]\\naddress = \"{host}:{port}\"\\ninsecure = true\\n' > outsider/home/config.toml")
    r = outsider(fed, "FLWR_HOME=outsider/home flwr supernode list plain")   # plain HTTP to the TLS port
    record(fed, "cli_plain", "`flwr supernode list` over plain HTTP (insecure = true)", r.returncode, squeeze(r.stdout + r.stderr))
    assert r.returncode != 0 and "Connection to the SuperLink is unavailable" in r.stdout + r.stderr, r.stdout + r.stderr
    code, why = dep.outcome("plain")
    record(fed, "plain", "SuperNode over plain HTTP (--insecure)", code, why)
    assert code not in (None, 0) and "Server disconnected without sending a response" in why, why


def test_known_limit_tls_does_not_authenticate_clients(fed):
    "What the notebook says TLS leaves open: a client that skips the certificate check reaches the Control API (no mTLS)."
    dep = fed["dep"]
    code = ("import ssl, urllib.request; c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE; "
            f"r = urllib.request.Request('https://{dep.host}:{dep.port}/v1/control/list-nodes', data=b'', method='POST', "
            "headers={'Content-Type': 'application/protobuf', 'Accept': 'application/protobuf'}); "
            "print(urllib.request.urlopen(r, context=c, timeout=20).status)")
    r = outsider(fed, f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}")
    record(fed, "unverified_control", "Control API list-nodes from a client that skips the certificate check", r.returncode,
           f"HTTP {r.stdout.strip()}: answered (TLS does not authenticate clients)")
    assert r.stdout.strip() == "200", r.stdout + r.stderr


@pytest.mark.skipif(not os.environ.get("FEDREC_SLOW_TESTS"), reason="a deployed round across namespaces: about 40-70 s more (FEDREC_SLOW_TESTS=1)")
def test_run_across_machines_matches_sequential(fed):
    dep, d = fed["dep"], fed["dir"]
    p = dict(PARAMS, dataset=str(d / "tiny.csv"))
    seq = run_federated(**dict(p, output_dir=str(d / "seq")), engine="sequential", progress=False, plots=False)
    res = dep.run(ROOT / "flower_app", run_config_from_params(dict(p, output_dir=str(d / "deployed"))), timeout=300)
    assert res["final"]["test_rmse"] == pytest.approx(seq["final"]["test_rmse"], abs=1e-6)
    assert [r["clients_answered"] for r in res["rounds"]] == [2] and "round 1/1:" in dep.last_output
    logs = {n: (dep.workdir / f"{n}.log").read_text(errors="replace") for n in ("supernode0", "supernode1", "stranger", "keyless", "other_ca", "plain")}
    assert all("Receiving: train message" in logs[n] for n in ("supernode0", "supernode1"))   # so the check below means something
    assert not any("Receiving:" in logs[n] for n in ("stranger", "keyless", "other_ca", "plain"))   # no message reached a refused node


@pytest.mark.skipif(not os.environ.get("FEDREC_SLOW_TESTS"), reason="restarts a SuperNode: about 30 s more (FEDREC_SLOW_TESTS=1)")
def test_rotated_key_replaces_the_old_one(fed):
    "The notebook's key rotation: a new key registered, the SuperNode restarted with it, the old id unregistered: the old key is refused."
    dep = fed["dep"]
    old_id = re.search(r"SuperNode ID: (\d+)", (dep.workdir / "supernode1.log").read_text()).group(1)
    dep.shell("node1", node_key_line("node1.new"))
    dep.shell("server", "FLWR_HOME=flwr_home flwr supernode register certs/node1.new.pub secure")
    dep.kill_node(1)
    dep.intrude("node1_rotated", "certs/node1.new", machine="node1")
    wait_log(dep.workdir / "node1_rotated.log", "SuperNode ID", 60)
    dep.shell("server", f"FLWR_HOME=flwr_home flwr supernode unregister {old_id} secure")
    status = {n["node-id"]: n["status"] for n in node_list(fed)}
    assert status[old_id] == "unregistered" and list(status.values()).count("online") == 2, status
    dep.intrude("old_key", "certs/node1", machine="node1")
    code, why = dep.outcome("old_key")
    record(fed, "old_key", "SuperNode with a key unregistered after rotation", code, why)
    assert code not in (None, 0) and "[code: 2004]" in why, why


def write_refusals(fed):
    "The refused attempts and what each got back, for benchmarks/results/secure_refusals.json (FEDREC_WRITE_FIGURES=1)."
    if not os.environ.get("FEDREC_WRITE_FIGURES"): return
    dep = fed["dep"]
    out = dict(superlink_refusals=[list(r) for r in dep.refusals()], refused=fed.get("refused", {}))
    (ROOT / "benchmarks" / "results" / "secure_refusals.json").write_text(json.dumps(out, indent=1) + "\n")


def test_insecure_beyond_loopback_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="host='10.47.0.1' with --insecure: plain HTTP beyond loopback"):
        LocalDeployment(2, tmp_path, host="10.47.0.1")
    assert not any(tmp_path.iterdir())   # refused before any work


def test_nothing_left_behind(fed):
    "Runs last: ends the deployment and the namespaces, then checks that no process, namespace, link or key is left."
    write_refusals(fed)
    fed["close"]()
    assert fed["seen"] and left_running(fed["seen"]) == []
    assert fed["machines"].left() == []
    assert not (fed["dep"].workdir / "certs").exists() and not (fed["dep"].workdir / "flwr_home").exists()
