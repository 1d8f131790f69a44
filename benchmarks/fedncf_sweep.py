"""FedNCF against central NeuMF (issue 22, figure 4): which settings close the gap, measured on the validation split.

    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/fedncf_sweep.py                    # every SWEEP entry, validation
    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/fedncf_sweep.py --only fedadam_sgd  # some entries (added to the log)
    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/fedncf_sweep.py --test fedadam_sgd --seeds 0 1 2   # test figures

FedNCF is `model="ncf"` (NeuMF: GMF and MLP towers) with one client per user of ML-100K, the implicit objective, private user
rows: `benchmarks/federated_ranking_figures.py`'s CONFIGS["fedncf"] and COMMON, which every SWEEP entry overrides. The
validation split is each user's second-latest rating, taken by `split_ratings(train, "leave_one_out")` from the training
rows alone (as `implicit_figures.py --sweep` tunes central NeuMF), seed 0; the test items are used only by `--test`.
Each run prints a line (sampled and full HR@10 / NDCG@10 at the last round, the best round and its sampled HR@10) and is
appended to benchmarks/results/fedncf_sweep_ml-100k.log and .csv (`--json PATH`: the rows with the machine)."""
import argparse, sys, time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchjson import add_json_argument, write_json  # noqa: E402
from federated_ranking_figures import CONFIGS, run_one  # noqa: E402
from fedrec_nb.experiment import atomic_write, prepare_experiment  # noqa: E402
from fedrec_nb.splits import split_ratings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SWEEP = {   # name: overrides of CONFIGS["fedncf"] (Adam clients lr 0.05, FedAvg server_lr 10, 1 local epoch, d 32, 4 negatives)
    # plain SGD clients under FedAvg at FedMF's server_lr 1000 diverge (the issue-12 sweep); server-side Adam normalises each
    # coordinate, but its tau 1e-3 swamps SGD clients' averaged item deltas (about lr x gradient / N)
    "fedadam_sgd": dict(client_optimizer="sgd", lr=0.1, strategy="fedadam", server_lr=0.03, rounds=30),
    # Adam clients, Adam at the server (its state, unlike the clients', lasts across rounds)
    "fedadam_adam": dict(strategy="fedadam", server_lr=0.03, rounds=30),
    "fedadam_adam_r60": dict(strategy="fedadam", server_lr=0.03, rounds=60),
    "fedadam_adam_r120": dict(strategy="fedadam", server_lr=0.03, rounds=120),
    "fedadam_adam_r200": dict(strategy="fedadam", server_lr=0.03, rounds=200),
    "fedadam_adam_slr0.1": dict(strategy="fedadam", server_lr=0.1, rounds=30),
    "fedadam_adam_le2": dict(strategy="fedadam", server_lr=0.03, local_epochs=2, rounds=30),
    # more negatives per positive
    "base_neg8": dict(num_negatives=8, rounds=30),
    "base_neg8_r45": dict(num_negatives=8, rounds=45),
    "fedadam_neg8": dict(strategy="fedadam", server_lr=0.03, num_negatives=8, rounds=30),
    "fedadam_neg8_r50": dict(strategy="fedadam", server_lr=0.03, num_negatives=8, rounds=50),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=None, choices=list(SWEEP), help="run only these SWEEP entries")
    ap.add_argument("--test", default=None, choices=list(SWEEP), help="the test figures of this entry (not the validation)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="--test: seeds (the sweep uses seed 0)")
    ap.add_argument("--rounds", type=int, default=None, help="override the entry's number of rounds")
    ap.add_argument("--engine", default="vectorized", choices=["vectorized", "sequential"])
    ap.add_argument("--tag", default="", help="suffix of the log and CSV names (parallel runs write separate files)")
    add_json_argument(ap)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    exp = prepare_experiment("ml-100k", None, 42, 0.1, "leave_one_out", "runs/federated_ranking")
    if a.test is None:   # validation: each user's second-latest rating, from the training rows alone
        tr, va = split_ratings(exp.train, "leave_one_out")
        exp = replace(exp, train=tr, test=va)
    stem = RESULTS / f"fedncf_sweep_ml-100k{'_' + a.tag if a.tag else ''}"
    csv, log = stem.with_suffix(".csv"), stem.with_suffix(".log")
    old = pd.read_csv(csv).to_dict("records") if csv.exists() else []
    lines = [*(log.read_text().splitlines() if log.exists() else []), "",
             f"$ python benchmarks/fedncf_sweep.py {' '.join(argv if argv is not None else sys.argv[1:])}",
             f"{len(exp.train):,} training interactions, {len(exp.test):,} {'test' if a.test else 'validation'} items, "
             f"{exp.train.user_id.nunique():,} one-user clients, engine {a.engine}, 1 thread"]
    print("\n".join(lines[-2:]), flush=True)
    names = [a.test] if a.test else (a.only or list(SWEEP))
    jobs = [(n, s) for n in names for s in (a.seeds if a.test else [0])]
    rows = []
    for k, (name, seed) in enumerate(jobs):
        cfg = {**CONFIGS["fedncf"], **SWEEP[name], **({"rounds": a.rounds} if a.rounds else {}), "threads": 1}
        t0 = time.perf_counter()
        row = dict(entry=name, split="test" if a.test else "validation",
                   **run_one("fedncf", cfg, exp, "ml-100k", seed, a.engine, "cpu"))
        rows.append(row)
        line = (f"[{k + 1}/{len(jobs)}] {name} seed {seed} ({SWEEP[name]}): sampled HR@10 {row['sampled_hr10']:.4f} "
                f"NDCG@10 {row['sampled_ndcg10']:.4f}; full HR@10 {row['full_hr10']:.4f}; best round {row['best_round']} "
                f"sampled HR@10 {row['best_sampled_hr10']:.4f}; {row['seconds_per_round']:.2f} s/round ({time.perf_counter() - t0:.0f} s)")
        print(line, flush=True); lines.append(line)
        atomic_write(csv, lambda p: pd.DataFrame(old + rows).to_csv(p, index=False))
        atomic_write(log, lambda p: Path(p).write_text("\n".join(lines) + "\n"))
    if a.test and len(rows) > 1:
        df = pd.DataFrame(rows)[["sampled_hr10", "sampled_ndcg10", "full_hr10", "full_ndcg10"]]
        line = "mean ± std: " + ", ".join(f"{c} {df[c].mean():.4f} ± {df[c].std(ddof=0):.4f}" for c in df)
        print(line); lines.append(line)
        atomic_write(log, lambda p: Path(p).write_text("\n".join(lines) + "\n"))
    write_json(a.json, dict(rows=rows))


if __name__ == "__main__":
    sys.exit(main())
