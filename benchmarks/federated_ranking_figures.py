"""Federated top-N figures (issue 12): FedMF, FedNCF and the PFedRec-style model with one client per user on the implicit
objective, HR@10 / NDCG@10 under the `sampled` (99 shared negatives) and `full` protocols, mean and std over seeds.

    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/federated_ranking_figures.py                 # the table, 3 seeds
    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/federated_ranking_figures.py --sweep         # the light tuning
    python benchmarks/federated_ranking_figures.py --dataset synthetic-ml-1m --seeds 0 --rounds 5         # ML-1M-shaped, end to end
    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/federated_ranking_figures.py --protocol pfedrec --central   # PFedRec's protocol

`--protocol pfedrec` evaluates as PFedRec's official code does (`fedrec_nb.implicit.EVAL_PROTOCOLS`): each user's latest and
second-latest ratings as test and validation (ties: the earlier row), 99 + 99 disjoint negatives, the test figure of the round
(epoch, for the central models) with the best validation HR@10; the PFedRec-style model trains with PFedRec's settings
(`PFEDREC_SETTINGS`). `--central` adds most-popular, BPR-MF and NeuMF (`CENTRAL_CONFIGS`) under the same protocol.

The split is leave-one-out (`split_ratings`: each user's latest rating, ties by row order) and is the same for every seed; the
seed changes the model's initialisation, the clients' negatives and batch orders. `--sweep` tunes on a validation split (each
user's second-latest rating, taken the same way from the training rows), never on the test items, with seed 0. Every run
writes one CSV row (`benchmarks/results/federated_ranking_<dataset>.csv`, or `..._sweep.csv`) and a line of the log."""
import argparse, json, sys, tempfile, time
from dataclasses import replace
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchjson import add_json_argument, write_json  # noqa: E402
from fedrec_nb.splits import split_ratings  # noqa: E402
from fedrec_nb.experiment import atomic_write, prepare_experiment  # noqa: E402
from fedrec_nb.federated import run_federated  # noqa: E402
from fedrec_nb.implicit import CENTRAL_CONFIGS, EVAL_PROTOCOLS, central_topn, evaluate_topn, model_scorer, popularity_scorer, protocol_data  # noqa: E402
from fedrec_nb.records import best_round, select_final  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COMMON = dict(partition="user", objective="implicit", private_user_embeddings=True, num_negatives=4, batch_size=256)
CONFIGS = {   # one client per user; the user side stays on the device (private rows) for all three; chosen by --sweep (the log)
    # plain SGD clients (the literature's): an item row's averaged step is server_lr * lr / N * (its summed gradient), central
    # full-batch gradient descent on the mean loss with learning rate server_lr * lr, hence server_lr 1000
    "fedmf": dict(model="mf", loss="bpr", embedding_dim=64, client_optimizer="sgd", lr=1.0, server_lr=1000.0, local_epochs=3, rounds=60),
    # NeuMF's dense layers diverge under that server learning rate (the sweep): Adam clients, server_lr 10, the best round's count
    "fedncf": dict(model="ncf", loss="bce", embedding_dim=32, lr=0.05, server_lr=10.0, local_epochs=1, rounds=50),
    "pfedrec": dict(model="pfedrec", loss="bce", embedding_dim=32, client_optimizer="sgd", lr=1.0, server_lr=1000.0, local_epochs=3, rounds=35),
}
SWEEP = {   # --sweep: each entry overrides the run's CONFIGS entry; Adam clients for 30 rounds, the best ones longer, then SGD clients
    "fedmf": [dict(server_lr=s, lr=lr, rounds=30) for s in (10.0, 50.0) for lr in (0.01, 0.05)]
             + [dict(lr=0.05, server_lr=10.0, rounds=80), dict(lr=0.05, server_lr=10.0, rounds=80, local_epochs=2)],
    "fedncf": [dict(server_lr=s, lr=lr, rounds=30) for s in (10.0, 50.0) for lr in (0.01, 0.05)] + [dict(lr=0.05, server_lr=10.0, rounds=80)],
    "pfedrec": [dict(server_lr=s, lr=lr, rounds=30) for s in (10.0, 50.0) for lr in (0.01, 0.05)]
               + [dict(lr=0.05, server_lr=10.0, rounds=80), dict(lr=0.05, server_lr=10.0, rounds=80, local_epochs=2),
                  dict(lr=0.1, server_lr=10.0, rounds=80)],
}
# PFedRec's official code on ML-100K (issue 22): plain SGD, score function lr 0.1, item embedding lr 0.1 x 1,682 x 80, the server's
# unweighted mean, 1 local epoch, 4 fresh negatives per positive per round, every client every round, 100 rounds; its batch of 256
# counts rows (positives and negatives mixed), fedrec_nb's counts positives with their 4 negatives each: 51 positives, 255 rows
PFEDREC_SETTINGS = dict(model="pfedrec", loss="bce", embedding_dim=32, client_optimizer="sgd", lr=0.1, item_lr=13456.0,   # 0.1 x 1,682 x 80
                        strategy="fedavg_unweighted", local_epochs=1, batch_size=51, rounds=100)
