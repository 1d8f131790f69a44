"""Seconds per round and peak memory of one client per user, from ML-100K's 943 users to an ML-20M-shaped federation.

    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/bench_scale.py [--sizes 943 6040 20000 138493]
        [--configs fedavg dp median fedmf] [--rounds 2] [--json results/scale.json] [--plot results/scale.png]

Every size runs in a fresh process at 1 torch thread, its configurations one after another (the split, the features and
the clients built once per objective; each configuration from the same initial model), so its peak resident memory
(`ru_maxrss`, the process's high-water mark: a configuration's figure is the peak up to the end of its rounds) is the
size's own. The data (943: ML-100K when it is there, else the synthetic twin; 6,040: `synthetic-ml-1m`; any other
size: `synthetic_ml20m(scale=size / 138,493)`, the ML-20M shape's users and ratings per user, 138,493 being the whole
`synthetic-ml-20m`) is generated once per size by a process of its own (its seconds and peak are printed too) and
cached as a pickle (`--cache`). `python benchmarks/bench_scale.py --merge A.json B.json ... --json C.json --plot C.png`
puts the rows of several runs in one table and one plot. The run is the loop of `run_federated` (`fedrec_nb.federated.run_rounds`: plan, local
training of every client on the vectorized engine, the server's combination and step) on the built-in runtime, without
checkpoints or final results; the figure is the mean `train_seconds` of rounds 2.. (the first is a warm-up; with
`--rounds 1`, the first). Configurations (one client per user, private user rows):

* `fedavg`, `dp`, `median`: the rating objective, biased MF with 8 factors, batch 32, one local epoch (as
  `bench_defences.py`); `dp` is DP-FedAvg (z = 1.8, clip 0.1, every client sampled with probability 1), `median` the
  coordinate-wise median over the clients that touched each coordinate. Both read every client's own update: the touched
  entries (`ClientUpdates`), never a dense clients x parameters matrix.
* `fedmf`: the implicit objective, FedMF as `federated_ranking_figures.py` runs it (64 factors, BPR, 4 negatives,
  3 local epochs of SGD, batch 256), leave-one-out split.

`--json PATH` writes the figures with the thread count, the CPU and torch's version; `--plot PATH` draws seconds per round
and peak memory against clients (log-log).
"""
import argparse, json, os, resource, subprocess, sys, time
from pathlib import Path

from benchjson import add_json_argument, cpu_model, write_json

ROOT = Path(__file__).resolve().parents[1]
ML20M_USERS = 138_493
RATING = dict(model="mf", embedding_dim=8, batch_size=32, lr=0.02, local_epochs=1)
CONFIGS = {
    "fedavg": RATING,
    "dp": dict(RATING, dp_noise_multiplier=1.8, dp_clip=0.1, server_lr=40.0, dp_seeded_noise=True),
    "median": dict(RATING, aggregator="median"),
    "fedmf": dict(objective="implicit", model="mf", loss="bpr", embedding_dim=64, client_optimizer="sgd", lr=1.0,
                  server_lr=1000.0, local_epochs=3, num_negatives=4, batch_size=256),
}


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 1e9


def make_data(size: int):
    "The ratings of `size` one-user clients (see the module's docstring)."
    from fedrec_nb.data import load_dataset
    from fedrec_nb.synthetic import synthetic_ml20m
    if size == 943:
        try: return load_dataset("ml-100k", download=False)
        except (FileNotFoundError, OSError): return load_dataset("synthetic")
    if size == 6040: return load_dataset("synthetic-ml-1m")
    return synthetic_ml20m(scale=size / ML20M_USERS, seed=0)


def child_generate(size: int, path: str):
    import pickle
    t = time.perf_counter()
    d = make_data(size)
    s = time.perf_counter() - t
    with open(path, "wb") as f: pickle.dump(d, f, protocol=pickle.HIGHEST_PROTOCOL)
    stats = json.dumps(dict(users=int(d.ratings.user_id.nunique()), items=len(d.items), ratings=len(d.ratings), name=d.name,
                            gen_seconds=s, gen_peak_gb=peak_gb()))
    Path(path + ".json").write_text(stats)   # with the pickle: a later run of the same size reuses both (--keep)
    print(stats)


