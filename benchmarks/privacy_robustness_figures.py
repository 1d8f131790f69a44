"""The figures of nbs/06m_privacy_robustness.ipynb: DP (epsilon against RMSE), untargeted attacks against every aggregator,
targeted item promotion against the defences. Mean and std over seeds.

    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/privacy_robustness_figures.py dp [--seeds 0,1,2] [--accountant prv]
    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/privacy_robustness_figures.py dp --dataset synthetic-ml-1m
    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/privacy_robustness_figures.py untargeted
    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/privacy_robustness_figures.py targeted

Every run goes through `fedrec_nb.federated.run_federated` on the random 90/10 split of the seed (the split, partition,
initialisation, client sampling, attackers and DP noise all follow the seed). Each part prints a markdown table and writes
one row per run to benchmarks/results/privacy_robustness_<part>[_<dataset>].csv (the notebook draws its plots from them).

- dp: one client per user, private user embeddings (they never leave the client and take no noise) re-fitted on the device
  after every round as a ridge fit (`private_refit_steps`, `private_refit_l2`), biased MF, Poisson sampling with
  q = client_fraction, DP-FedAvg with the fixed denominator q * N. The noise multiplier of each row is the smallest that
  `--accountant` (`dp_accountant`: Opacus's 'rdp' or 'prv') needs for the target epsilon at delta = 1e-5 after all rounds
  (`noise_for_epsilon`); the run records that accountant's epsilon, and every row also carries both accountants' epsilon
  for its noise (epsilon_rdp, epsilon_prv). The non-private run is the same configuration without clipping or noise.
- untargeted: 10 IID clients (the notebook's default model and schedule), 10% and 20% of them malicious, every attack
  against every aggregator; the clean row is plain FedAvg without attackers.
- targeted: one client per user, 5% fake users promoting the default target (the most-rated film with fewer than 10
  training ratings); ER@10 = share of the users who did not rate it that find it in their top-10 of unrated films.
"""
import argparse, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchjson import add_json_argument, write_json
from fedrec_nb.experiment import prepare_experiment
from fedrec_nb.federated import run_federated
from fedrec_nb.parameters import DEFAULTS
from fedrec_nb.privacy import ACCOUNTANTS, epsilon, noise_for_epsilon

RESULTS = Path(__file__).resolve().parent / "results"
OUT = Path("runs/privacy_robustness")

# one client per user, private user rows: the configuration of the DP and targeted figures
PER_USER = dict(model="mf", partition="user", private_user_embeddings=True, embedding_dim=8, batch_size=32, lr=0.02,
                local_epochs=1, client_fraction=0.3, rounds=100, device="cpu", progress=False, plots=False)
# DP settings: (label, target epsilon or None for the non-private run, run parameters)
DP_GRID = [   # ridge re-fit of the private rows after every round (private_refit_l2: without it they fit the items' noise)
    ("non-private", None, dict(private_refit_steps=5, private_refit_l2=10.0)),
    ("eps 10", 10.0, dict(dp_clip=0.1, server_lr=25.0, private_refit_steps=5, private_refit_l2=10.0)),
    ("eps 5", 5.0, dict(dp_clip=0.1, server_lr=25.0, private_refit_steps=5, private_refit_l2=10.0)),
    # low epsilon: one factor (the dense noise falls on every coordinate, the signal mostly on the biases), 30 rounds
    ("eps 1", 1.0, dict(dp_clip=0.1, server_lr=8.0, embedding_dim=1, rounds=30, private_refit_steps=5, private_refit_l2=10.0)),
]
# untargeted: the notebook's default model and schedule, 10 IID clients
IID = dict(model="mf", partition="iid", num_clients=10, rounds=5, local_epochs=1, batch_size=256, lr=1e-2, embedding_dim=32,
           device="cpu", progress=False, plots=False)
ATTACKS = ["sign_flip", "scale", "noise"]
AGGREGATORS = ["mean", "median", "trimmed_mean", "krum", "multi_krum", "norm_bound"]
TARGETED = ["mean", "norm_bound", "median", "foolsgold"]


