"""The 10-client round on a GPU: eager, CUDA-graph replay of the full steps, and replay of torch.compile'd steps, in one run.

    python benchmarks/bench_cuda_graphs.py [--dataset synthetic-ml-1m] [--model hybrid] [--batch-size 256] [--rounds 3]

Both sides train the same 10 IID clients (90/10 random split, seed 42), one local epoch, Adam 1e-3, from the same global
parameters; the script prints samples/s for each, the ratio and the largest relative difference of the new global
parameters. Needs CUDA (exits with a message otherwise).
"""
import argparse, os, sys, time

from benchjson import add_json_argument, write_json
from pathlib import Path

import numpy as np
import torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synthetic-ml-1m")
    p.add_argument("--model", default="hybrid")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    add_json_argument(p)
    a = p.parse_args(argv)
    if not torch.cuda.is_available(): sys.exit("bench_cuda_graphs.py: no CUDA device")
    os.environ.setdefault("FEDREC_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    from fedrec_nb.splits import split_ratings
    from fedrec_nb.features import encode_features, encode_ratings
    from fedrec_nb.data import load_dataset
    from fedrec_nb.models import build_model
    from fedrec_nb.partitions import partition
    from fedrec_nb.federated import build_clients, FedAvg, LocalConfig, ClientData
    from fedrec_nb.vectorized import local_train_vectorized, relative_difference
    dev = torch.device("cuda")
    data = load_dataset(a.dataset, seed=42)
    train, _ = split_ratings(data.ratings, "random", 0.1, 42)
    feats = encode_features(data)
    u, i, y = encode_ratings(train, feats)
    parts = partition("iid", train, data, a.clients, 0.5, 42)
    clients = [ClientData(c.cid, c.users.to(dev), c.items.to(dev), c.ratings.to(dev))
               for c in build_clients(u, i, y, parts, u[:0], i[:0], y[:0], np.zeros(0, int))]
    featsd = feats.to(dev)
    torch.manual_seed(42)
    net = build_model(a.model, feats, 50 if a.model == "expanded" else 32, data.rating_scale).to(dev)
    gp = {n: q.detach().clone() for n, q in net.named_parameters()}
    cfg = LocalConfig(1, a.batch_size, 1e-3, 0.0)
    w = FedAvg().client_weights([c.n_train for c in clients])
    samples = sum(c.n_train for c in clients)

    def run(graphs, compiled=False):
        os.environ["FEDREC_CUDA_GRAPHS"] = "1" if graphs else "0"
        os.environ["FEDREC_COMPILE"] = "1" if compiled else "0"
        local_train_vectorized(net, gp, clients, w, featsd, cfg, 42, 0, device=dev)  # warm-up
        torch.cuda.synchronize(); t = time.perf_counter()
        for _ in range(a.rounds): upd = local_train_vectorized(net, gp, clients, w, featsd, cfg, 42, 0, device=dev)
        torch.cuda.synchronize()
        return upd, (time.perf_counter() - t) / a.rounds

    print(f"{a.dataset}, {len(clients)} IID clients, {samples:,} training rows, model {a.model}, batch {a.batch_size}, "
          f"{torch.cuda.get_device_name(dev)}")
    eager, t_e = run(False)
    print(f"eager                 : {t_e:.3f} s per round ({samples / t_e:,.0f} samples/s)")
    rows = [dict(path="eager", seconds_per_round=t_e, samples_per_s=samples / t_e)]
    new = lambda upd: {n: gp[n] + upd.delta[n] for n in upd.delta}
    for label, graphs, compiled in (("CUDA graphs", True, False), ("graphs + torch.compile", True, True)):
        upd, t = run(graphs, compiled)
        rd = max(relative_difference(new(eager), new(upd)).values())
        print(f"{label:22s}: {t:.3f} s per round ({samples / t:,.0f} samples/s), {t_e / t:.1f}x eager; "
              f"largest relative difference of the new global parameters from eager: {rd:.1e}")
        rows.append(dict(path=label, seconds_per_round=t, samples_per_s=samples / t, speedup_vs_eager=t_e / t,
                         max_relative_difference=rd))
    write_json(a.json, dict(dataset=a.dataset, clients=len(clients), model=a.model, batch_size=a.batch_size,
                            device=torch.cuda.get_device_name(dev), rows=rows))


if __name__ == "__main__":
    main()
