"""What the server's checks of every reply cost (issue 19): 943 one-user clients of ML-100K, one round, 1 torch thread.

    FEDREC_DATA=<folder with ml-100k.zip> python benchmarks/bench_checks.py [--json PATH]

The clients train one after another (`train_client`, the sequential engine's step, mf with 8 factors and private user rows);
their `ClientResult`s then go through the server's accept-and-sum phase twice, in the same process: `sum_accepted` (the
acceptance rule: asked once, names, shapes, dtype, integer unique in-range rows, finite values) against the same weighted sum
without any check. Evaluation sums: `check_eval_sums` on the 943 clients' sums against adding them unchecked. The ratio is the
checks' time over the whole round's (training, summing, evaluating)."""
import argparse, time
import torch

from benchjson import add_json_argument, write_json

from fedrec_nb.client import accumulate, train_client, PrivateState
from fedrec_nb.federated import RoundPlan, eval_sums, load_params, sum_accepted
from fedrec_nb.federation import build_federation, local_config


def best(fn, n=5):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return min(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(); add_json_argument(ap); a = ap.parse_args(argv)
    torch.set_num_threads(1)
    p = dict(dataset="ml-100k", partition="user", num_clients=943, model="mf", embedding_dim=8, batch_size=32, lr=0.02,
             local_epochs=1, private_user_embeddings=True, engine="sequential", device="cpu", seed=0, output_dir="runs/bench_checks")
    fed = build_federation(p)
    net, glob, cfg = fed.model, dict(fed.initial_params), local_config(fed.params)
    priv = PrivateState(net.user_params, glob)
    t0 = time.perf_counter()
    results = [train_client(net, glob, c, priv.get(c)[1], cfg, 0, 0, fed.features) for c in fed.clients]
    t_train = time.perf_counter() - t0
    w = torch.full((len(fed.clients),), 1.0 / len(fed.clients))
    plan = RoundPlan(0, None, None, (), fed.clients, w, False)
    shared = {n: t for n, t in glob.items() if n not in net.user_params}
    def unchecked():
        delta = {n: torch.zeros_like(t) for n, t in shared.items()}
        for k, r in enumerate(results): accumulate(delta, r.update, float(w[k]))
    t_sum_checked, t_sum_plain = best(lambda: sum_accepted(results, plan, glob, tuple(net.user_params))), best(unchecked)
    from fedrec_nb.flower import check_eval_sums
    load_params(net, glob)
    sums = {c.cid: eval_sums(net, fed.features, c.test_users, c.test_items, c.test_ratings, fed.rating_scale) for c in fed.clients}
    t_eval = best(lambda: [eval_sums(net, fed.features, c.test_users, c.test_items, c.test_ratings, fed.rating_scale)
                           for c in fed.clients], 2)
    t_eval_checked = best(lambda: check_eval_sums(fed, sums))
    round_s = t_train + t_sum_plain + t_eval
    extra = (t_sum_checked - t_sum_plain) + t_eval_checked
    out = dict(clients=len(fed.clients), train_seconds=t_train, sum_unchecked_seconds=t_sum_plain,
               sum_checked_seconds=t_sum_checked, eval_sums_seconds=t_eval, eval_check_seconds=t_eval_checked,
               checks_seconds=extra, round_seconds=round_s, checks_share_of_round=extra / round_s)
    print(f"943 one-user clients, 1 thread: round {round_s:.3f} s (training {t_train:.3f} s, sum {t_sum_plain:.4f} s, "
          f"evaluation sums {t_eval:.3f} s)")
    print(f"acceptance rule: {t_sum_checked - t_sum_plain:.4f} s; evaluation-sum checks: {t_eval_checked:.4f} s; "
          f"checks: {100 * out['checks_share_of_round']:.1f}% of the round")
    write_json(a.json, out)


if __name__ == "__main__":
    main()
