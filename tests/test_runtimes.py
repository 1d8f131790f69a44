"""One federated round, three runtimes: `engine='sequential'`, `engine='vectorized'` (`run_federated`) and Flower's simulation
(`run_flower`, what `run_federated(engine='flower')` calls). A user swaps one for another and relies on the same answer:
the same poisoned client left out for the same reasons, the same figures, the same record fields and types.

How a client is poisoned, and why this way. The ratings loader refuses NaN ratings (`validate_ratings`: "every rating must
be a finite number") and out-of-scale ones, so no ratings file can poison one client. Instead five training ratings of
client `BAD` are set to NaN in a prepared `Experiment` (its `train` table; the rows are picked with the same `partition`
call `build_federation` makes). That client's local training then yields non-finite parameters, and each runtime's own
acceptance path must find them:
  * sequential: `local_train_sequential` runs `update_problem` on the client's `ClientResult`;
  * vectorized: the batched non-finite count of `_local_train_vectorized`, then `update_problem` for the reason;
  * Flower: the nodes (ClientApps in Ray worker processes, a process each, so an in-process monkeypatch would not reach
    them) load their client from the node cache (`load_node` -> `load_client` under `node_folder()`, FEDREC_CACHE, which
    the workers inherit). The cache is filled from the poisoned federation with `save_clients` + `save_node_meta` before the
    run, so node `BAD` trains on exactly the rows the other engines train on; `load_node` finds the meta file and builds
    nothing itself. `handle_message` then refuses its own update (with its private rows, which the server never sees) and
    the server records the refusal; the server's own federation (clean ratings, the same rows) is used only for sizes and
    evaluation of the orphan held-out rows.
The sequential and vectorized runs get the same poisoned `Experiment` through `run_federated(experiment=...)`.

Private rows (case b): a node keeps its rows in `context.state` inside a Ray worker, out of reach of the test, so what is
checked is what the rows produce: the rejected client's `global_mae` in `results['clients']` (its nodes' evaluation with
its own rows in place) equals the MAE of the run's final shared parameters with the *initial* user rows of its users, in
every runtime; for the built-in engines the served rows themselves (`recommender.net`) are compared with the initial ones.

Each Flower simulation runs on one Ray CPU (about 20 s on two cores); torch runs at one thread here and in the workers
(`one_thread`), the summation order of Flower's nodes (see tests/test_flower_implicit.py)."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import fedrec_nb.flower as flower
from fedrec_nb.synthetic import synthetic_movielens
from fedrec_nb.experiment import prepare_experiment
from fedrec_nb.federated import eval_sums, load_params, run_federated
from fedrec_nb.federation import build_federation, federation_key, save_clients
from fedrec_nb.flower import node_folder, run_flower, save_node_meta
from fedrec_nb.parameters import resolve_params
from fedrec_nb.partitions import partition

ENGINES = ("sequential", "vectorized", "flower")
BAD = 1   # the poisoned client
BASE = dict(model="mf", partition="iid", num_clients=4, rounds=2, local_epochs=1, batch_size=256, lr=3e-3,
            strategy="fedavg", embedding_dim=8, device="cpu", seed=0, test_size=0.1, split="random")
IMPLICIT = dict(BASE, num_clients=3, batch_size=128, lr=1e-2, split="leave_one_out", objective="implicit",
                num_negatives=2, loss="bpr")
# Round-record keys that exist in one runtime only, on purpose (listed, not silently skipped): Flower counts the bytes of the
# messages its server really sent (`_exchange`: the whole shared model to every node), the engines only the modelled traffic
# (`bytes_down` / `bytes_up`, which every runtime records alike).
RUNTIME_ONLY_ROUND_KEYS = {"sequential": set(), "vectorized": set(), "flower": {"bytes_sent"}}


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest: torch at one thread, here and in the Ray workers


@pytest.fixture(scope="module")
def node_cache(tmp_path_factory):
    "An empty FEDREC_CACHE for the module (the Flower nodes' client files live under it) and no node kept in memory."
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDREC_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(flower, "_NODE_CACHE", {})
        yield node_folder()


def _csv(tmp_path_factory, name, **kw) -> str:
    path = tmp_path_factory.mktemp(name) / "ratings.csv"
    synthetic_movielens(seed=1, **kw).ratings.to_csv(path, index=False)
    return str(path)


def poisoned_experiment(params: dict, out: Path, cid: int = BAD, n_rows: int = 5):
    """The run's `Experiment` with `n_rows` of client `cid`'s training ratings set to NaN, and the Flower node cache filled
    with that federation's client files (so every runtime trains client `cid` on the same poisoned rows)."""
    p = resolve_params(params)
    exp = prepare_experiment(p["dataset"], p["data_dir"], p["seed"], p["test_size"], p["split"], out)
    parts = partition(p["partition"], exp.train, exp.data, p["num_clients"], p["alpha"], p["seed"], p["demographic_key"],
                      p["dirichlet_key"])
    rating = exp.train.rating.to_numpy(copy=True)
    rating[np.asarray(parts[cid])[:n_rows]] = np.nan
    exp.train = exp.train.assign(rating=rating)
    fed = build_federation(dict(params, engine="sequential", output_dir=str(out)), exp)
    assert [bool(torch.isnan(c.ratings).any()) for c in fed.clients] == [c.cid == cid for c in fed.clients]
    assert federation_key(fed.params) == federation_key(dict(params, engine="flower"))   # the key the nodes look up
    save_clients(fed, node_folder()); save_node_meta(fed, node_folder())
    return exp


