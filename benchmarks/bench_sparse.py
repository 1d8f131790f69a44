"""Bytes a round moves with sparse updates (touched rows only) against full tables, and the same model either way.

943 one-user clients of ML-100K (partition user), model mf, FedAvg: each client trains with
`fedrec_nb.client.train_client` and sends its update as `SparseRows` (sparse) or as full tables (dense); the server
adds them with the same weights. Prints bytes up per round both ways, their ratio, and the final test RMSE both ways.

    FEDREC_DATA=<folder with ml-100k.zip> .venv/bin/python benchmarks/bench_sparse.py [--rounds 2] [--dataset ml-100k]
"""
import argparse, tempfile, time

from benchjson import add_json_argument, write_json

import numpy as np
import torch

from fedrec_nb.client import LocalConfig, train_client, update_nbytes, update_problem, accumulate
from fedrec_nb.features import encode_ratings
from fedrec_nb.experiment import prepare_experiment
from fedrec_nb.federated import build_clients, evaluate_global, load_params, make_strategy, sample_clients, transfer_nbytes
from fedrec_nb.models import build_model
from fedrec_nb.partitions import client_of_user, partition


def run(exp, clients, feats, owner_test, sparse, rounds, seed, cfg, fraction):
    torch.manual_seed(seed)
    net = build_model("mf", exp.features, 32, exp.data.rating_scale)
    glob = {n: p.detach().clone() for n, p in net.named_parameters()}
    strat = make_strategy("fedavg")
    up, t0 = [], time.perf_counter()
    for r in range(rounds):
        sampled = [clients[k] for k in sample_clients(len(clients), fraction, seed, r)]
        w = strat.client_weights([c.n_train for c in sampled])
        delta, nbytes = {n: torch.zeros_like(t) for n, t in glob.items()}, 0
        for k, c in enumerate(sampled):
            res = train_client(net, glob, c, None, cfg, seed, r, feats, "cpu", sparse=sparse)
            nbytes += update_nbytes(res.update)
            assert update_problem(res.update, glob) is None
            with torch.no_grad(): accumulate(delta, res.update, float(w[k]))
        strat.apply(glob, delta)
        up.append(nbytes)
    load_params(net, glob)
    tu, ti, ty = encode_ratings(exp.test, exp.features)
    m, _, _ = evaluate_global(net, feats, tu, ti, ty, owner_test, len(clients), exp.data.rating_scale)
    return up, m["test_rmse"], time.perf_counter() - t0, net, glob


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k"); ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=1.0); ap.add_argument("--seed", type=int, default=42)
    add_json_argument(ap)
    a = ap.parse_args()
    torch.set_num_threads(1)
    exp = prepare_experiment(a.dataset, seed=a.seed, test_size=0.1, output_dir=tempfile.mkdtemp())
    feats = exp.features
    u, i, y = encode_ratings(exp.train, feats)
    tu, ti, ty = encode_ratings(exp.test, feats)
    k = int(exp.train.user_id.nunique())
    parts = partition("user", exp.train, exp.data, k, 0.5, a.seed)
    owner = client_of_user(u.numpy(), parts, feats.n_users)
    clients = build_clients(u, i, y, parts, tu, ti, ty, owner[tu.numpy()])
    cfg = LocalConfig(local_epochs=1, batch_size=32, lr=3e-3)
    s_up, s_rmse, s_sec, net, glob = run(exp, clients, feats, owner[tu.numpy()], True, a.rounds, a.seed, cfg, a.fraction)
    d_up, d_rmse, d_sec, _, _ = run(exp, clients, feats, owner[tu.numpy()], False, a.rounds, a.seed, cfg, a.fraction)
    formula = sum(transfer_nbytes(net, glob, int(torch.unique(c.users).numel()), int(torch.unique(c.items).numel()))
                  for c in clients if c.n_train)
    print(f"{a.dataset}: {k} one-user clients, model mf (dim 32), fedavg, {a.rounds} rounds, client_fraction {a.fraction}")
    print(f"bytes up per round  dense {np.mean(d_up):,.0f}   sparse {np.mean(s_up):,.0f}   ratio {np.mean(d_up) / np.mean(s_up):.1f}x")
    print(f"(run_federated's bytes_up per round with every client sampled: {formula:,})")
    print(f"final test RMSE     dense {d_rmse:.9f}   sparse {s_rmse:.9f}   |diff| {abs(d_rmse - s_rmse):.2e}")
    print(f"seconds             dense {d_sec:.1f}   sparse {s_sec:.1f}")
    write_json(a.json, dict(dataset=a.dataset, clients=k, rounds=a.rounds, client_fraction=a.fraction,
                            bytes_up_dense=float(np.mean(d_up)), bytes_up_sparse=float(np.mean(s_up)),
                            ratio=float(np.mean(d_up) / np.mean(s_up)), bytes_up_formula=int(formula),
                            rmse_dense=d_rmse, rmse_sparse=s_rmse, seconds_dense=d_sec, seconds_sparse=s_sec))


if __name__ == "__main__":
    main()
