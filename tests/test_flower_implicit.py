"""The implicit objective (issue 12) on Flower: nodes train with `train_client`'s own negatives; with shared user rows the
server ranks each user's held-out item with the built-in engine's `topn_record`, with private rows (and pfedrec's kept item
rows) each node ranks its own users and sends sums; a simulation gives the sequential engine's figures either way.

Each simulation runs on one Ray CPU (about 20 s on two cores) on a small synthetic ratings file.

Every test here runs torch at one thread (`one_thread`): Flower's Ray workers (`client_resources` num_cpus=1) train at
one thread, and the sequential engine at torch's default (one per core) sums in another order. The difference is in the
last bits (after one round at most 1.8e-7 on item_mlp.weight, 1.1e-4 already on predict.bias) and leaves every figure
equal within 1e-6, but Adam turns parameters whose gradient is pure rounding noise into steps of about lr: under BPR,
softplus(s_neg - s_pos), whatever adds the same amount to every score of a user cancels, so NCF's output bias
`predict.bias` and the bias of an MLP unit active on every (user, item) pair (`mlp.2.bias[3]`, its pre-activation at
least 0.014 on all 60 x 342 pairs) have a true gradient of exactly 0 (float64 Jacobian of the per-user-centred scores: 0).
Measured after two rounds at the default two threads: mlp.2.bias[3] 0.0085 and predict.bias 0.0014 apart (0.0094 and
0.0036 with private rows, and mlp.0.weight's user columns 9.5e-6 apart through the private user rows), centred scores
within 1e-7 (8e-7). At one thread on both sides the two engines are bitwise identical (every parameter 0 apart), so the
tests keep comparing every parameter within 1e-6: a real divergence (other negatives, other aggregation) still fails."""
import os
from pathlib import Path

import pytest
import torch

from fedrec_nb.synthetic import synthetic_movielens
from fedrec_nb.experiment import ParameterError, load_results
from fedrec_nb.federated import run_federated
from fedrec_nb.flower import LocalDeployment, check_flower_params, run_config_from_params, run_flower
from fedrec_nb.parameters import DEFAULTS, resolve_params

ROOT = Path(__file__).resolve().parents[1]
slow = pytest.mark.skipif(os.environ.get("FEDREC_SLOW_TESTS") != "1", reason="about a minute on 2 cores: set FEDREC_SLOW_TESTS=1")

BASE = dict(model="ncf", partition="iid", num_clients=3, rounds=2, local_epochs=1, batch_size=128, lr=1e-2,
            strategy="fedavg", embedding_dim=8, device="cpu", seed=0, split="leave_one_out", objective="implicit",
            num_negatives=2, loss="bpr")   # not the defaults: the nodes must read them from the run's parameters


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest: torch at one thread, here and in the Ray workers


@pytest.fixture(scope="module")
def synthetic_csv(tmp_path_factory):
    "60 users, 400 films, 2,500 generated ratings (every user leaves at least 99 unrated films for the sampled protocol)."
    path = tmp_path_factory.mktemp("synthetic") / "ratings.csv"
    synthetic_movielens(n_users=60, n_items=400, n_ratings=2500, seed=1).ratings.to_csv(path, index=False)
    return path


def test_flower_accepts_implicit_and_refuses_what_it_cannot_evaluate():
    resolve_params(**{**BASE, "engine": "flower"})   # no longer refused for engine='flower'
    p = {**DEFAULTS, **BASE}
    check_flower_params(p)
    check_flower_params({**p, "private_user_embeddings": True})               # the nodes rank their own users
    check_flower_params({**p, "model": "pfedrec", "private_user_embeddings": True})
    for bad, name in [(dict(secure_aggregation=True), "secure_aggregation"),
                      (dict(model="pfedrec"), "private_user_embeddings"),   # pfedrec's score functions are private rows
                      (dict(split="random"), "split")]:
        with pytest.raises(ParameterError, match=name): check_flower_params({**p, **bad})