def _run_all(params: dict, out: Path, experiment=None, engines=ENGINES) -> dict:
    runs = {}
    for e in engines:
        if e == "flower": runs[e] = run_flower(dict(params, output_dir=str(out / e)), num_cpus=1)
        else: runs[e] = run_federated(**params, output_dir=str(out / e), engine=e, experiment=experiment,
                                      progress=False, plots=False, ranking=False)
        assert runs[e]["final"]["engine"] == e   # the vectorized engine did not fall back to the sequential one
    return runs


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory, node_cache):
    "Case (a): shared user rows, client BAD with NaN ratings, through the three runtimes."
    p = dict(BASE, dataset=_csv(tmp_path_factory, "shared", n_users=60, n_items=200, n_ratings=3000))
    out = tmp_path_factory.mktemp("shared_runs")
    return p, _run_all(p, out, poisoned_experiment(p, out / "exp"))


@pytest.fixture(scope="module")
def private_runs(tmp_path_factory, node_cache):
    "Case (b): private user rows (one user per client's rows: partition='user'), client BAD with NaN ratings."
    p = dict(BASE, dataset=_csv(tmp_path_factory, "private", n_users=60, n_items=200, n_ratings=3000),
             partition="user", private_user_embeddings=True)
    out = tmp_path_factory.mktemp("private_runs")
    return p, _run_all(p, out, poisoned_experiment(p, out / "exp"))


@pytest.fixture(scope="module")
def implicit_runs(tmp_path_factory, node_cache):
    "The implicit objective (shared rows, clean data): every user leaves at least 99 unrated films."
    p = dict(IMPLICIT, dataset=_csv(tmp_path_factory, "implicit", n_users=60, n_items=400, n_ratings=2500))
    return p, _run_all(p, tmp_path_factory.mktemp("implicit_runs"))


def _problems(reason: str) -> list:
    """The parts of an `update_problem` reason ('item_embedding.weight: 1,112 non-finite values', 'private ...' for private
    rows), sorted: the parameters it names with their counts. Sorted because their order is not fixed: `train_client`
    iterates its private rows as `set(private_rows)`, whose order of names changes with the process's hash seed
    (PYTHONHASHSEED: Flower's Ray workers and every new interpreter draw their own)."""
    return sorted(part.strip() for part in reason.split("; "))


def _names(reason: str) -> list:
    return [part.split(":")[0] for part in _problems(reason)]


def _rejections(res) -> list:
    return [[(x["cid"], _problems(x["reason"])) for x in r["rejected_updates"]] for r in res["rounds"]]


def _figures(d: dict) -> dict:
    "The numeric evaluation figures of a round record or of `final`."
    return {k: v for k, v in d.items() if k.startswith(("test_", "client_mae")) or k in ("train_loss", "local_mae")}


def _close(a, b, tol=1e-6) -> bool:
    "Equal within `tol`, or both missing (NaN in memory, None once written as JSON)."
    na = a is None or (isinstance(a, float) and math.isnan(a))
    nb = b is None or (isinstance(b, float) and math.isnan(b))
    return na and nb if (na or nb) else abs(float(a) - float(b)) <= tol


