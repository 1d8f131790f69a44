"""The figures of nbs/06m_privacy_robustness.ipynb: DP (epsilon against RMSE), untargeted attacks against every aggregator,
targeted item promotion against the defences. Mean and std over seeds.

    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/privacy_robustness_figures.py dp [--seeds 0,1,2]
    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/privacy_robustness_figures.py dp --dataset synthetic-ml-1m
    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/privacy_robustness_figures.py untargeted
    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/privacy_robustness_figures.py targeted

Every run goes through `fedrec_nb.federated.run_federated` on the random 90/10 split of the seed (the split, partition,
initialisation, client sampling, attackers and DP noise all follow the seed). Each part prints a markdown table and writes
one row per run to benchmarks/results/privacy_robustness_<part>[_<dataset>].csv (the notebook draws its plots from them).

- dp: one client per user, private user embeddings (they never leave the client and take no noise), biased MF, Poisson
  sampling with q = client_fraction, DP-FedAvg with the fixed denominator q * N; epsilon at delta = 1e-5 from Opacus's RDP
  accountant after all rounds. Noise multipliers chosen with `noise_for_epsilon` for target epsilons; the non-private run
  is the same configuration without clipping or noise.
- untargeted: 10 IID clients (the notebook's default model and schedule), 10% and 20% of them malicious, every attack
  against every aggregator; the clean row is plain FedAvg without attackers.
- targeted: one client per user, 5% fake users promoting the default target (the most-rated film with fewer than 10
  training ratings); ER@10 = share of the users who did not rate it that find it in their top-10 of unrated films.
"""
import argparse, time
from pathlib import Path

import numpy as np
import pandas as pd

from fedrec_nb.experiment import prepare_experiment
from fedrec_nb.federated import run_federated
from fedrec_nb.privacy import noise_for_epsilon

RESULTS = Path(__file__).resolve().parent / "results"
OUT = Path("runs/privacy_robustness")

# one client per user, private user rows: the configuration of the DP and targeted figures
PER_USER = dict(model="mf", partition="user", private_user_embeddings=True, embedding_dim=8, batch_size=32, lr=0.02,
                local_epochs=1, client_fraction=0.3, rounds=100, device="cpu", progress=False, plots=False)
# DP settings: (label, target epsilon or None for the non-private run, run parameters)
DP_GRID = [
    ("non-private", None, dict(private_refit_steps=5)),
    ("eps 10", 10.0, dict(dp_clip=0.1, server_lr=25.0, embedding_dim=2, private_refit_steps=5)),
    ("eps 5", 5.0, dict(dp_clip=0.1, server_lr=20.0, embedding_dim=2, private_refit_steps=5)),
    ("eps 2", 2.0, dict(dp_clip=0.1, server_lr=12.0, embedding_dim=1, private_refit_steps=5)),
    ("eps 1", 1.0, dict(dp_clip=0.1, server_lr=8.0, embedding_dim=1, private_refit_steps=5)),
    ("eps 0.5", 0.5, dict(dp_clip=0.1, server_lr=5.0, embedding_dim=1, private_refit_steps=5)),
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


def run(exp, seed, **kw):
    t = time.perf_counter()
    r = run_federated(seed=seed, output_dir=OUT / "run", overwrite=True, experiment=exp, ranking=False, **kw)   # one scratch folder for every run
    f = r["final"]
    norms = [h["norm_median"] for h in r["rounds"] if h.get("norm_median") is not None]
    return dict(seed=seed, rmse=f["test_rmse"], mae=f["test_mae"], epsilon=f.get("epsilon"), er10=f.get("test_er@10"),
                target=f.get("target_item"), seconds=time.perf_counter() - t,
                round_seconds=float(np.mean([h["train_seconds"] for h in r["rounds"]])),
                norm_median=float(np.median(norms)) if norms else None)


def save(rows, name):
    RESULTS.mkdir(exist_ok=True)
    df = pd.DataFrame(rows)
    p = RESULTS / f"{name}.csv"
    tmp = p.with_suffix(".tmp"); df.to_csv(tmp, index=False); tmp.replace(p)
    return df


def part_dp(seeds, dataset, rounds, settings=None):
    grid = [g for g in DP_GRID if settings is None or g[0] in settings]
    rows = []
    for seed in seeds:
        exp = prepare_experiment(dataset, None, seed, 0.1, "random", OUT / "dp")
        n = exp.train.user_id.nunique()
        for label, eps, kw in grid:
            p = dict(PER_USER, num_clients=n, rounds=rounds, **kw)
            if eps is not None: p.update(dp_noise_multiplier=noise_for_epsilon(eps, p["client_fraction"], rounds, 1e-5), dp_seeded_noise=True)  # reproducible figures
            r = run(exp, seed, **p)
            rows.append(dict(setting=label, target_epsilon=eps, noise_multiplier=p.get("dp_noise_multiplier", 0.0),
                             dp_clip=p.get("dp_clip"), server_lr=p.get("server_lr"), embedding_dim=p["embedding_dim"], **r))
            print(rows[-1], flush=True)
    df = save(rows, f"privacy_robustness_dp_{dataset}")
    print(f"\nDP-FedAvg, {dataset}, one client per user ({n:,}), q = {PER_USER['client_fraction']}, {rounds} rounds, "
          f"delta = 1e-5, seeds {seeds}\n")
    print("| setting | noise multiplier | clip | server lr | dim | epsilon | RMSE | MAE | s/round |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, _, _ in grid:
        d = df[df.setting == label]
        e = d.epsilon.dropna()
        print(f"| {label} | {d.noise_multiplier.iloc[0]:.3f} | {d.dp_clip.iloc[0] if d.dp_clip.notna().any() else '-'} | "
              f"{d.server_lr.iloc[0] if d.server_lr.notna().any() else '-'} | {d.embedding_dim.iloc[0]} | "
              f"{e.iloc[0]:.3f} | " if len(e) else f"| {label} | 0 | - | - | {d.embedding_dim.iloc[0]} | inf | ", end="")
        print(f"{ms(d.rmse)} | {ms(d.mae)} | {d.round_seconds.mean():.2f} |")


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
    ap.add_argument("--rounds", type=int, default=None, help="default: 30 (dp), 5 (untargeted), 30 (targeted)")
    ap.add_argument("--clip", type=float, default=0.05, help="targeted: norm_bound's clip_norm")
    ap.add_argument("--settings", default=None, help="dp: comma-separated labels of DP_GRID to run (default: all)")
    ap.add_argument("--aggregators", default=",".join(TARGETED), help="targeted: the defences compared")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    t = time.time()
    if a.part == "dp": part_dp(seeds, a.dataset, a.rounds or 30, a.settings.split(",") if a.settings else None)
    elif a.part == "untargeted": part_untargeted(seeds, a.rounds or 5)
    else: part_targeted(seeds, a.rounds or 30, a.clip, a.aggregators.split(","))
    print(f"\n{time.time() - t:.0f} s in all")


if __name__ == "__main__":
    main()
