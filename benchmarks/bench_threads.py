"""How many torch threads a run should use (the `threads` parameter's default): the same rounds at 1 and at 2 (or more)
threads, alternating in one process, so a busy machine loads both alike.

    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/bench_threads.py [--threads 1,2] [--repeats 3] [--json PATH]

Two workloads on ML-100K: notebook 06's default run (mf, 10 IID clients, the vectorized engine, 3 local epochs) and
943 one-user clients (mf with 8 factors, private user rows, the sequential engine, 1 local epoch). Each figure is the
median over repeats of a round's training seconds (`train_seconds` of the round records, rounds 2 on: round 1 warms up)."""
import argparse, os, statistics, tempfile

from benchjson import add_json_argument, write_json


from fedrec_nb.federated import run_federated

WORKLOADS = {
    "notebook 06 default (10 IID clients, vectorized)": dict(),
    "943 one-user clients (sequential)": dict(partition="user", num_clients=943, embedding_dim=8, batch_size=32, lr=0.02,
                                               local_epochs=1, private_user_embeddings=True, engine="sequential"),
}


def round_seconds(threads: int, extra: dict, rounds: int, folder: str) -> float:
    res = run_federated(dataset="ml-100k", device="cpu", rounds=rounds, threads=threads, output_dir=folder, progress=False,
                        plots=False, ranking=False, **extra)
    return statistics.median(r["train_seconds"] for r in res["rounds"][1:])


def main(argv=None):
    ap = argparse.ArgumentParser(); ap.add_argument("--threads", default="1,2"); ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3); add_json_argument(ap); a = ap.parse_args(argv)
    counts = [int(t) for t in a.threads.split(",")]
    out = dict(omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), workloads={})
    for name, extra in WORKLOADS.items():
        times = {t: [] for t in counts}
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(a.repeats):
                for t in counts:   # alternating: the machine's load falls on every thread count alike
                    times[t].append(round_seconds(t, extra, a.rounds, os.path.join(tmp, f"{t}_{rep}")))
        med = {t: statistics.median(v) for t, v in times.items()}
        out["workloads"][name] = dict(seconds_per_round=med, all=times)
        base = med[counts[0]]
        print(f"{name}: " + ", ".join(f"{t} thread{'s' if t > 1 else ''} {s:.3f} s ({s / base:.2f}x)" for t, s in med.items()))
    write_json(a.json, out)


if __name__ == "__main__":
    main()
