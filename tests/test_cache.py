"""The clients' cache (`fedrec_nb.federation`, `fedrec_nb.flower`'s node files) serves only the data it was built from.

`federation_key` hashes the data's contents (`dataset_fingerprint`) with the parameters that decide the clients, so a
ratings file edited in place gets a new cache folder; a damaged cached file is named in a `CacheWarning`, deleted and
rebuilt, never used. Small synthetic ratings written to a CSV in `tmp_path`, and a cache folder of the test's own."""
import os
import re
import shutil

import pytest
import torch

from fedrec_nb import federation as fm
from fedrec_nb.downloads import sha256sum
from fedrec_nb.federation import (CacheError, CacheWarning, build_federation, dataset_fingerprint, federation_key,
                                  load_client, read_cached)
from fedrec_nb.parameters import resolve_params
from fedrec_nb.synthetic import synthetic_movielens

pytest.importorskip("flwr")
from fedrec_nb import flower   # noqa: E402
from fedrec_nb.flower import load_node, node_step, node_topn   # noqa: E402


def _write(path, n_users=60, seed=1, flip=False):
    "Synthetic ratings as a CSV at `path`, replaced atomically (as an editor saving the file does); `flip`: 6 - rating."
    r = synthetic_movielens(n_users=n_users, n_items=400, n_ratings=25 * n_users, seed=seed).ratings
    if flip: r = r.assign(rating=6 - r.rating)
    tmp = path.with_suffix(".tmp")
    r.to_csv(tmp, index=False); os.replace(tmp, path)
    return path


@pytest.fixture
def run(tmp_path, monkeypatch):
    "A ratings file, a cache folder and the run's parameters; no node kept in memory from another test."
    monkeypatch.setenv("FEDREC_CACHE", str(tmp_path / "fedrec_cache"))
    monkeypatch.setattr(flower, "_NODE_CACHE", {})
    csv = _write(tmp_path / "ratings.csv")
    p = resolve_params(dict(dataset=str(csv), model="mf", num_clients=3, embedding_dim=8, device="cpu",
                            output_dir=str(tmp_path / "run")), engine="flower")
    return csv, tmp_path / "cache", p


def _fresh(p, cid):
    return build_federation(dict(p, engine="sequential")).client(cid)