def ms(x, digits=4):
    x = np.asarray(x, float)
    return f"{x.mean():.{digits}f} ± {x.std():.{digits}f}"


def run(exp, seed, out=OUT / "run", **kw):
    t = time.perf_counter()
    r = run_federated(seed=seed, output_dir=out, overwrite=True, experiment=exp, ranking=False, **kw)   # a scratch folder
    f = r["final"]
    norms = [h["norm_median"] for h in r["rounds"] if h.get("norm_median") is not None]
    return dict(seed=seed, rmse=f["test_rmse"], mae=f["test_mae"], epsilon=f.get("epsilon"), er10=f.get("test_er@10"),
                target=f.get("target_item"), seconds=time.perf_counter() - t,
                round_seconds=float(np.mean([h["train_seconds"] for h in r["rounds"]])),
                norm_median=float(np.median(norms)) if norms else None)


SAVED: dict = {}   # name -> rows of every table this invocation wrote (what --json writes)


def save(rows, name):
    SAVED[name] = [dict(r) for r in rows]
    RESULTS.mkdir(exist_ok=True)
    df = pd.DataFrame(rows)
    p = RESULTS / f"{name}.csv"
    tmp = p.with_suffix(".tmp"); df.to_csv(tmp, index=False); tmp.replace(p)
    return df


def dp_row(seed, dataset, rounds, accountant, label, eps, kw):
    "One row of the DP table: the run of setting `label` on `seed`'s split, with both accountants' epsilon for its noise."
    torch.set_num_threads(1)
    exp = prepare_experiment(dataset, None, seed, 0.1, "random", OUT / "dp")
    p = dict(PER_USER, num_clients=exp.train.user_id.nunique(), **{"rounds": rounds, **kw})   # a setting may fix its rounds
    rounds = p["rounds"]
    if eps is not None:   # the noise the accountant needs; seeded: reproducible figures
        p.update(dp_noise_multiplier=noise_for_epsilon(eps, p["client_fraction"], rounds, 1e-5, accountant),
                 dp_accountant=accountant, dp_seeded_noise=True)
    else: p.pop("dp_clip", None)
    r = run(exp, seed, out=OUT / f"run_{seed}_{label.replace(' ', '_')}", **p)
    z = p.get("dp_noise_multiplier", 0.0)
    both = {f"epsilon_{a}": (epsilon(z, p["client_fraction"], rounds, 1e-5, a) if z else None) for a in ACCOUNTANTS}
    row = dict(setting=label, target_epsilon=eps, accountant=accountant if z else None, noise_multiplier=z, dp_clip=p.get("dp_clip"),
               server_lr=p.get("server_lr"), embedding_dim=p["embedding_dim"], refit_l2=p.get("private_refit_l2"), rounds=rounds,
               clients=p["num_clients"], **r, **both)
    print(row, flush=True)
    return row


