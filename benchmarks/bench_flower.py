"""Flower against the built-in engines: the same figures, and what each runtime costs per round.

    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/bench_flower.py [--figures 1,2,3,4] [--rounds 3] [--json PATH]

1. Equivalence: same seed, partition and strategy, `--rounds` rounds, for 10 IID clients and 100 user clients, models mf and
   hybrid, fedavg and fedadam, private user rows off and on: the final test RMSE of Flower's simulation runtime against the
   sequential engine (issue 10 asks for agreement within 1e-6).
2. Loopback deployment: a SuperLink and 2 SuperNodes on 127.0.0.1 (`LocalDeployment`, `flwr run flower_app`), 2 rounds on
   ML-100K: final RMSE against the sequential engine, and seconds per round.
3. Cost: seconds per round of Flower's simulation against the sequential and vectorized engines at 10 and 100 clients
   (rounds after the first, which in Flower also pays for starting Ray and for each node loading its data), with ratios.
4. Dead time: a deployed round of fedrec_nb against an empty app's round (`benchmarks/flower_empty`: one message per node,
   answered at once by a ClientApp that imports only flwr), the same loopback federation, the same flwr, one after the
   other in this process; `--rounds` rounds each (at least 3), the mean of the rounds after the first.
Every run is ML-100K, 90/10 random split, seed 0, 1 local epoch, batch 256, embedding 16, CPU.
"""
import argparse, os, statistics, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "FEDREC_DATA" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["FEDREC_DATA"] = str((ROOT.parent / "shared" / "data").resolve())

from benchjson import add_json_argument, write_json   # noqa: E402
from fedrec_nb.federated import run_federated
from fedrec_nb.flower import LocalDeployment, run_config_from_params, run_flower

BASE = dict(dataset="ml-100k", seed=0, test_size=0.1, split="random", local_epochs=1, batch_size=256, lr=3e-3,
            embedding_dim=16, device="cpu")


def later_rounds(res):
    "Mean seconds of the rounds after the first (train + evaluation)."
    s = [h["seconds"] for h in res["rounds"][1:]]
    return statistics.mean(s) if s else float("nan")


def builtin(p, engine, d):
    return run_federated(**dict(p, output_dir=f"{d}/{engine}"), engine=engine, progress=False, plots=False)