def _same_client(a, b):
    for k in ("users", "items", "ratings", "test_users", "test_items", "test_ratings"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert a.cid == b.cid


def test_editing_the_ratings_file_changes_the_key_and_the_data(run):
    csv, cache, p = run
    assert dataset_fingerprint(p) == sha256sum(csv)   # the file's bytes, streamed
    k0 = federation_key(p)
    old = load_client(p, 0, cache)
    _write(csv, flip=True)                             # same path, other ratings
    assert federation_key(p) != k0
    new = load_client(p, 0, cache)
    assert torch.equal(new.users, old.users) and torch.equal(new.ratings, 6 - old.ratings)
    _same_client(new, _fresh(p, 0))
    assert sorted(x.name for x in cache.iterdir()) == sorted([k0, federation_key(p)])   # the old folder is never read again


def test_a_file_with_more_users_works_after_the_edit(run):
    csv, cache, p = run
    nodes = [load_node(p, cid, cache) for cid in range(3)]
    assert nodes[0].features.n_users == 60
    _write(csv, n_users=80, seed=2)                    # the file gains users: the same process, the same folder
    fed = build_federation(dict(p, engine="sequential"))
    assert fed.features.n_users == 80
    for cid in range(3):
        node = load_node(p, cid, cache)
        assert node.features.n_users == 80 and node.key == federation_key(p)
        _same_client(node.client, fed.client(cid))
        sums, res = node_step(node, fed.initial_params, None, 0, True, True)   # the server's model fits the node's
        assert sums["count"] == fed.client(cid).n_test and res.n_train == fed.client(cid).n_train


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other client"])
def test_a_damaged_client_file_is_named_and_rebuilt(run, damage):
    csv, cache, p = run
    load_client(p, 0, cache)
    f = cache / federation_key(p) / "client_1.pt"
    if damage == "truncated": f.write_bytes(f.read_bytes()[:200])
    elif damage == "garbage": f.write_bytes(b"not a torch file")
    else: shutil.copy(cache / federation_key(p) / "client_0.pt", f)
    with pytest.warns(CacheWarning, match=re.escape(str(f))):
        c = load_client(p, 1, cache)
    _same_client(c, _fresh(p, 1))
    with pytest.MonkeyPatch.context() as mp:           # rebuilt once: now it is read as it is
        mp.setattr(fm, "build_federation", lambda *a, **k: pytest.fail("rebuilt a second time"))
        _same_client(load_client(p, 1, cache), c)


def test_a_truncated_node_meta_file_is_named_and_rebuilt(run):
    csv, cache, p = run
    first = load_node(p, 0, cache)
    meta = [m for m in (cache / federation_key(p)).glob("meta_*.pt")]
    assert len(meta) == 1
    meta[0].write_bytes(meta[0].read_bytes()[:300])
    flower._NODE_CACHE.clear()                         # a fresh node process
    with pytest.warns(CacheWarning, match=re.escape(str(meta[0]))):
        node = load_node(p, 0, cache)
    fed = build_federation(dict(p, engine="sequential"))
    _same_client(node.client, fed.client(0))
    assert set(node.initial_params) == set(fed.initial_params)
    for n, t in fed.initial_params.items(): assert torch.equal(node.initial_params[n], t), n
    assert node.features.n_users == first.features.n_users == fed.features.n_users
    assert torch.equal(node.features.genres, fed.features.genres)


def test_a_truncated_topn_file_is_named_and_rebuilt(run):
    csv, cache, p = run
    q = resolve_params(dict(p, model="pfedrec", objective="implicit", split="leave_one_out", loss="bpr", num_negatives=2,
                            private_user_embeddings=True), engine="flower")
    node = load_node(q, 1, cache)
    good = node_topn(node)
    f = cache / node.key / "topn_1.pt"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.warns(CacheWarning, match=re.escape(str(f))):
        again = node_topn(node)
    for k, v in vars(good).items():
        assert torch.equal(v, getattr(again, k)) if isinstance(v, torch.Tensor) else v == getattr(again, k), k


def test_a_file_still_bad_after_rebuilding_is_an_error_naming_it(tmp_path):
    f = tmp_path / "client_0.pt"
    f.write_bytes(b"junk")
    with pytest.warns(CacheWarning, match=re.escape(str(f))), pytest.raises(CacheError, match=re.escape(str(f))):
        read_cached(f, lambda: f.write_bytes(b"still junk"))


def test_the_same_contents_at_another_path(run, tmp_path):
    "The data part of the key is the contents; the path is the `dataset` parameter itself, so the folder differs."
    csv, cache, p = run
    copy = tmp_path / "elsewhere" / "ratings.csv"
    copy.parent.mkdir(); shutil.copy(csv, copy)
    q = dict(p, dataset=str(copy))
    assert dataset_fingerprint(q) == dataset_fingerprint(p)
    assert federation_key(q) != federation_key(p)
    _same_client(load_client(q, 2, cache), load_client(p, 2, cache))


def test_the_file_is_hashed_once_per_process(run, monkeypatch):
    csv, cache, p = run
    calls = []
    monkeypatch.setattr(fm, "_DIGESTS", {})
    monkeypatch.setattr(fm, "sha256sum", lambda path: calls.append(path) or sha256sum(path))
    for _ in range(3): load_node(p, 0, cache)          # one load, then two messages served from memory
    load_client(p, 1, cache)
    assert len(calls) == 1
    _write(csv, flip=True)                             # a new version of the file is hashed again
    federation_key(p)
    assert len(calls) == 2