def child_run(size: int, configs: str, path: str, rounds: int):
    "Every configuration of `configs` (comma-separated) on one process: the split and the federation built once per objective."
    import pickle
    import torch
    torch.set_num_threads(1)
    from fedrec_nb.defences import Defences
    from fedrec_nb.experiment import Experiment
    from fedrec_nb.features import encode_features
    from fedrec_nb.federated import BuiltinRuntime, RunState, run_rounds
    from fedrec_nb.federation import build_federation, private_names
    from fedrec_nb.client import PrivateState
    from fedrec_nb.parameters import resolve_params
    from fedrec_nb.splits import split_ratings
    from fedrec_nb.strategies import make_strategy
    t0 = time.perf_counter()
    with open(path, "rb") as f: data = pickle.load(f)
    out, feds = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_scale_run", {}
    for config in configs.split(","):
        kw = CONFIGS[config]
        split = "leave_one_out" if kw.get("objective") == "implicit" else "random"
        if split not in feds:   # the split, the features, the clients and the model: once per objective
            train, test = split_ratings(data.ratings, split, 0.1, 0)
            exp = Experiment(data, train, test, encode_features(data), dict(dataset=data.name, seed=0, test_size=0.1, split=split), out)
            base = dict(partition="user", split=split, test_size=0.1, num_clients=int(train.user_id.nunique()), private_user_embeddings=True, client_fraction=1.0,
                        rounds=rounds, seed=0, threads=1, output_dir=str(out), **kw)
            feds[split] = build_federation(base, exp)
        fed = feds[split]
        p = resolve_params({**{k: v for k, v in fed.params.items() if k in base}, **kw})
        net = fed.model
        with torch.no_grad():
            for n, t in net.named_parameters(): t.copy_(fed.initial_params[n])   # every configuration from the same start
        state = RunState({k: v.detach().clone() for k, v in net.named_parameters()})
        strat = make_strategy(p["strategy"], p["server_lr"], p["mu"])
        private = PrivateState(private_names(p, net), state.global_params)
        runtime = BuiltinRuntime(fed, p, net, private, torch.device("cpu"))
        guard = Defences(p, len(fed.clients), net)
        setup_s, setup_peak = time.perf_counter() - t0, peak_gb()
        cpu0 = time.process_time()
        run_rounds(runtime, fed, p, strat, guard, state)
        cpu = (time.process_time() - cpu0) / len(state.history)   # CPU seconds per round, evaluation included: on a loaded machine, nearer a quiet core's wall time
        h = state.history
        timed = h[1:] if len(h) > 1 else h
        print(json.dumps(dict(size=size, config=config, clients=len(fed.clients), train_ratings=len(fed.train[0]),
                              seconds_per_round=sum(r["train_seconds"] for r in timed) / len(timed),
                              round_seconds=[r["train_seconds"] for r in h], eval_seconds=[r["seconds"] - r["train_seconds"] for r in h],
                              engine=runtime.name, setup_seconds=setup_s, setup_peak_gb=setup_peak, peak_gb=peak_gb(),
                              epsilon=h[-1].get("epsilon"), cpu_seconds_per_round=cpu)), flush=True)
        del runtime, guard, state, private
        t0 = time.perf_counter()


def run_child(args, log, on_row=None):
    "Run this script as a child; its JSON lines go to `on_row` as they come (a long size keeps what finished)."
    import tempfile
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, __file__, *map(str, args)], stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        lines = []
        for line in proc.stdout:
            if line.startswith("{"):
                lines.append(json.loads(line))
                if on_row is not None: on_row(lines[-1])
        if proc.wait() != 0:
            err.seek(0); tail = err.read().strip().splitlines()
            log(f"  failed ({' '.join(map(str, args))}): {tail[-1] if tail else proc.returncode}")
            if not lines: return None
    return lines if args[0] == "--child-run" else lines[-1]