SGD = dict(client_optimizer="sgd", lr=1.0, server_lr=1000.0, local_epochs=3, rounds=60)   # the literature's plain SGD clients
for name in SWEEP: SWEEP[name].append(SGD)
SWEEP["pfedrec"] += [{**SGD, "embedding_dim": 64}, {**SGD, "local_epochs": 5}]   # after the table's runs: wider, more local epochs

def run_one(name, cfg, exp, dataset, seed, engine, device, protocol="default"):
    "One federated run; its figures as a CSV row (under a protocol with validation: those of the best validation round)."
    cfg = {**COMMON, **cfg}
    n_users = exp.train.user_id.nunique()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        r = run_federated(dataset=dataset, split="leave_one_out", num_clients=n_users, engine=engine, device=device, seed=seed,
                          output_dir=d, plots=False, progress=False, ranking=False, experiment=exp, protocol=protocol, **cfg)
        wall = time.perf_counter() - t0
    f, h = r["final"], pd.DataFrame(r["rounds"])
    return dict(run=name, seed=seed, **{k: v for k, v in cfg.items() if k not in ("partition", "objective", "private_user_embeddings")}, clients=n_users,
                sampled_hr10=f["test_hr@10"], sampled_ndcg10=f["test_ndcg@10"], full_hr10=f["test_hr@10_full"], full_ndcg10=f["test_ndcg@10_full"],
                **{f"{k}_global_items": f.get(f"test_{k2}_global_items", float("nan"))
                   for k, k2 in (("sampled_hr10", "hr@10"), ("sampled_ndcg10", "ndcg@10"), ("full_hr10", "hr@10_full"), ("full_ndcg10", "ndcg@10_full"))},
                best_round=int(h["test_hr@10"].idxmax()) + 1, best_sampled_hr10=float(h["test_hr@10"].max()),
                protocol=protocol, selected_round=f.get("selected_round"), last_sampled_hr10=f.get("last_test_hr@10", f["test_hr@10"]),
                valid_hr10=f.get("selected_valid_hr@10", float("nan")),
                seconds_per_round=float(h["seconds"].mean()), eval_seconds_per_round=float(h["eval_seconds"].mean()),
                train_seconds_per_round=float(h["train_seconds"].mean()), engine=f["engine"], device=f["device"], wall_seconds=wall)