def _check_rejections_and_figures(runs: dict, private: bool):
    ref = runs["sequential"]
    for r in ref["rounds"]:   # the poison works: client BAD alone is left out, every round, with its parameters named
        assert [x["cid"] for x in r["rejected_updates"]] == [BAD]
        names = _names(r["rejected_updates"][0]["reason"])
        assert "item_embedding.weight" in names
        assert any(n.startswith("private ") for n in names) == private, names
    for e in ("vectorized", "flower"):
        res = runs[e]
        assert _rejections(res) == _rejections(ref), e
        assert all(not r["skipped"] for r in res["rounds"]), e
        for i, (a, b) in enumerate(zip(ref["rounds"], res["rounds"], strict=True)):
            fa, fb = _figures(a), _figures(b)
            assert set(fa) == set(fb), (e, i, set(fa) ^ set(fb))
            bad = {k: (fa[k], fb[k]) for k in fa if not _close(fa[k], fb[k])}
            assert not bad, f"{e} round {i + 1}: {bad}"
        fa, fb = _figures(ref["final"]), _figures(res["final"])
        assert set(fa) <= set(fb), (e, set(fa) - set(fb))
        bad = {k: (fa[k], fb[k]) for k in fa if not _close(fa[k], fb[k])}
        assert not bad, f"{e} final: {bad}"
        assert all(np.isfinite(fa[k]) for k in fa if k.startswith("test_"))


# --- 1. a poisoned client through the three runtimes ---------------------------------------------------------------------
def test_poisoned_client_rejected_alike_with_shared_rows(shared_runs):
    "(a) NaN ratings of client BAD: the same rejected cid per round, reasons naming the same parameters, the same figures."
    _, runs = shared_runs
    _check_rejections_and_figures(runs, private=False)


def test_poisoned_client_rejected_alike_with_private_rows(private_runs):
    "(b) With private user rows: the same rejections (the private rows named too) and figures in every runtime."
    _, runs = private_runs
    _check_rejections_and_figures(runs, private=True)


def _mae_with_initial_rows(fed, shared: dict, cid: int) -> float:
    "MAE on client `cid`'s held-out rows of the shared parameters `shared` with the initial user rows (rows that never moved)."
    load_params(fed.model, {**fed.initial_params, **shared})   # `shared` holds no user table: the initial ones stay
    c = fed.clients[cid]
    s = eval_sums(fed.model, fed.features, c.test_users, c.test_items, c.test_ratings, fed.rating_scale)
    return s["abs_err"] / s["count"]


def test_rejected_client_keeps_its_initial_private_rows(private_runs, tmp_path):
    """(b) The rejected client's private rows are left as they were: the built-in engines serve its users' initial rows; in
    every runtime its own evaluation (`global_mae`) is that of the final shared model with the initial rows of its users."""
    p, runs = private_runs
    fed = build_federation(dict(p, engine="sequential", output_dir=str(tmp_path)))
    names = fed.model.user_params
    mine = torch.unique(fed.clients[BAD].users)
    other = torch.unique(fed.clients[(BAD + 1) % p["num_clients"]].users)
    for e in ("sequential", "vectorized"):
        served = dict(runs[e]["recommender"].net.named_parameters())
        for n in names:
            assert torch.equal(served[n].detach()[mine], fed.initial_params[n][mine]), (e, n)
            assert not torch.equal(served[n].detach()[other], fed.initial_params[n][other]), (e, n)   # accepted clients moved
    for e in ENGINES:
        if e == "flower":   # the shared parameters the server wrote (the private tables never leave the nodes)
            shared = torch.load(Path(runs[e]["params"]["output_dir"]) / "global_params.pt")
            assert not set(shared) & set(names)
        else: shared = {n: t.detach() for n, t in runs[e]["recommender"].net.named_parameters() if n not in names}
        want = _mae_with_initial_rows(fed, shared, BAD)
        got = runs[e]["clients"][BAD]["global_mae"]
        assert abs(got - want) < 1e-6, (e, got, want)
        ok = (BAD + 1) % p["num_clients"]   # an accepted client's rows moved: its MAE is not the initial rows' one
        assert abs(runs[e]["clients"][ok]["global_mae"] - _mae_with_initial_rows(fed, shared, ok)) > 1e-6, e


