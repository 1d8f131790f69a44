"""The federated figures of 06_federated on real ML-100K, mean and std over seeds.

    FEDREC_DATA=../shared/data MPLBACKEND=Agg .venv/bin/python benchmarks/federated_figures.py [--seeds 42,43,44] [--figures 1,2,3,4,5]

Protocol: ML-100K, random 90/10 split with the run's seed (seed 42 = the seed notebook's split); the seed also sets the
partition, the initialisation and the batch orders. Prints a markdown table per figure and writes every run's results
to runs/federated_figures/figures.json.
"""
import argparse, time

from benchjson import add_json_argument, write_json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fedrec_nb.baselines import BiasModel, ItemMean
from fedrec_nb.features import encode_ratings
from fedrec_nb.experiment import prepare_experiment, save_results
from fedrec_nb.federated import run_federated, train_central, build_model
from fedrec_nb.experiment import rating_metrics

OUT = Path("runs/federated_figures")
COMMON = dict(dataset="ml-100k", test_size=0.1, split="random", progress=False, plots=False, device="auto")
# 1. the seed's setup: expanded model, 10 IID clients, the seed's unweighted average, 1 round, 1 epoch, batch 256, Adam 1e-3
SEED_SETUP = dict(model="expanded", partition="iid", num_clients=10, strategy="fedavg_unweighted", rounds=1,
                  local_epochs=1, batch_size=256, lr=1e-3, embedding_dim=50)
# 2. the best configuration found for 10 IID clients (see 06_federated, "Which model")
BEST_IID = dict(model="mf", partition="iid", num_clients=10, strategy="fedavg", rounds=14, local_epochs=3,
                batch_size=256, lr=2e-3, embedding_dim=32)
# 4. one client per user, private user embeddings, 30% of the clients per round (chosen on seed 42)
PER_USER = dict(model="mf", partition="user", num_clients=943, strategy="fedavg", private_user_embeddings=True,
                client_fraction=0.3, rounds=60, local_epochs=2, batch_size=32, lr=2e-2, embedding_dim=8)
# 5. non-IID partitions against IID, with the configuration of 2
NON_IID = {"iid": dict(partition="iid"), "demographic (occupation)": dict(partition="demographic"),
           "dirichlet (rating, alpha=0.1)": dict(partition="dirichlet", alpha=0.1)}


def run(name, seed, **kw):
    t0 = time.time()
    r = run_federated(seed=seed, output_dir=OUT / name / str(seed), **{**COMMON, **kw})
    f = r["final"]
    print(f"  {name} seed {seed}: RMSE {f['test_rmse']:.4f} MAE {f['test_mae']:.4f} ({time.time() - t0:.0f} s, {f['engine']})", flush=True)
    return dict(f, experiment=r["experiment"])


def central(seed, exp, cfg):
    torch.manual_seed(seed)
    net = build_model(cfg["model"], exp.features, cfg["embedding_dim"], exp.data.rating_scale)
    u, i, y = encode_ratings(exp.train, exp.features); tu, ti, ty = encode_ratings(exp.test, exp.features)
    h = pd.DataFrame(train_central(net, exp.features, u, i, y, tu, ti, ty, epochs=cfg["rounds"] * cfg["local_epochs"],
                                   batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed, rating_scale=exp.data.rating_scale))
    best = h.loc[h.test_rmse.idxmin()]
    return dict(same_passes_rmse=h.test_rmse.iloc[-1], same_passes_mae=h.test_mae.iloc[-1],
                best_rmse=best.test_rmse, best_mae=best.test_mae, best_epoch=int(best.epoch))


def baselines(exp):
    out = {}
    for b in (ItemMean(), BiasModel()):
        m = rating_metrics(exp.test.rating.to_numpy(), b.fit(exp.train, exp.data).predict(exp.test.user_id, exp.test.item_id))
        out[b.name] = m["rmse"]
    try:
        from surprise import SVD, Dataset, Reader
        ds = Dataset.load_from_df(exp.train[["user_id", "item_id", "rating"]], Reader(rating_scale=exp.data.rating_scale))
        svd = SVD(random_state=0).fit(ds.build_full_trainset())
        p = np.array([svd.predict(u, i).est for u, i in zip(exp.test.user_id, exp.test.item_id)])
        out["Surprise SVD (defaults)"] = rating_metrics(exp.test.rating.to_numpy(), p)["rmse"]
    except ImportError: pass
    return out