def plot(rows, path):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for cfg in dict.fromkeys(r["config"] for r in rows):
        pts = sorted((r["clients"], r["seconds_per_round"], r["peak_gb"]) for r in rows if r["config"] == cfg)
        ax[0].plot([x for x, _, _ in pts], [y for _, y, _ in pts], "o-", label=cfg)
        ax[1].plot([x for x, _, _ in pts], [m for _, _, m in pts], "o-", label=cfg)
    for a, yl in zip(ax, ("seconds per round (1 thread)", "peak RSS (GB)")):
        a.set_xscale("log"); a.set_yscale("log"); a.set_xlabel("one-user clients"); a.set_ylabel(yl); a.grid(True, which="both", alpha=.3)
    ax[0].axhline(30, color="grey", ls=":", lw=1); ax[0].axhline(60, color="grey", ls="--", lw=1)
    ax[1].axhline(12, color="grey", ls=":", lw=1)
    ax[0].legend(); fig.suptitle("cost of a round against clients, up to the ML-20M shape"); fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True); fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[943, 6040, 20_000, ML20M_USERS])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "fedrec_bench_scale"))
    ap.add_argument("--keep", action="store_true", help="keep the generated data in --cache for the next run")
    add_json_argument(ap)
    ap.add_argument("--plot", default=None)
    a = ap.parse_args()
    if any(s < 1 or s > ML20M_USERS for s in a.sizes): ap.error(f"--sizes: each between 1 and {ML20M_USERS:,}")
    Path(a.cache).mkdir(parents=True, exist_ok=True)
    log = lambda s: print(s, flush=True)
    log(f"$ python benchmarks/bench_scale.py {' '.join(sys.argv[1:])}\n1 torch thread, {cpu_model()}, torch "
        f"{__import__('torch').__version__}, {os.cpu_count()} CPUs")
    rows, gens = [], {}
    for size in a.sizes:
        path = os.path.join(a.cache, f"data_{size}.pkl")
        g = (json.loads(Path(path + ".json").read_text()) if os.path.exists(path + ".json") and os.path.exists(path)
             else run_child(["--child-generate", size, path], log))
        if g is None: continue
        gens[size] = g
        log(f"{size:,} users: {g['ratings']:,} ratings x {g['items']:,} items ({g['name']}), generated in {g['gen_seconds']:.1f} s, "
            f"peak {g['gen_peak_gb']:.2f} GB")
        def on_row(r):
            rows.append(r)
            log(f"  {r['config']:7s} {r['clients']:>7,} clients {r['seconds_per_round']:8.2f} s/round (rounds {', '.join(f'{x:.2f}' for x in r['round_seconds'])}), "
                f"peak {r['peak_gb']:.2f} GB (before its rounds {r['setup_peak_gb']:.2f}), setup {r['setup_seconds']:.0f} s, {r['engine']}")
            if a.json: report(gens, rows, a.configs, a.json, None, lambda s: None, a.rounds)   # what finished so far
        run_child(["--child-run", size, ",".join(a.configs), path, a.rounds], log, on_row)
        if not a.keep: os.remove(path); os.remove(path + ".json")
    report(gens, rows, a.configs, a.json, a.plot, log, a.rounds)


def report(gens: dict, rows: list, configs: list, json_path, plot_path, log, rounds):
    "The table of seconds per round and peak memory by size and configuration, its JSON and its plot."
    log("\n| clients | ratings | " + " | ".join(f"{c} s/round | {c} peak GB" for c in configs) + " |")
    log("|---|---|" + "---|---|" * len(configs))
    for size, g in sorted(gens.items(), key=lambda kv: int(kv[0])):
        cells = []
        for c in configs:
            r = next((x for x in rows if int(x["size"]) == int(size) and x["config"] == c), None)
            cells += [f"{r['seconds_per_round']:.2f}", f"{r['peak_gb']:.2f}"] if r else ["-", "-"]
        log(f"| {int(size):,} | {g['ratings']:,} | " + " | ".join(cells) + " |")
    write_json(json_path, dict(child_threads=1, rounds=rounds, data=gens, rows=rows))   # every size ran in a child at 1 thread
    if plot_path and rows: plot(rows, plot_path)


def merge(argv):
    "`--merge A.json B.json ... [--json OUT] [--plot OUT.png]`: one table and plot of several runs' rows."
    ap = argparse.ArgumentParser(prog="bench_scale.py --merge")
    ap.add_argument("inputs", nargs="+"); ap.add_argument("--json"); ap.add_argument("--plot")
    a = ap.parse_args(argv)
    runs = [json.loads(Path(f).read_text()) for f in a.inputs]
    gens = {int(k): v for r in runs for k, v in r["data"].items()}
    rows = [x for r in runs for x in r["rows"]]
    configs = list(dict.fromkeys(x["config"] for x in rows))
    print(f"$ python benchmarks/bench_scale.py --merge {' '.join(argv)}")
    report(gens, rows, configs, a.json, a.plot, print, sorted({r["rounds"] for r in runs}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-generate": child_generate(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-run": child_run(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--merge": merge(sys.argv[2:])
    else: main()