def test_simulation_matches_sequential(tmp_path, synthetic_csv):
    "Same per-round HR@10/NDCG@10 and training loss, same final sampled and full figures, same model, same record names."
    p = dict(BASE, dataset=str(synthetic_csv))
    seq = run_federated(**p, output_dir=str(tmp_path / "seq"), engine="sequential", progress=False, plots=False)
    fl = run_flower(dict(p, output_dir=str(tmp_path / "fl")), num_cpus=1)
    assert fl["params"]["engine"] == "flower" and fl["params"]["objective"] == "implicit"
    assert len(fl["rounds"]) == p["rounds"] and [r["clients_answered"] for r in fl["rounds"]] == [3, 3]
    for a, b in zip(seq["rounds"], fl["rounds"], strict=True):
        for k in ("test_hr@10", "test_ndcg@10", "train_loss"):
            assert b[k] == pytest.approx(a[k], abs=1e-6), k
        assert set(a) - set(b) == set() and b["eval_seconds"] > 0   # every record run_federated writes, and its names
    assert fl["rounds"][0]["test_ndcg@10"] != fl["rounds"][1]["test_ndcg@10"]   # the model moved between the rounds
    for k in ("test_hr@10", "test_ndcg@10", "test_hr@10_full", "test_ndcg@10_full"):
        assert fl["final"][k] == pytest.approx(seq["final"][k], abs=1e-6), k
    assert "test_rmse" not in fl["final"]   # no rating figures of a logit model
    got = torch.load(tmp_path / "fl" / "global_params.pt")   # every parameter, the BPR-blind biases too (module docstring)
    assert max(float((got[n] - t.detach()).abs().max()) for n, t in seq["recommender"].net.named_parameters()) < 1e-6
    assert load_results(tmp_path / "fl")["rounds"][1]["test_hr@10"] == fl["rounds"][1]["test_hr@10"]   # as written to disk


@pytest.mark.parametrize("model", ["ncf", "pfedrec"])
def test_private_rows_ranked_on_the_nodes_match_sequential(tmp_path, synthetic_csv, model):
    """Private user rows (and pfedrec's own item rows) never leave the nodes: each ranks its users' held-out items and sends
    counts and sums; the per-round and final figures (both protocols, pfedrec's global-item ones) equal the sequential engine's."""
    p = dict(BASE, dataset=str(synthetic_csv), model=model, private_user_embeddings=True)
    seq = run_federated(**p, output_dir=str(tmp_path / "seq"), engine="sequential", progress=False, plots=False)
    fl = run_flower(dict(p, output_dir=str(tmp_path / "fl")), num_cpus=1)
    assert fl["recommender"] is None and [r["clients_answered"] for r in fl["rounds"]] == [3, 3]
    for a, b in zip(seq["rounds"], fl["rounds"], strict=True):
        for k in ("test_hr@10", "test_ndcg@10", "train_loss"):
            assert b[k] == pytest.approx(a[k], abs=1e-6), k
        assert set(a) - set(b) == set() and b["eval_seconds"] > 0
    assert fl["rounds"][0]["test_ndcg@10"] != fl["rounds"][1]["test_ndcg@10"]   # the model moved between the rounds
    names = [k for k in seq["final"] if k.startswith(("test_hr@10", "test_ndcg@10"))]
    assert len(names) == (8 if model == "pfedrec" else 4)   # sampled, full (and the global item rows' for pfedrec)
    for k in names: assert fl["final"][k] == pytest.approx(seq["final"][k], abs=1e-6), k
    if model == "pfedrec":   # the kept item rows were used: the personal figures differ from the global rows'
        assert fl["final"]["test_ndcg@10"] != fl["final"]["test_ndcg@10_global_items"]
    got = torch.load(tmp_path / "fl" / "global_params.pt")
    assert not set(got) & set(seq["recommender"].net.user_params)   # the private tables are not written
    assert max(float((got[n] - t.detach()).abs().max()) for n, t in seq["recommender"].net.named_parameters() if n in got) < 1e-6


@slow
def test_pfedrec_loopback_deployment_matches_sequential(tmp_path, synthetic_csv):
    "The deployed app (a SuperLink and 3 SuperNodes on 127.0.0.1): the nodes build their ranking rows from the dataset they load."
    p = dict(BASE, dataset=str(synthetic_csv), model="pfedrec", private_user_embeddings=True)
    seq = run_federated(**p, output_dir=str(tmp_path / "seq"), engine="sequential", progress=False, plots=False)
    with LocalDeployment(num_nodes=3, workdir=tmp_path / "fl") as d:
        res = d.run(ROOT / "flower_app", run_config_from_params(dict(p, output_dir=str(tmp_path / "deployed"))), timeout=400)
    assert [r["clients_answered"] for r in res["rounds"]] == [3, 3]
    for a, b in zip(seq["rounds"], res["rounds"], strict=True):
        for k in ("test_hr@10", "test_ndcg@10"): assert b[k] == pytest.approx(a[k], abs=1e-6), k
    for k in [k for k in seq["final"] if k.startswith(("test_hr@10", "test_ndcg@10"))]:
        assert res["final"][k] == pytest.approx(seq["final"][k], abs=1e-6), k