def ms(xs): return f"{np.mean(xs):.4f} ± {np.std(xs):.4f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--figures", default="1,2,3,4,5")
    add_json_argument(ap)
    a = ap.parse_args()
    seeds, figs = [int(s) for s in a.seeds.split(",")], {int(f) for f in a.figures.split(",")}
    res = {}
    if 0 in figs:
        print("0. which model: each trained centrally, 12 epochs, batch 256, Adam (mf/hybrid 2e-3, expanded 1e-3)")
        rows = []
        for s in seeds:
            exp = prepare_experiment("ml-100k", None, s, 0.1, "random", OUT / "models")
            for name, lr, dim in (("expanded", 1e-3, 50), ("hybrid", 2e-3, 32), ("mf", 2e-3, 32)):
                c = central(s, exp, dict(model=name, embedding_dim=dim, rounds=12, local_epochs=1, batch_size=256, lr=lr))
                rows.append(dict(seed=s, model=name, **c)); print("  ", rows[-1], flush=True)
        t = pd.DataFrame(rows).groupby("model")[["best_rmse", "best_epoch", "same_passes_rmse"]].agg(["mean", "std"])
        print(t.round(4).to_string())
        res["0"] = rows
    if 1 in figs:
        print("1. the seed's setup", SEED_SETUP)
        res["1"] = [run("seed_setup", s, **SEED_SETUP) for s in seeds]
        print(f"| seed's setup | global MAE (clipped) {ms([r['test_mae'] for r in res['1']])} | unclipped {ms([r['test_mae_unclipped'] for r in res['1']])} | RMSE {ms([r['test_rmse'] for r in res['1']])} |")
    if figs & {2, 3}:
        print("2./3. best IID configuration", BEST_IID, "and the same model trained centrally")
        res["2"] = [run("best_iid", s, **BEST_IID) for s in seeds]
        base = [baselines(r["experiment"]) for r in res["2"]]
        res["3"] = [central(s, r["experiment"], BEST_IID) for s, r in zip(seeds, res["2"])]
        print("| model | RMSE | MAE |\n|---|---|---|")
        print(f"| mf, 10 IID clients, FedAvg, {BEST_IID['rounds']} rounds x {BEST_IID['local_epochs']} local epochs | {ms([r['test_rmse'] for r in res['2']])} | {ms([r['test_mae'] for r in res['2']])} |")
        print(f"| mf, central, same passes ({BEST_IID['rounds'] * BEST_IID['local_epochs']} epochs) | {ms([c['same_passes_rmse'] for c in res['3']])} | {ms([c['same_passes_mae'] for c in res['3']])} |")
        print(f"| mf, central, best epoch (chosen on the test set: optimistic) | {ms([c['best_rmse'] for c in res['3']])} | {ms([c['best_mae'] for c in res['3']])} |")
        for k in base[0]: print(f"| {k} | {ms([b[k] for b in base])} | |")
        gap = [f["test_rmse"] - c["best_rmse"] for f, c in zip(res["2"], res["3"])]
        print(f"federated minus best central RMSE: {ms(gap)}")
        res["baselines"] = base
    if 4 in figs:
        print("4. one client per user", PER_USER)
        res["4"] = [run("per_user", s, **PER_USER) for s in seeds]
        base = [baselines(r["experiment"]) for r in res["4"]]
        print(f"| 943 clients, private user embeddings, 30% per round | RMSE {ms([r['test_rmse'] for r in res['4']])} | MAE {ms([r['test_mae'] for r in res['4']])} | item mean RMSE {ms([b['item mean'] for b in base])} |")
    if 5 in figs:
        print("5. non-IID against IID", NON_IID)
        res["5"] = {k: [run("partition_" + v["partition"], s, **{**BEST_IID, **v}) for s in seeds] for k, v in NON_IID.items()}
        print("| partition (10 clients) | global RMSE | worst-decile client MAE | client MAE std |\n|---|---|---|---|")
        for k, rs in res["5"].items():
            print(f"| {k} | {ms([r['test_rmse'] for r in rs])} | {ms([r['client_mae_worst10'] for r in rs])} | {ms([r['client_mae_std'] for r in rs])} |")
    strip = lambda o: {k: v for k, v in o.items() if k != "experiment"} if isinstance(o, dict) else o
    clean = {k: ([strip(x) for x in v] if isinstance(v, list) else {kk: [strip(x) for x in vv] for kk, vv in v.items()}) for k, v in res.items()}
    save_results(OUT, dict(seeds=seeds, configs=dict(seed_setup=SEED_SETUP, best_iid=BEST_IID, per_user=PER_USER), results=clean),
                 name="figures_" + "_".join(map(str, sorted(figs))))
    write_json(a.json, dict(seeds=seeds, configs=dict(seed_setup=SEED_SETUP, best_iid=BEST_IID, per_user=PER_USER), results=clean))


if __name__ == "__main__":
    main()
