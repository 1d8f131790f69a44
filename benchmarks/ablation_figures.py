"""The figures of nbs/07b_ablation.ipynb: feature ablation of `expanded` and `hybrid`, central and federated, and the
film's age (`recency`) on the temporal split.

    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/ablation_figures.py [--seeds 0,1,2] [--threads 1]

Protocol. Ablation: ML-100K, random 90/10 split (split seed 42, the same for every run), features with the film's age
(`encode_features(recency=True)`). Each of `expanded` and `hybrid` is trained with all inputs and without each input group of
`fedrec_nb.models.INPUT_GROUPS` in turn (`build_model(drop=)`, same initial parameters and batches as the full model of the
same seed), for every seed, centrally (`fedrec_nb.ablation.CENTRAL`: `train_central`, 5 epochs, batch 1024, Adam lr 3e-3)
and federated (`fedrec_nb.ablation.FEDERATED`: `run_federated`, 10 IID clients, FedAvg, 10 rounds of 1 local epoch,
batch 256, lr 3e-3, vectorized engine); embedding width 32. Held-out RMSE and MAE (predictions clipped to 1-5) after the
last epoch / round. Recency: the `temporal` split (the last 10% of ratings in time held out), central only, each model with
and without `recency`, same settings and seeds.

Every run is a row of benchmarks/results/ablation_runs.csv (the notebook reads it); the tables go to stdout and to
benchmarks/results/ablation_figures.log. Finished runs are kept in runs/ablation_figures/partial.csv, so a run that was
stopped resumes where it was (`--fresh` starts over).
"""
import argparse, io, sys, time

from benchjson import add_json_argument, write_json
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import torch

from fedrec_nb.ablation import CENTRAL, FEDERATED, ablation_experiment, ablation_table, central_run, federated_run, format_table
from fedrec_nb.experiment import atomic_write
from fedrec_nb.models import INPUT_GROUPS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PARTIAL = ROOT / "runs" / "ablation_figures" / "partial.csv"
MODELS = ("expanded", "hybrid")


def markdown(df) -> str:
    "A DataFrame as a markdown table (without the tabulate package)."
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)])


def plan(seeds):
    "Every run: (experiment, split, setting, model, dropped, seed)."
    out = []
    for setting in ("central", "federated"):
        for model in MODELS:
            for dropped in ("none", *INPUT_GROUPS):
                out += [("ablation", "random", setting, model, dropped, s) for s in seeds]
    for model in MODELS:
        for dropped in ("none", "recency"):
            out += [("recency_temporal", "temporal", "central", model, dropped, s) for s in seeds]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the models and batches (the split stays)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady figures on a shared machine)")
    ap.add_argument("--fresh", action="store_true", help=f"ignore the finished runs kept in {PARTIAL.relative_to(ROOT)}")
    add_json_argument(ap)
    a = ap.parse_args()
    try: seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError: sys.exit(f"--seeds {a.seeds!r}: give comma-separated integers, e.g. 0,1,2")
    if not seeds: sys.exit("--seeds: give at least one seed")
    if a.threads < 1: sys.exit(f"--threads {a.threads}: must be at least 1")
    torch.set_num_threads(a.threads)
    key = ["experiment", "setting", "model", "dropped", "seed"]
    done = pd.read_csv(PARTIAL, keep_default_na=False) if PARTIAL.exists() and not a.fresh else pd.DataFrame(columns=key)
    rows = done.to_dict("records")
    have = {tuple(r[k] for k in key) for r in rows}
    exps, t0 = {}, time.time()
    todo = [p for p in plan(seeds) if (p[0], p[2], p[3], p[4], p[5]) not in have]
    print(f"{len(todo)} runs to do ({len(rows)} kept from {PARTIAL.relative_to(ROOT)})", flush=True)
    for n, (experiment, split, setting, model, dropped, seed) in enumerate(todo, 1):
        if split not in exps: exps[split] = ablation_experiment(split=split, output_dir=ROOT / "runs" / "ablation_figures" / split)
        fn, kw = (central_run, CENTRAL) if setting == "central" else (federated_run, FEDERATED)
        r = fn(exps[split], model, () if dropped == "none" else (dropped,), seed, **kw)
        rows.append(dict(experiment=experiment, split=split, setting=setting, model=model, dropped=dropped, seed=seed, **r))
        atomic_write(PARTIAL, lambda t: pd.DataFrame(rows).to_csv(t, index=False))
        print(f"[{n}/{len(todo)}] {experiment} {setting} {model} no {dropped} seed {seed}: RMSE {r['test_rmse']:.4f} "
              f"MAE {r['test_mae']:.4f} ({r['seconds']:.1f} s)", flush=True)
    runs = pd.DataFrame(rows)
    runs = runs[[tuple(r) in {(p[0], p[2], p[3], p[4], p[5]) for p in plan(seeds)} for r in runs[key].values]]
    log = io.StringIO()
    with redirect_stdout(log):
        print(__doc__.split("Every run")[0].strip())
        print(f"seeds {seeds}; torch threads {a.threads}; central {CENTRAL}; federated {FEDERATED}")
        print(f"compute: {runs.seconds.sum() / 60:.1f} min over {len(runs)} runs (the runs' own seconds, kept in the CSV; "
              f"this invocation: {(time.time() - t0) / 60:.1f} min)")
        for experiment, title in (("ablation", "Ablation, ML-100K random 90/10 (change vs all inputs; positive = worse without)"),
                                  ("recency_temporal", "Film's age on the temporal split, central (change vs with recency)")):
            t = format_table(ablation_table(runs[runs.experiment == experiment]))
            print(f"\n{title}: mean ± std over {len(seeds)} seeds\n")
            print(markdown(t))
    text = log.getvalue()
    print(text)
    atomic_write(RESULTS / "ablation_runs.csv", lambda t: runs.to_csv(t, index=False))
    atomic_write(RESULTS / "ablation_figures.log", lambda t: Path(t).write_text(text))
    print(f"wrote {(RESULTS / 'ablation_runs.csv').relative_to(ROOT)} and {(RESULTS / 'ablation_figures.log').relative_to(ROOT)}")
    write_json(a.json, dict(seeds=seeds, central=CENTRAL, federated=FEDERATED, runs=runs.to_dict(orient="records")))


if __name__ == "__main__":
    main()
