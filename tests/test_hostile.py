"""A server that trusts no node: the real server loop (`fedrec_nb.flower.serve`) and the real ClientApp work
(`handle_message`), with a stand-in for the network (`FakeGrid`) whose nodes may rewrite their replies as a hostile or
broken participant would. Every case: the run ends and writes results.json, the bad piece is rejected and counted with its
reason, and the figures equal the honest run's where the attacker is left out."""
import copy
import numpy as np
import pytest
import torch

flower = pytest.importorskip("fedrec_nb.flower")
from flwr.app import ConfigRecord, Context, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedrec_nb.federated import run_federated
from fedrec_nb.parameters import DEFAULTS
from fedrec_nb.synthetic import synthetic_movielens


class FakeGrid:
    "The Grid API `serve` uses, delivering each message to `handle_message` of an in-process node; `tamper[node]` rewrites its replies."
    def __init__(self, params, n, tamper=None):
        self.params, self.tamper = params, tamper or {}
        self.ctx = {k: Context(1, 100 + k, {"partition-id": k, "num-partitions": n}, RecordDict(), {}) for k in range(n)}
    def get_node_ids(self): return [100 + k for k in self.ctx]
    def push_messages(self, msgs):
        self.replies, ids = {}, []
        for j, m in enumerate(msgs):
            m.metadata.__dict__["_message_id"] = f"m{j}"   # as a Grid's push gives each message its id
            k = m.metadata.dst_node_id - 100
            TaskIdentity.node_id = 100 + k   # the reply's sender, as a SuperNode sets it
            r = flower.handle_message(m, self.ctx[k], self.params)
            if k in self.tamper: self.tamper[k](r.content, m)
            self.replies[f"m{j}"] = r; ids.append(f"m{j}")
        return ids
    def pull_messages(self, ids):
        return [self.replies.pop(i) for i in sorted(ids, reverse=True) if i in self.replies]   # replies come back in any order


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "ratings.csv"
    synthetic_movielens(n_users=60, n_items=120, n_ratings=2400, seed=3).ratings.to_csv(p, index=False)
    return p


@pytest.fixture(autouse=True)
def run_identity(tmp_path, monkeypatch):
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1   # Message() needs a run, as under flwr
    monkeypatch.setenv("FEDREC_CACHE", str(tmp_path / "cache"))
    flower._NODE_CACHE.clear()
    torch.set_num_threads(1)


def _params(csv, tmp_path, **kw):
    return {**DEFAULTS, "dataset": str(csv), "model": "mf", "num_clients": 3, "rounds": 2, "local_epochs": 1, "embedding_dim": 4,
            "device": "cpu", "engine": "flower", "output_dir": str(tmp_path / "out"), **kw}


def _serve(p, tamper=None):
    res = flower.serve(FakeGrid(p, p["num_clients"], tamper), p)
    return res, torch.load(f"{p['output_dir']}/global_params.pt")


def _same_model(a, b): return all(torch.equal(a[n], b[n]) for n in a)


@pytest.fixture()
def honest(csv, tmp_path):
    p = _params(csv, tmp_path, output_dir=str(tmp_path / "honest"))
    return _serve(p)


def test_the_stand_in_network_runs_the_sequential_experiment(csv, tmp_path, honest):
    seq = run_federated(**{**_params(csv, tmp_path), "engine": "sequential", "output_dir": str(tmp_path / "seq")},
                        progress=False, plots=False, ranking=False)
    assert honest[0]["final"]["test_rmse"] == pytest.approx(seq["final"]["test_rmse"], abs=1e-6)


def _set(record_name, **values):
    def f(content, msg):
        if record_name in content: content[record_name] = type(content[record_name])({**dict(content[record_name]), **values})
    return f


def _rows(fn):
    "Rewrite every array of the node's update with `fn(name, numpy array) -> numpy array`."
    def f(content, msg):
        if "update" not in content: return
        from flwr.app import Array, ArrayRecord
        content["update"] = ArrayRecord({k: Array(fn(k, a.numpy())) for k, a in content["update"].items()})
    return f


def test_a_claimed_size_gives_no_weight(csv, tmp_path, honest):
    res, glob = _serve(_params(csv, tmp_path), {1: _set("train", n_train=1e12)})
    assert _same_model(glob, honest[1]) and res["final"]["test_rmse"] == honest[0]["final"]["test_rmse"]