def central_one(name, test_data, valid_data, features, seed, device="cpu", protocol="pfedrec"):
    """A central model under a protocol with validation: trained as `central_topn` trains it (its training negatives avoid the
    validation items, rated in `test_data`), scored after every epoch; the test figures of the epoch with the best validation
    HR@10 (`best_round`, `select_final`: the rule the federated runs follow). Most-popular has no epochs: its one figure."""
    hist = []
    def figures(fn):
        return {f"test_{m}{s}": evaluate_topn(fn, test_data, p)[m] for p, s in (("sampled", ""), ("full", "_full")) for m in ("hr@10", "ndcg@10")}
    def on_epoch(epoch, model, h):
        hist.append({"epoch": epoch, "valid_hr@10": evaluate_topn(model_scorer(model), valid_data)["hr@10"], **figures(model_scorer(model))})
    t0 = time.perf_counter()
    if name == "most_popular":
        f = dict(figures(popularity_scorer(test_data)), selected_round=None,
                 **{"selected_valid_hr@10": evaluate_topn(popularity_scorer(valid_data), valid_data)["hr@10"]})
    else:
        central_topn(name, test_data, features, seed=seed, device=device, on_epoch=on_epoch)
        test_keys = lambda h: {k: v for k, v in h.items() if k.startswith("test_")}
        f = select_final(hist, "valid_hr@10", test_keys(hist[best_round(hist, "valid_hr@10")]), test_keys(hist[-1]))
    return dict(run=name, seed=seed, protocol=protocol, clients=1, sampled_hr10=f["test_hr@10"], sampled_ndcg10=f["test_ndcg@10"],
                full_hr10=f["test_hr@10_full"], full_ndcg10=f["test_ndcg@10_full"], selected_round=f["selected_round"],
                last_sampled_hr10=f.get("last_test_hr@10", f["test_hr@10"]), valid_hr10=f["selected_valid_hr@10"],
                wall_seconds=time.perf_counter() - t0)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(CONFIGS), choices=list(CONFIGS), help="federated models (none: --central alone)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=None, help="override every configuration's number of rounds")
    ap.add_argument("--dataset", default="ml-100k", help="ml-100k (FEDREC_DATA or the loader's download) or synthetic-ml-1m")
    ap.add_argument("--engine", default="vectorized", choices=["vectorized", "sequential"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sweep", action="store_true", help="tune on the validation split (seed 0) instead of the test figures")
    ap.add_argument("--only", type=int, nargs="+", default=None, help="--sweep: run only these entries of each model's SWEEP list (0-based)")
    ap.add_argument("--tag", default="", help="a suffix of the CSV and log names (a run that must not replace the table's)")
    ap.add_argument("--protocol", default="default", choices=list(EVAL_PROTOCOLS), help="the evaluation protocol (EVAL_PROTOCOLS)")
    ap.add_argument("--own-config", action="store_true", help="--protocol pfedrec: the PFedRec-style model with CONFIGS, not PFEDREC_SETTINGS")
    ap.add_argument("--central", action="store_true", help="also most-popular, BPR-MF and NeuMF, central (a protocol with validation)")
    ap.add_argument("--set", default="{}", help='JSON overrides for every run, e.g. \'{"local_epochs": 2}\'')
    add_json_argument(ap)
    a = ap.parse_args(argv)
    try: over = json.loads(a.set)
    except json.JSONDecodeError as e: ap.error(f"--set {a.set!r}: not JSON ({e})")
    proto = EVAL_PROTOCOLS[a.protocol]
    if a.sweep and proto.validation: ap.error(f"--sweep with --protocol {a.protocol}: that protocol selects by its own validation split")
    if a.central and not proto.validation: ap.error("--central: the default protocol's central figures come from benchmarks/implicit_figures.py")
    exp = prepare_experiment(a.dataset, None, 42, 0.1, "leave_one_out", "runs/federated_ranking", ties=proto.ties, validation=proto.validation)
    tag = a.dataset + ("_sweep" if a.sweep else "") + ("" if a.protocol == "default" else f"_{a.protocol}") + (f"_{a.tag}" if a.tag else "")
    csv, log = RESULTS / f"federated_ranking_{tag}.csv", RESULTS / f"federated_ranking_{tag}.log"
    if a.sweep:   # validation: each user's second-latest rating, from the training rows alone
        tr, va = split_ratings(exp.train, "leave_one_out")
        exp = replace(exp, train=tr, test=va)
    old = pd.read_csv(csv).to_dict("records") if a.sweep and a.only and csv.exists() else []   # a partial sweep adds to the last one
    lines, rows = ([*log.read_text().splitlines(), ""] if old and log.exists() else []) + [f"$ python benchmarks/federated_ranking_figures.py {' '.join(argv if argv is not None else sys.argv[1:])}",
                   f"{a.dataset}: {len(exp.train):,} training interactions, {len(exp.test):,} {'validation' if a.sweep else 'test'} items, "
                   f"{exp.train.user_id.nunique():,} one-user clients, engine {a.engine}, device {a.device}"], old
    print("\n".join(lines), flush=True)
    jobs = [(n, {**CONFIGS[n], **o, **over}, 0) for n in a.models for j, o in enumerate(SWEEP[n]) if a.only is None or j in a.only] if a.sweep else \
           [(n, {**(PFEDREC_SETTINGS if n == "pfedrec" and a.protocol == "pfedrec" and not a.own_config else CONFIGS[n]), **over}, s) for n in a.models for s in a.seeds]
    if a.central: jobs += [(n, None, s) for n in ("most_popular", *CENTRAL_CONFIGS) for s in (a.seeds[:1] if n == "most_popular" else a.seeds)]
    if a.central: test_data, valid_data = protocol_data(a.protocol, exp.train, exp.test, exp.features, 99, exp.valid)
    for name, cfg, seed in jobs:
        if cfg is None: row = central_one(name, test_data, valid_data, exp.features, seed, a.device, a.protocol)
        else:
            if a.rounds: cfg["rounds"] = a.rounds
            row = run_one(name, cfg, exp, a.dataset, seed, a.engine, a.device, a.protocol)
        rows.append(row)
        line = " ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in row.items())
        print(line, flush=True); lines.append(line)
        atomic_write(csv, lambda p: pd.DataFrame(rows).to_csv(p, index=False))
        atomic_write(log, lambda p: Path(p).write_text("\n".join(lines) + "\n"))
    if not a.sweep:
        df = pd.DataFrame(rows)
        g = df.groupby("run", sort=False)[[c for c in ("sampled_hr10", "sampled_ndcg10", "full_hr10", "full_ndcg10", "seconds_per_round") if c in df]]
        summary = (g.mean().round(4).astype(str) + " ± " + g.std(ddof=0).round(4).astype(str)).to_string()
        print(summary); lines += ["", "mean ± std over seeds " + ",".join(map(str, a.seeds)), summary]
        atomic_write(log, lambda p: Path(p).write_text("\n".join(lines) + "\n"))
    print(f"wrote {csv.relative_to(RESULTS.parents[1])} and {log.name}")
    write_json(a.json, dict(dataset=a.dataset, protocol=a.protocol, seeds=a.seeds, engine=a.engine, device=a.device,
                            sweep=a.sweep, rows=rows))

if __name__ == "__main__":
    main()