def figure1(rounds, d):
    print(f"\n1. Equivalence, {rounds} rounds: final test RMSE, sequential engine against Flower's simulation")
    print("| clients | model | strategy | private rows | sequential | flower | difference |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    worst, rows = 0.0, []
    for part, k in (("iid", 10), ("user", 100)):
        for model in ("mf", "hybrid"):
            for strategy in ("fedavg", "fedadam"):
                for private in (False, True):
                    p = dict(BASE, partition=part, num_clients=k, model=model, strategy=strategy, rounds=rounds,
                             private_user_embeddings=private)
                    a = builtin(p, "sequential", d)
                    b = run_flower(dict(p, output_dir=f"{d}/flower"))
                    diff = abs(a["final"]["test_rmse"] - b["final"]["test_rmse"])
                    worst = max(worst, diff)
                    rows.append(dict(clients=k, partition=part, model=model, strategy=strategy, private_rows=private,
                                     sequential_rmse=a["final"]["test_rmse"], flower_rmse=b["final"]["test_rmse"], difference=diff))
                    print(f"| {k} {part} | {model} | {strategy} | {private} | {a['final']['test_rmse']:.10f} | "
                          f"{b['final']['test_rmse']:.10f} | {diff:.1e} |", flush=True)
    print(f"largest difference: {worst:.1e} ({'within' if worst <= 1e-6 else 'NOT within'} 1e-6)")
    return dict(rows=rows, largest_difference=worst)


def figure2(d):
    print("\n2. Loopback deployment: 1 SuperLink + 2 SuperNodes on 127.0.0.1, 2 IID clients, mf, fedavg, 2 rounds")
    p = dict(BASE, partition="iid", num_clients=2, model="mf", strategy="fedavg", rounds=2)
    a = builtin(p, "sequential", d)
    t0 = time.perf_counter()
    with LocalDeployment(num_nodes=2, workdir=Path(d) / "deploy") as dep:
        t_up = time.perf_counter() - t0
        t1 = time.perf_counter()
        b = dep.run(ROOT / "flower_app", run_config_from_params(dict(p, output_dir=f"{d}/deployed")), timeout=600)
        t_run = time.perf_counter() - t1
    diff = abs(a["final"]["test_rmse"] - b["final"]["test_rmse"])
    print(f"final test RMSE: sequential {a['final']['test_rmse']:.10f}, deployed {b['final']['test_rmse']:.10f}, "
          f"difference {diff:.1e}")
    print(f"seconds per round (ServerApp's clock): {[round(h['seconds'], 2) for h in b['rounds']]}; "
          f"`flwr run` {t_run:.1f} s for {len(b['rounds'])} rounds and the final evaluation; start of the federation {t_up:.1f} s")
    return dict(sequential_rmse=a["final"]["test_rmse"], deployed_rmse=b["final"]["test_rmse"], difference=diff,
                round_seconds=[h["seconds"] for h in b["rounds"]], flwr_run_seconds=t_run, start_seconds=t_up)


def figure4(rounds, d):
    rounds = max(rounds, 3)
    print(f"\n4. Deployed round against an empty ClientApp's: 1 SuperLink + 2 SuperNodes on 127.0.0.1, {rounds} rounds each")
    p = dict(BASE, partition="iid", num_clients=2, model="mf", strategy="fedavg", rounds=rounds)
    with LocalDeployment(num_nodes=2, workdir=Path(d) / "deploy4") as dep:
        empty = dep.run(ROOT / "benchmarks" / "flower_empty", dict(rounds=rounds, num_clients=2, output_dir=f"{d}/empty"), timeout=600)
        ours = dep.run(ROOT / "flower_app", run_config_from_params(dict(p, output_dir=f"{d}/deployed4")), timeout=600)
    e, o = later_rounds(empty), later_rounds(ours)
    print("| app | seconds per round (rounds 2..) | every round |")
    print("| --- | --- | --- |")
    print(f"| empty ClientApp | {e:.2f} | {[round(h['seconds'], 2) for h in empty['rounds']]} |")
    print(f"| fedrec_nb (mf, 2 IID clients) | {o:.2f} | {[round(h['seconds'], 2) for h in ours['rounds']]} |")
    print(f"fedrec_nb's round is {o - e:+.2f} s beside the empty app's (aim: within 1.5 s)", flush=True)
    return dict(rounds=rounds, nodes=2, empty_seconds_per_round=e, fedrec_seconds_per_round=o, difference_seconds=o - e,
                empty_rounds=[h["seconds"] for h in empty["rounds"]], fedrec_rounds=[h["seconds"] for h in ours["rounds"]])


def figure3(d):
    print("\n3. Seconds per round (mean of the rounds after the first), mf, fedavg, shared rows")
    rows = []
    print("| clients | sequential | vectorized | flower simulation | flower / sequential | flower / vectorized |")
    print("| --- | --- | --- | --- | --- | --- |")
    for part, k in (("iid", 10), ("user", 100)):
        p = dict(BASE, partition=part, num_clients=k, model="mf", strategy="fedavg", rounds=4)
        s, v = later_rounds(builtin(p, "sequential", d)), later_rounds(builtin(p, "vectorized", d))
        f = later_rounds(run_flower(dict(p, output_dir=f"{d}/flower")))
        print(f"| {k} {part} | {s:.3f} | {v:.3f} | {f:.3f} | {f / s:.1f}x | {f / v:.1f}x |", flush=True)
        rows.append(dict(clients=k, partition=part, sequential_s=s, vectorized_s=v, flower_simulation_s=f))
    return dict(rows=rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figures", default="1,2,3,4")
    ap.add_argument("--rounds", type=int, default=3)
    add_json_argument(ap)
    a = ap.parse_args()
    figs = {int(x) for x in a.figures.split(",")}
    out = {}
    with tempfile.TemporaryDirectory() as d:
        if 1 in figs: out["equivalence"] = figure1(a.rounds, d)
        if 2 in figs: out["loopback_deployment"] = figure2(d)
        if 3 in figs: out["cost"] = figure3(d)
        if 4 in figs: out["dead_time"] = figure4(a.rounds, d)
    write_json(a.json, out)