def test_lying_evaluation_sums_are_left_out_and_listed(csv, tmp_path, honest):
    res, glob = _serve(_params(csv, tmp_path), {2: _set("eval", count=1e9, sq_err=0.0)})
    assert _same_model(glob, honest[1])   # training is untouched
    for h in res["rounds"]:
        assert [x["cid"] for x in h["rejected_evaluations"]] == [2] and "count" in h["rejected_evaluations"][0]["reason"]
    assert res["final"]["test_rmse"] > 0.3   # not the 0.0009 a trusted lie would give
    res2, _ = _serve(_params(csv, tmp_path, output_dir=str(tmp_path / "nan")), {2: _set("eval", sq_err=float("nan"))})
    assert np.isfinite(res2["final"]["test_rmse"]) and res2["rounds"][0]["rejected_evaluations"][0]["cid"] == 2


@pytest.mark.parametrize("case, tamper, reason", [
    ("another client's id after registering", lambda c, m: _set("node", cid=0)(c, m) if m.content["config"]["round"] > 0 else None,
     "replied as client 0"),
    ("an id not in the federation", _set("node", cid=-1), "not asked"),
    ("float64 values", _rows(lambda k, a: a.astype(np.float64) if not k.endswith("#index") else a), "dtype"),
    ("float16 values", _rows(lambda k, a: a.astype(np.float16) if not k.endswith("#index") else a), "dtype"),
    ("float row indices", _rows(lambda k, a: a.astype(np.float32) if k.endswith("#index") else a), "row index of dtype"),
    ("every index one row", _rows(lambda k, a: np.zeros_like(a) if k.endswith("#index") else a), "repeated"),
    ("1e30 in every row", _rows(lambda k, a: np.full_like(a, 1e30) if k.endswith("#values") else a), "above 1.8e+19"),
    ("a reshaped dense tensor", _rows(lambda k, a: np.concatenate([a.reshape(-1), a.reshape(-1)]) if "#" not in k else a), "shape"),
])
def test_malformed_updates_are_rejected_and_the_run_goes_on(csv, tmp_path, honest, case, tamper, reason):
    res, glob = _serve(_params(csv, tmp_path), {1: tamper})
    for h in res["rounds"][1 if "registering" in case else 0:]:
        assert h["rejected"] >= 1 and any(reason in x["reason"] for x in h["rejected_updates"]), (case, h["rejected_updates"])
    assert all(np.isfinite(t).all() for t in glob.values())


def test_a_reply_without_its_pieces_is_counted_not_fatal(csv, tmp_path):
    def strip(content, msg):
        if "update" in content:
            from flwr.app import ArrayRecord
            content["update"] = ArrayRecord({k: v for k, v in content["update"].items() if not k.endswith("#values")})
        if "eval" in content: content["eval"] = MetricRecord({k: v for k, v in dict(content["eval"]).items() if k != "sq_err"})
    res, _ = _serve(_params(csv, tmp_path), {0: strip})
    assert any("malformed" in x["reason"] for x in res["rounds"][0]["rejected_updates"])
    assert any(x["cid"] == 0 for x in res["rounds"][-1]["rejected_evaluations"])


def test_an_update_from_a_client_not_sampled_is_rejected(csv, tmp_path):
    p = _params(csv, tmp_path, client_fraction=0.5, num_clients=4)
    def push(content, msg):   # node 3 answers with an update whether it was asked or not
        if "update" not in content:
            shared = flower.record_tensors(msg.content["global"])
            content["update"] = flower.update_record({n: torch.zeros_like(t) for n, t in shared.items() if t.dim() == 1})
            content["train"] = MetricRecord({"n_train": 5, "train_loss": 0.0})
    res, _ = _serve(p, {3: push})
    for h in res["rounds"]:
        asked = h["clients"]
        if any(x["cid"] == 3 for x in h["rejected_updates"]):
            assert any("not asked" in x["reason"] for x in h["rejected_updates"] if x["cid"] == 3)
    assert any(any(x["cid"] == 3 and "not asked" in x["reason"] for x in h["rejected_updates"]) for h in res["rounds"])


def test_two_nodes_holding_one_partition_stop_the_run_at_its_start(csv, tmp_path):
    p = _params(csv, tmp_path)
    grid = FakeGrid(p, 3)
    grid.ctx[2] = Context(1, 102, {"partition-id": 1, "num-partitions": 3}, RecordDict(), {})   # partition-ids 0, 1, 1
    with pytest.raises(flower.ParameterError, match="nodes 101, 102 all hold partition-id 1"):
        flower.serve(grid, p)