def test_poisoned_round_counts_agree(shared_runs, private_runs):
    "The counts of each round (clients, answers, rejections, training samples) are the same in every runtime."
    keys = ("round", "clients", "clients_answered", "sampled", "dropped", "rejected", "skipped", "samples", "node_errors",
            "bytes_down", "bytes_up", "clients_evaluated")
    for _, runs in (shared_runs, private_runs):
        ref = [{k: r[k] for k in keys} for r in runs["sequential"]["rounds"]]
        for e in ("vectorized", "flower"):
            got = [{k: r[k] for k in keys} for r in runs[e]["rounds"]]
            diff = [(i + 1, {k: (a[k], b[k]) for k in keys if a[k] != b[k]}) for i, (a, b) in enumerate(zip(ref, got, strict=True))]
            assert not any(d for _, d in diff), f"{e}: {diff}"


def test_poisoned_client_rows_agree(shared_runs, private_runs):
    "`results['clients']`: the same row per client in every runtime, the rejected client's included (figures within 1e-6)."
    for _, runs in (shared_runs, private_runs):
        ref = runs["sequential"]["clients"]
        for e in ("vectorized", "flower"):
            for a, b in zip(ref, runs[e]["clients"], strict=True):
                diff = {k: (a[k], b.get(k)) for k in a if not _close(a[k], b.get(k))}
                assert not diff, f"{e} client {a['cid']}: {diff}"


# --- 2. the same record fields and types ---------------------------------------------------------------------------------
def _kind(v):
    "A value's type as a user handles it: numbers by kind (numpy's too), None apart, containers by their items."
    if v is None: return "None"
    if isinstance(v, (bool, np.bool_)): return "bool"
    if isinstance(v, (int, np.integer)): return "int"
    if isinstance(v, (float, np.floating)): return "float"
    if isinstance(v, str): return "str"
    if isinstance(v, dict): return {k: _kind(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)): return [_kind(x) for x in v]
    return type(v).__name__


def _runs_for(case, shared_runs, implicit_runs):
    return (shared_runs if case == "rating" else implicit_runs)[1]


@pytest.mark.parametrize("case", ["rating", "implicit"])
def test_round_records_have_the_same_keys_and_types(case, shared_runs, implicit_runs):
    """`results['rounds'][i]`: the same keys (besides `RUNTIME_ONLY_ROUND_KEYS`, checked to be there) and the same value
    types in every runtime. The rating case is the poisoned run (its records hold rejections)."""
    runs = _runs_for(case, shared_runs, implicit_runs)
    ref = runs["sequential"]["rounds"]
    for e in ("vectorized", "flower"):
        for i, (a, b) in enumerate(zip(ref, runs[e]["rounds"], strict=True)):
            only = RUNTIME_ONLY_ROUND_KEYS[e]
            assert only <= set(b), (e, only - set(b))
            assert set(a) == set(b) - only, f"{e} round {i + 1}: only sequential {sorted(set(a) - set(b))}, only {e} {sorted(set(b) - only - set(a))}"
            diff = {k: (_kind(a[k]), _kind(b[k])) for k in a if _kind(a[k]) != _kind(b[k])}
            assert not diff, f"{e} round {i + 1} (sequential, {e}): {diff}"


@pytest.mark.parametrize("case", ["rating", "implicit"])
def test_client_rows_have_the_same_keys_and_types(case, shared_runs, implicit_runs):
    "`results['clients']`: the same keys in every runtime, and the same value types."
    runs = _runs_for(case, shared_runs, implicit_runs)
    ref = runs["sequential"]["clients"]
    for e in ("vectorized", "flower"):
        rows = runs[e]["clients"]
        assert len(rows) == len(ref)
        for a, b in zip(ref, rows):
            assert set(a) == set(b), f"{e} client {a['cid']}: only sequential {sorted(set(a) - set(b))}, only {e} {sorted(set(b) - set(a))}"
        diff = {(a["cid"], k): (_kind(a[k]), _kind(b[k])) for a, b in zip(ref, rows) for k in a if _kind(a[k]) != _kind(b[k])}
        assert not diff, f"{e} (sequential, {e}): {diff}"