def part_dp(seeds, dataset, rounds, accountant, settings=None, jobs=1):
    grid = [g for g in DP_GRID if settings is None or g[0] in settings]
    tasks = [(seed, dataset, rounds, accountant, *g) for seed in seeds for g in grid]
    with ProcessPoolExecutor(jobs) as pool:   # one process per run (each at one torch thread): the runs are independent
        rows = list(pool.map(dp_row, *zip(*tasks)))
    n = rows[0]["clients"]
    name = f"privacy_robustness_dp_{dataset}"
    if settings is not None and (RESULTS / f"{name}.csv").exists():   # a partial run replaces only its own settings' rows
        old = pd.read_csv(RESULTS / f"{name}.csv")
        if "rounds" in old:   # a table of this grid's format (an older one is replaced whole)
            keep = old[old.setting.isin([g[0] for g in DP_GRID]) & ~old.setting.isin(settings)]
            rows = keep.to_dict("records") + rows
            grid = [g for g in DP_GRID if g[0] in set(keep.setting) | set(settings)]
    df = save(rows, name)
    print(f"\nDP-FedAvg, {dataset}, one client per user ({n:,}), q = {PER_USER['client_fraction']}, {rounds} rounds unless a setting fixes its own, "
          f"delta = 1e-5, noise chosen by the {accountant} accountant, seeds {seeds}\n")
    print("| setting | rounds | noise multiplier | clip | server lr | dim | refit l2 | epsilon (rdp) | epsilon (prv) | RMSE | MAE | s/round |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, _, _ in grid:
        d = df[df.setting == label]
        f = lambda c, fmt="{}": fmt.format(d[c].iloc[0]) if d[c].notna().any() else "-"
        print(f"| {label} | {d['rounds'].iloc[0]} | {d.noise_multiplier.iloc[0]:.3f} | {f('dp_clip')} | {f('server_lr')} | {d.embedding_dim.iloc[0]} | "
              f"{f('refit_l2')} | {f('epsilon_rdp', '{:.3f}') if d.epsilon_rdp.notna().any() else 'inf'} | "
              f"{f('epsilon_prv', '{:.3f}') if d.epsilon_prv.notna().any() else 'inf'} | {ms(d.rmse)} | {ms(d.mae)} | "
              f"{d.round_seconds.mean():.2f} |")


def part_untargeted(seeds, rounds):
    rows = []
    for seed in seeds:
        exp = prepare_experiment("ml-100k", None, seed, 0.1, "random", OUT / "untargeted")
        base = dict(IID, rounds=rounds)
        rows.append(dict(attack="none", fraction=0.0, aggregator="mean", **run(exp, seed, **base)))
        # norm_bound's bound: the median norm of the honest updates of a clean run (a bound that never clips, to read it)
        base["_clip"] = run(exp, seed, **dict(base, aggregator="norm_bound", clip_norm=1e9))["norm_median"]
        print(f"seed {seed}: norm_bound clips at the clean median update norm {base['_clip']:.4f}", flush=True)
        for agg in AGGREGATORS[1:]:   # each defence without attackers: what it costs a clean run
            rows.append(dict(attack="none", fraction=0.0, aggregator=agg, clip=base["_clip"], **run(exp, seed, **defence(base, agg, 0.2))))
        for frac in (0.1, 0.2):
            for attack in ATTACKS:
                for agg in AGGREGATORS:
                    kw = dict(defence(base, agg, frac), attack=attack, attack_fraction=frac)
                    rows.append(dict(attack=attack, fraction=frac, aggregator=agg, **run(exp, seed, **kw)))
                    print(rows[-1], flush=True)
    df = save(rows, "privacy_robustness_untargeted")
    clean = df[(df.attack == "none") & (df.aggregator == "mean")].rmse
    print(f"\nUntargeted attacks, ML-100K, 10 IID clients, attack_scale 10, RMSE (mean ± std over seeds {seeds}); "
          f"clean FedAvg: {ms(clean)}\n")
    print("| attack | attackers | " + " | ".join(AGGREGATORS) + " |")
    print("|---|---|" + "---|" * len(AGGREGATORS))
    d = df[df.attack == "none"]
    print("| none | 0% | " + " | ".join(ms(d[d.aggregator == a].rmse) for a in AGGREGATORS) + " |")
    for frac in (0.1, 0.2):
        for attack in ATTACKS:
            d = df[(df.attack == attack) & (df.fraction == frac)]
            print(f"| {attack} | {frac:.0%} | " + " | ".join(ms(d[d.aggregator == a].rmse) for a in AGGREGATORS) + " |")


def defence(base, agg, frac):
    "The aggregator's settings for an assumed share `frac` of attackers."
    kw = dict(base, aggregator=agg)
    if agg == "trimmed_mean": kw["trim_fraction"] = frac
    if agg in ("krum", "multi_krum"): kw["krum_f"] = max(1, int(round(frac * base["num_clients"])))
    if agg == "norm_bound": kw["clip_norm"] = base.get("_clip", 1.0)
    return {k: v for k, v in kw.items() if not k.startswith("_")}


def part_targeted(seeds, rounds, clip, aggregators):
    from fedrec_nb.defences import choose_target
    rows = []
    for seed in seeds:
        exp = prepare_experiment("ml-100k", None, seed, 0.1, "random", OUT / "targeted")
        n = exp.train.user_id.nunique()
        counts = exp.train.item_id.value_counts()
        items = exp.features.item_ids
        target = items[choose_target(counts.reindex(items).fillna(0).to_numpy())]   # the default target, named
        base = dict(PER_USER, num_clients=n, rounds=rounds, _clip=clip, target_item=target.item() if hasattr(target, "item") else target)
        for agg in aggregators:
            kw = defence(base, agg, 0.05)
            if agg in ("krum", "multi_krum"): kw["krum_f"] = int(round(0.05 * n / 0.95 * base["client_fraction"]))
            clean = run(exp, seed, **kw)                        # no attacker: RMSE, and the target's own exposure
            att = run(exp, seed, **dict(kw, attack="promote_item", attack_fraction=0.05, attack_scale=1.0))
            rows.append(dict(aggregator=agg, clean_rmse=clean["rmse"], clean_er10=clean["er10"], attacked_rmse=att["rmse"],
                             er10=att["er10"], target=att["target"], seed=seed))
            print(rows[-1], flush=True)
    df = save(rows, "privacy_robustness_targeted")
    ref = df[df.aggregator == "mean"].set_index("seed").clean_rmse
    df["clean_rmse_change"] = df.clean_rmse - df.seed.map(ref)
    print(f"\nTargeted item promotion, ML-100K, one client per user, 5% fake users, attack_scale 1, {rounds} rounds "
          f"(mean ± std over seeds {seeds}; target = the most-rated film with fewer than 10 training ratings)\n")
    print("| aggregator | ER@10 without attack | ER@10 attacked | clean RMSE | change vs FedAvg | attacked RMSE |")
    print("|---|---|---|---|---|---|")
    for agg in aggregators:
        d = df[df.aggregator == agg]
        print(f"| {agg} | {ms(d.clean_er10, 3)} | {ms(d.er10, 3)} | {ms(d.clean_rmse)} | {ms(d.clean_rmse_change)} | "
              f"{ms(d.attacked_rmse)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["dp", "untargeted", "targeted"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--dataset", default="ml-100k", help="dp only: ml-100k or synthetic-ml-1m")
    ap.add_argument("--rounds", type=int, default=None, help="default: 100 (dp), 5 (untargeted), 30 (targeted)")
    ap.add_argument("--clip", type=float, default=0.05, help="targeted: norm_bound's clip_norm")
    ap.add_argument("--accountant", default=DEFAULTS["dp_accountant"], choices=ACCOUNTANTS,
                    help="dp: the accountant that chooses the noise and records the run's epsilon (`dp_accountant`)")
    ap.add_argument("--jobs", type=int, default=1, help="dp: runs at a time, one process each")
    ap.add_argument("--settings", default=None, help="dp: comma-separated labels of DP_GRID to run (default: all)")
    ap.add_argument("--aggregators", default=",".join(TARGETED), help="targeted: the defences compared")
    add_json_argument(ap)
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    t = time.time()
    if a.part == "dp": part_dp(seeds, a.dataset, a.rounds or 100, a.accountant, a.settings.split(",") if a.settings else None, a.jobs)
    elif a.part == "untargeted": part_untargeted(seeds, a.rounds or 5)
    else: part_targeted(seeds, a.rounds or 30, a.clip, a.aggregators.split(","))
    print(f"\n{time.time() - t:.0f} s in all")
    write_json(a.json, dict(part=a.part, seeds=seeds, dataset=a.dataset, accountant=a.accountant, tables=SAVED))


if __name__ == "__main__":
    main()
