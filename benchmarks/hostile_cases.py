"""Issue 19's table: every hostile or broken reply the tests try, through the real Flower server loop (`flower.serve`) and
the real ClientApp work (`handle_message`), over the tests' stand-in network (`tests/test_hostile.py`'s `FakeGrid`), against
the honest run of the same federation (synthetic 60 users x 120 items, 3 clients, mf d 4, 2 rounds, seed 42).

    python benchmarks/hostile_cases.py [--json PATH]

Per case: what the server did (updates and evaluations rejected, with the first reason), the final test RMSE against the
honest run's, and whether the final model equals the honest one exactly (where the attacker's piece is left out)."""
import argparse, sys, tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_hostile as H   # the stand-in network and the tampering functions the tests use: one definition of each case
from flwr.app import MetricRecord

from benchjson import add_json_argument, write_json
from fedrec_nb import flower
from fedrec_nb.synthetic import synthetic_movielens


def _strip(content, msg):
    if "update" in content:
        from flwr.app import ArrayRecord
        content["update"] = ArrayRecord({k: v for k, v in content["update"].items() if not k.endswith("#values")})
    if "eval" in content: content["eval"] = MetricRecord({k: v for k, v in dict(content["eval"]).items() if k != "sq_err"})

CASES = {
    "claimed n_train = 1e12": {1: H._set("train", n_train=1e12)},
    "claimed n_train = NaN": {1: H._set("train", n_train=float("nan"))},
    "claimed n_train = -5": {1: H._set("train", n_train=-5.0)},
    "eval count=1e9, sq_err=0": {2: H._set("eval", count=1e9, sq_err=0.0)},
    "eval sq_err NaN": {2: H._set("eval", sq_err=float("nan"))},
    "eval count negative": {2: H._set("eval", count=-3.0)},
    "reply as client 0 after registering": {1: lambda c, m: H._set("node", cid=0)(c, m) if m.content["config"]["round"] > 0 else None},
    "client id -1": {1: H._set("node", cid=-1)},
    "float64 values": {1: H._rows(lambda k, a: a.astype("float64") if not k.endswith("#index") else a)},
    "float16 values": {1: H._rows(lambda k, a: a.astype("float16") if not k.endswith("#index") else a)},
    "float row indices": {1: H._rows(lambda k, a: a.astype("float32") if k.endswith("#index") else a)},
    "every index on one row": {1: H._rows(lambda k, a: 0 * a if k.endswith("#index") else a)},
    "1e30 in every row": {1: H._rows(lambda k, a: 0 * a + 1e30 if k.endswith("#values") else a)},
    "a reshaped dense tensor": {1: H._rows(lambda k, a: a.reshape(-1).repeat(2) if "#" not in k else a)},
    "indices without values, eval without sq_err": {0: _strip},
}


def main(argv=None):
    ap = argparse.ArgumentParser(); add_json_argument(ap); a = ap.parse_args(argv)
    torch.set_num_threads(1)
    H.TaskIdentity.run_id, H.TaskIdentity.node_id, H.TaskIdentity.task_id = 1, 0, 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp); csv = tmp / "ratings.csv"
        synthetic_movielens(n_users=60, n_items=120, n_ratings=2400, seed=3).ratings.to_csv(csv, index=False)
        honest, hglob = H._serve(H._params(csv, tmp, output_dir=str(tmp / "honest")))
        for name, tamper in CASES.items():
            flower._NODE_CACHE.clear()
            res, glob = H._serve(H._params(csv, tmp, output_dir=str(tmp / f"case{len(rows)}")), tamper)
            rej = [x for h in res["rounds"] for x in h["rejected_updates"]]
            rev = [x for h in res["rounds"] for x in h["rejected_evaluations"]]
            rows.append(dict(case=name, rejected_updates=len(rej), rejected_evaluations=len(rev),
                             reason=(rej or rev or [dict(reason="(nothing to reject: the claim is never read)")])[0]["reason"],
                             honest_rmse=honest["final"]["test_rmse"], rmse=res["final"]["test_rmse"],
                             model_equal=H._same_model(glob, hglob), finished=True))
    print(f"{'case':45} {'upd':>4} {'eval':>4} {'RMSE':>8} {'honest':>8} {'same model':>10}  first reason")
    for r in rows:
        print(f"{r['case']:45} {r['rejected_updates']:4d} {r['rejected_evaluations']:4d} {r['rmse']:8.4f} {r['honest_rmse']:8.4f} "
              f"{str(r['model_equal']):>10}  {r['reason'][:90]}")
    write_json(a.json, dict(rows=rows))


if __name__ == "__main__":
    main()
