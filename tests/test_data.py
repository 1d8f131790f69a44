"""The data notebooks (01 to 01f): real files, bad input and the download path, as a user meets them."""
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedrec_nb import data, downloads, features, movielens, ratings, splits, synthetic


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    return path


def _ml100k_members(u_data=b"1\t10\t4\t881250949\n1\t20\t5\t881250950\n2\t10\t3\t881250951\n"):
    item = lambda i, t: f"{i}|{t}|01-Jan-1995||http://x|" + "|".join(["0"] * 8 + ["1"] + ["0"] * 10) + "\n"
    return {"ml-100k/u.data": u_data,
            "ml-100k/u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n",
            "ml-100k/u.item": (item(10, "Caf\xe9 Movie (1995)") + item(20, "Other (1996)")).encode("latin-1")}


# --- the real data --------------------------------------------------------------------------------

def test_real_ml100k_figures(data_dir):
    d = movielens.load_movielens("ml-100k", data_dir=data_dir, download=False)
    r = d.ratings
    assert (len(r), r.user_id.nunique(), r.item_id.nunique()) == (100_000, 943, 1_682)
    assert r.rating.mean() == pytest.approx(3.52986, abs=1e-5)
    assert r.groupby("user_id").size().min() >= 20
    counts = d.items.explode("genres")["genres"].value_counts()
    assert counts.index[0] == "Drama" and counts.iloc[0] == 725
    assert list(r.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert list(d.users.columns) == ["user_id", "gender", "age", "occupation", "zip_code"]
    assert d.rating_scale == (1.0, 5.0) and d.name == "ml-100k"


def test_real_ml1m_metadata(ml1m_dir):
    users, items = movielens.load_ml1m_metadata(ml1m_dir)
    assert len(items) == 3_883 and len(users) == 6_040
    assert len({g for gs in items.genres for g in gs}) == 18
    assert set(users.age) == set(movielens.ML1M_AGES)
    assert users.occupation.isin(movielens.ML1M_OCCUPATIONS.values()).all()
    # ISO-8859-1 accents come through as characters, not mojibake
    assert items.title.str.contains("é").any() and not items.title.str.contains("Ã").any()


def test_ml1m_metadata_without_ratings_gives_clear_error(ml1m_dir, isolated_cache):
    with pytest.raises(FileNotFoundError, match="ratings.dat is missing"):
        # ml-1m-metadata.zip is not ml-1m.zip; copy it under the release's name to exercise the reader
        import shutil
        shutil.copy(ml1m_dir / "ml-1m-metadata.zip", isolated_cache.parent / "ml-1m.zip")
        movielens.load_movielens("ml-1m", data_dir=isolated_cache.parent, download=False)


# --- where files come from ------------------------------------------------------------------------

def test_search_order_data_dir_then_env_then_cache(tmp_path, isolated_cache, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b, isolated_cache):
        d.mkdir(parents=True, exist_ok=True)
        _zip(d / "ml-100k.zip", _ml100k_members())
    monkeypatch.setenv("FEDREC_DATA", str(b))
    assert downloads.find_movielens("ml-100k", a) == a / "ml-100k.zip"
    assert downloads.find_movielens("ml-100k") == b / "ml-100k.zip"
    monkeypatch.delenv("FEDREC_DATA")
    assert downloads.find_movielens("ml-100k") == isolated_cache / "ml-100k.zip"


def test_extracted_folder_is_read_like_the_zip(tmp_path, isolated_cache):
    z = _zip(tmp_path / "ml-100k.zip", _ml100k_members())
    zipfile.ZipFile(z).extractall(tmp_path / "x")
    from_folder = movielens.load_movielens("ml-100k", data_dir=tmp_path / "x", download=False, verify=False)
    from_zip = movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False, verify=False)
    pd.testing.assert_frame_equal(from_folder.ratings, from_zip.ratings)
    assert from_zip.items.title.tolist() == ["Café Movie (1995)", "Other (1996)"]


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError, match="ml-100k, ml-1m"):
        movielens.load_movielens("ml-10k")


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        movielens.load_movielens("ml-100k", data_dir=tmp_path / "nowhere")


def test_not_found_without_download_says_what_was_tried(tmp_path, isolated_cache):
    with pytest.raises(FileNotFoundError, match="download=False") as e:
        movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False)
    assert str(tmp_path) in str(e.value)


# --- bad files ------------------------------------------------------------------------------------

def test_truncated_zip(tmp_path, isolated_cache):
    z = _zip(tmp_path / "ml-100k.zip", _ml100k_members())
    raw = z.read_bytes()
    z.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ratings.DataFormatError, match="ml-100k.zip.*(truncated|corrupt)"):
        movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False, verify=False)


def test_corrupt_member_fails_crc(tmp_path, isolated_cache):
    z = _zip(tmp_path / "ml-100k.zip", _ml100k_members())
    raw = bytearray(z.read_bytes())
    i = raw.find(b"1\t10\t4")  # stored uncompressed: flip a byte of u.data's content
    raw[i] = ord("7")
    z.write_bytes(bytes(raw))
    with pytest.raises(ratings.DataFormatError, match="corrupt"):
        movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False, verify=False)


@pytest.mark.parametrize("u_data, message", [
    (b"1\t10\t4\t881250949\n1\t20\t5\n", "u.data, line 2"),
    (b"1\t10\t4\t881250949\n1\t20\t5\t1\t9\n", "u.data, line 2: expected 4 fields"),
    (b"1\t10\t4\t881250949\n1\t20\tfive\t881250950\n", "u.data, line 2: rating 'five' is not a number"),
    (b"1\t10\t4\t881250949\n1\t20\t6\t881250950\n", "outside the scale 1.0..5.0.*line 2"),
    (b"1\t10\t4\t881250949\n1\t10\t5\t881250950\n", r"share a \(user_id, item_id\) pair"),
    (b"1\t10\t4\t881250949\n3\t20\t5\t881250950\n", "user_ids missing from the users table"),
    (b"1\t10\t4\t881250949\n1\t30\t5\t881250950\n", "item_ids missing from the items table"),
])
def test_bad_ratings_lines_are_named(tmp_path, isolated_cache, u_data, message):
    _zip(tmp_path / "ml-100k.zip", _ml100k_members(u_data))
    with pytest.raises(ratings.DataFormatError, match=message) as e:
        movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False, verify=False)
    assert "ml-100k.zip" in str(e.value) or "ml-100k" in str(e.value)


def test_read_ml1m_ratings_names_file_and_line():
    raw = b"1::1193::5::978300760\n1::661::3::978302109\n1::914::x::978301968\n"
    with pytest.raises(ratings.DataFormatError, match=r"ratings.dat, line 3: rating 'x'"):
        movielens.read_ml1m_ratings(raw, "ratings.dat")
    ok = movielens.read_ml1m_ratings(raw[: raw.rfind(b"1::914")], "ratings.dat")
    assert ok.item_id.tolist() == [1193, 661] and ok.rating.dtype == np.float32


# --- downloads ------------------------------------------------------------------------------------

def test_download_with_wrong_checksum_leaves_nothing(tmp_path, isolated_cache):
    src = tmp_path / "served.zip"
    src.write_bytes(b"not really a zip")
    with pytest.raises(IOError, match="Checksum mismatch"):
        downloads.atomic_download(src.as_uri(), isolated_cache / "ml-100k.zip", md5="0" * 32, progress=False)
    assert not isolated_cache.exists() or list(isolated_cache.iterdir()) == []


def test_download_with_right_checksum_is_renamed_whole(tmp_path, isolated_cache):
    src = _zip(tmp_path / "served.zip", _ml100k_members())
    dest = downloads.atomic_download(src.as_uri(), isolated_cache / "ml-100k.zip", md5=downloads.md5sum(src), progress=False)
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in isolated_cache.iterdir()] == ["ml-100k.zip"]


def test_failed_download_and_fallback_report_what_was_tried(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setattr(downloads, "GROUPLENS_URL", (tmp_path / "missing-{name}.zip").as_uri())
    def failing_pip(spec, dest, timeout): raise IOError("`pip download` failed: no index reachable")
    monkeypatch.setattr(downloads, "_pip_download", failing_pip)
    with pytest.raises(FileNotFoundError, match="Tried GroupLens.*recbole wheel.*pip download. failed"):
        movielens.load_movielens("ml-100k", progress=False)
    assert not isolated_cache.exists() or list(isolated_cache.iterdir()) == []


def test_recbole_wheel_reader(tmp_path):
    base = "recbole/dataset_example/ml-100k/ml-100k."
    wheel = _zip(tmp_path / "recbole-1.2.1-py3-none-any.whl", {
        base + "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t881250949\n2\t10\t3\t881250950\n",
        base + "user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n",
        base + "item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n10\tToy Story\t1995\tAnimation Children's Comedy\n",
    })
    d = movielens.read_recbole_ml100k(wheel)
    assert len(d.ratings) == 2 and d.items.genres.iloc[0] == ["Animation", "Children's", "Comedy"]
    assert d.users.occupation.tolist() == ["technician", "other"]
    assert d.items.title.tolist() == ["Toy Story (1995)"]  # GroupLens' form: notebooks look titles up by it


# --- bring your own data ----------------------------------------------------------------------------

def test_load_ratings_from_csv_and_parquet(tmp_path):
    df = pd.DataFrame({"userId": [1, 1, 2], "movieId": [10, 11, 10], "rating": [4.5, 5, 3], "timestamp": [1, 2, 3]})
    df.to_csv(tmp_path / "r.csv", index=False)
    df.to_parquet(tmp_path / "r.parquet")
    cols = {"userId": "user_id", "movieId": "item_id"}
    a = ratings.load_ratings(tmp_path / "r.csv", columns=cols, rating_scale=(0.5, 5))
    b = ratings.load_ratings(tmp_path / "r.parquet", columns=cols, rating_scale=(0.5, 5))
    pd.testing.assert_frame_equal(a.ratings, b.ratings)
    assert not a.has_demographics and a.n_items == 2


def test_load_ratings_names_missing_columns_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r"missing \['rating'\]"):
        ratings.load_ratings(pd.DataFrame({"user_id": [1], "item_id": [2]}))
    with pytest.raises(ratings.DataFormatError, match="column rating row 1: 'abc'"):
        ratings.load_ratings(pd.DataFrame({"user_id": [1, 2], "item_id": [2, 2], "rating": ["4", "abc"]}))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        ratings.load_ratings(tmp_path / "nope.csv")


# --- generator and splits -----------------------------------------------------------------------------

def test_synthetic_has_learnable_structure():
    """Biased MF (Surprise SVD) beats the item mean's held-out RMSE by at least 5% on synthetic data."""
    from surprise import SVD, Dataset, Reader
    d = synthetic.synthetic_movielens(seed=0)
    train, test = splits.split_ratings(d.ratings, "random", 0.2, seed=42)
    ts = Dataset.load_from_df(train[["user_id", "item_id", "rating"]], Reader(rating_scale=(1, 5))).build_full_trainset()
    svd = SVD(random_state=0).fit(ts)
    pred = np.array([svd.predict(u, i).est for u, i in zip(test.user_id, test.item_id)])
    item_mean = train.groupby("item_id").rating.mean()
    im = test.item_id.map(item_mean).fillna(train.rating.mean()).to_numpy()
    rmse = lambda p: float(np.sqrt(np.mean((p - test.rating.to_numpy()) ** 2)))
    assert rmse(pred) <= 0.95 * rmse(im), (rmse(pred), rmse(im))


def test_synthetic_with_real_metadata_is_ml1m_shaped(ml1m_dir):
    d = data.load_dataset("synthetic-ml-1m", ml1m_dir)
    assert len(d.ratings) == 1_000_209 and d.n_users == 6_040 and d.n_items == 3_883
    assert d.ratings.groupby("user_id").size().min() >= 20
    assert set(d.ratings.rating.unique()) <= {1, 2, 3, 4, 5}


def test_synthetic_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="below 20 per user"):
        synthetic.synthetic_movielens(n_users=100, n_ratings=1_000)


@pytest.mark.parametrize("method", splits.SPLIT_METHODS)
def test_splits_never_leak_and_cover_everything(method):
    d = synthetic.synthetic_movielens(n_users=60, n_items=300, n_ratings=3_000, seed=1)
    train, test = splits.split_ratings(d.ratings, method, test_size=0.25, seed=3)
    assert len(train) + len(test) == len(d.ratings)
    assert train.merge(test, on=["user_id", "item_id"]).empty
    assert set(train.user_id) == set(d.ratings.user_id)  # every user keeps training ratings


def test_random_split_is_sklearns():
    sklearn = pytest.importorskip("sklearn.model_selection")
    d = synthetic.synthetic_movielens(n_users=50, n_items=200, n_ratings=2_000, seed=2)
    _, test = splits.split_ratings(d.ratings, "random", 0.1, seed=42)
    _, skl_test = sklearn.train_test_split(d.ratings, test_size=0.1, random_state=42)
    pd.testing.assert_frame_equal(test, skl_test.reset_index(drop=True))


# --- a fresh machine: the package-index fallback keeps what it fetched ---------------------------------

def _fake_recbole_wheel(path):
    "A small wheel laid out like recbole 1.2.1's, with a 3-rating ML-100K."
    base = "recbole/dataset_example/ml-100k/ml-100k."
    return _zip(path, {
        base + "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t881250949\n"
                        "2\t10\t3\t881250950\n2\t20\t5\t881250951\n",
        base + "user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                       "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n",
        base + "item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                       "10\tToy Story\t1995\tAnimation Children's Comedy\n20\tHeat\t1995\tAction Crime Thriller\n",
    })


@pytest.fixture
def fake_index(tmp_path, isolated_cache, monkeypatch):
    """GroupLens unreachable and a package index serving a fake recbole wheel (its SHA-256 made the expected one);
    returns the list of `pip download` calls."""
    wheel = _fake_recbole_wheel(tmp_path / "served" / "recbole-1.2.1-py3-none-any.whl"
                                if (tmp_path / "served").mkdir() is None else None)
    monkeypatch.setattr(downloads, "GROUPLENS_URL", (tmp_path / "unreachable-{name}.zip").as_uri())
    monkeypatch.setitem(downloads.RECBOLE_WHEEL, "sha256", downloads.sha256sum(wheel))
    monkeypatch.setitem(movielens.EXPECTED, "ml-100k", dict(sizes={}, counts=(3, 2, 2)))
    calls = []

    def pip_download(spec, dest, timeout):
        calls.append((spec, timeout))
        import shutil
        return Path(shutil.copy(wheel, Path(dest) / wheel.name))

    monkeypatch.setattr(downloads, "_pip_download", pip_download)
    return calls


def test_fallback_fetch_is_kept_and_the_second_load_needs_no_network(fake_index, isolated_cache, monkeypatch):
    first = movielens.load_movielens("ml-100k", progress=False)
    assert len(fake_index) == 1 and fake_index[0][0] == "recbole==1.2.1"
    kept = isolated_cache / downloads.RECBOLE_WHEEL["file"]
    assert kept.is_file() and downloads.sha256sum(kept) == downloads.RECBOLE_WHEEL["sha256"]
    assert sorted(p.name for p in isolated_cache.iterdir()) == [kept.name]  # no temporary files left behind
    assert downloads.find_movielens("ml-100k") == kept
    # second call: any download attempt fails the test (and the autouse socket guard refuses any connection)
    monkeypatch.setattr(movielens, "fetch_movielens", lambda *a, **k: pytest.fail("the second load tried to download"))
    monkeypatch.setattr(downloads, "GROUPLENS_URL", "https://files.grouplens.org/datasets/movielens/{name}.zip")
    second = movielens.load_movielens("ml-100k", download=False)
    pd.testing.assert_frame_equal(first.ratings, second.ratings)
    assert second.items.title.tolist() == ["Toy Story (1995)", "Heat (1995)"] and len(fake_index) == 1


def test_kept_wheel_that_changed_is_refused(fake_index, isolated_cache):
    movielens.load_movielens("ml-100k", progress=False)
    kept = isolated_cache / downloads.RECBOLE_WHEEL["file"]
    kept.write_bytes(kept.read_bytes() + b"x")
    with pytest.raises(ratings.DataFormatError, match=f"{kept.name}: SHA-256 .* Delete the file"):
        movielens.load_movielens("ml-100k", download=False)


def test_wheel_with_wrong_checksum_is_not_kept(fake_index, isolated_cache, monkeypatch):
    monkeypatch.setitem(downloads.RECBOLE_WHEEL, "sha256", "0" * 64)
    with pytest.raises(FileNotFoundError, match="SHA-256 .* Nothing was kept"):
        movielens.load_movielens("ml-100k", progress=False)
    assert not (isolated_cache / downloads.RECBOLE_WHEEL["file"]).exists()
    assert [p.name for p in isolated_cache.iterdir()] == []


def test_fetch_command_fetches_checks_and_reports(fake_index, isolated_cache, capsys, monkeypatch):
    assert data.fetch_cli(["fetch", "ml-100k"]) == 0
    out = capsys.readouterr().out
    assert downloads.RECBOLE_WHEEL["file"] in out and "3 ratings" in out and "checked" in out
    assert data.fetch_cli(["fetch", "ml-100k"]) == 0 and len(fake_index) == 1  # found in the cache: no second download
    monkeypatch.setitem(movielens.EXPECTED, "ml-100k", dict(sizes={}, counts=(100_000, 943, 1_682)))
    assert data.fetch_cli(["fetch", "ml-100k"]) == 1  # found but not the published data: a failure that says why
    assert "3 ratings, but the published ml-100k has 100,000" in capsys.readouterr().err


def test_pip_download_is_bounded(tmp_path, monkeypatch):
    import subprocess
    seen = {}

    def slow_run(cmd, **kw):
        seen.update(cmd=cmd, timeout=kw.get("timeout"))
        raise subprocess.TimeoutExpired(cmd, kw.get("timeout"))

    monkeypatch.setattr(downloads.subprocess, "run", slow_run)
    with pytest.raises(TimeoutError, match="did not finish within 60 s"):
        downloads._pip_download("recbole==1.2.1", tmp_path, 60)
    assert seen["timeout"] == 60
    cmd = seen["cmd"]
    assert cmd[cmd.index("--timeout") + 1] == str(downloads.NETWORK_TIMEOUT["io"]) and cmd[cmd.index("--retries") + 1] == "1"


def test_download_has_a_total_time_bound(tmp_path, isolated_cache):
    src = tmp_path / "served.zip"
    src.write_bytes(os.urandom(300_000))
    with pytest.raises(TimeoutError, match="not complete after 0 s"):
        downloads.atomic_download(src.as_uri(), isolated_cache / "ml-100k.zip", progress=False, timeout=0)
    assert [p.name for p in isolated_cache.iterdir()] == []


# --- a local copy is checked against the published release ------------------------------------------

def test_modified_copy_of_real_ml100k_is_refused_unless_verify_false(data_dir, tmp_path, isolated_cache):
    real = movielens.load_movielens("ml-100k", data_dir=data_dir, download=False)
    r = real.ratings.copy()
    r.loc[0, "rating"] = 1.0 if r.loc[0, "rating"] != 1 else 2.0  # one rating changed: one byte of u.data's size may not move
    lines = [f"{a}\t{b}\t{int(c)}\t{d}\n" for a, b, c, d in r.itertuples(index=False)]
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("".join(lines[:-1]))  # and one line dropped
    for f in ("u.user", "u.item"):
        (folder / f).write_bytes(movielens._Source(data_dir / "ml-100k.zip", "ml-100k").read(f)) if (data_dir / "ml-100k.zip").is_file() \
            else pytest.skip("the real zip is needed to build a folder copy")
    with pytest.raises(ratings.DataFormatError, match=r"u\.data: 1,979,1\d\d bytes, but the published ml-100k file has 1,979,173.*verify=False"):
        movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False)
    mod = movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False, verify=False)
    assert len(mod.ratings) == 99_999


def test_wrong_counts_name_the_file(tmp_path, isolated_cache, monkeypatch):
    _zip(tmp_path / "ml-100k.zip", _ml100k_members())
    monkeypatch.setitem(movielens.EXPECTED, "ml-100k", dict(sizes={}, counts=(4, 2, 2)))
    with pytest.raises(ratings.DataFormatError, match=r"ml-100k.zip:ml-100k/u.data: 3 ratings, but the published ml-100k has 4"):
        movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False)
    assert len(movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False, verify=False).ratings) == 3


def test_incomplete_folder_in_data_dir_is_an_error_not_a_fallback(tmp_path, isolated_cache):
    isolated_cache.mkdir(parents=True)
    _zip(isolated_cache / "ml-100k.zip", _ml100k_members())  # a good copy elsewhere must not be used instead
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t10\t4\t881250949\n")
    with pytest.raises(FileNotFoundError, match=r"ml-100k: this ml-100k folder lacks u\.user, u\.item"):
        movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False, verify=False)


def test_zip_member_above_the_limit_is_refused_before_reading(tmp_path, isolated_cache, monkeypatch):
    members = _ml100k_members(b"1\t10\t4\t881250949\n" * 5_000)  # 85 kB that deflate to almost nothing
    with zipfile.ZipFile(tmp_path / "ml-100k.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in members.items():
            z.writestr(name, content)
    monkeypatch.setattr(movielens, "MAX_MEMBER_BYTES", 10_000)
    with pytest.raises(ratings.DataFormatError, match=r"ml-100k/u\.data: 85,000 bytes, above the 10,000-byte limit"):
        movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False, verify=False)


def test_zip_member_that_understates_its_size_is_read_at_most_to_the_limit(tmp_path, isolated_cache, monkeypatch):
    content = b"1\t10\t4\t881250949\n" * 5_000
    z = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, c in _ml100k_members(content).items():
            zf.writestr(name, c)
    raw = bytearray(z.read_bytes())
    import struct
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # claim u.data unpacks to 100 bytes (local and central headers)
        i = raw.find(sig)
        while i >= 0:
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if raw[name_at:name_at + 14] == b"ml-100k/u.data":
                raw[i + off:i + off + 4] = struct.pack("<I", 100)
            i = raw.find(sig, i + 4)
    z.write_bytes(bytes(raw))
    assert zipfile.ZipFile(z).getinfo("ml-100k/u.data").file_size == 100
    monkeypatch.setattr(movielens, "MAX_MEMBER_BYTES", 10_000)
    with pytest.raises(ratings.DataFormatError, match=r"u\.data: .*(corrupt|limit)"):
        movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False, verify=False)
    read = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *a, **k):
        fh = real_open(self, name, *a, **k)
        real_read = fh.read
        fh.read = lambda n=-1: read.append(n) or real_read(n)
        return fh

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(ratings.DataFormatError):
        movielens.load_movielens("ml-100k", data_dir=tmp_path, download=False, verify=False)
    assert read and all(0 < n <= 10_001 for n in read)  # never an unbounded read()


# --- bring your own data, whatever its ids ------------------------------------------------------------

ODD_IDS_CSV = """user_id,item_id,rating
u_492597,tt0111161,5
u_492597,007,4
u_492597,7,2
u_492597,tt0068646,3
u_17,tt0111161,4
u_17,007,1
u_17,7,5
u_17,tt0068646,2
18446744073709551617,tt0111161,3
18446744073709551617,007,5
18446744073709551617,7,1
18446744073709551617,tt0068646,4
"""


def test_csv_ids_are_kept_exactly_and_every_result_maps_back(tmp_path):
    from fedrec_nb.baselines import BiasModel
    from fedrec_nb.mf_knn import SVDModel
    from fedrec_nb.metrics import evaluate_ranking
    path = tmp_path / "ratings.csv"
    path.write_text(ODD_IDS_CSV)
    d = data.load_dataset(str(path))  # a path is a dataset too
    assert d.name == "ratings" and d.rating_scale == (1.0, 5.0)
    # a column with any non-integer value stays text: "007" and "7" are two items; the big user id stays a string too
    assert sorted(d.items.item_id) == ["007", "7", "tt0068646", "tt0111161"]
    assert set(d.users.user_id) == {"u_492597", "u_17", "18446744073709551617"}
    assert d.ratings.timestamp.isna().all()
    with pytest.raises(ValueError, match="'leave_one_out' needs the time of every rating"):
        splits.split_ratings(d.ratings, "leave_one_out")
    train, test = splits.split_ratings(d.ratings, "user", test_size=0.25, seed=0)
    assert len(test) == 3 and set(test.user_id) == set(d.users.user_id)
    for model in (BiasModel().fit(train, d), SVDModel(random_state=0).fit(train, d)):
        p = model.predict(test.user_id.to_numpy(), test.item_id.to_numpy())
        assert p.shape == (3,) and np.isfinite(p).all()
        # "007" and "7" are different items with different learned scores; an unknown id gets the fallback
        s = model.score_items(["u_17"], ["007", "7", "nope"])
        assert s[0, 0] != s[0, 1]
    bias = BiasModel().fit(d.ratings, d)
    assert bias.item_bias(["7"])[0] < bias.item_bias(["007"])[0]  # "7" rated 2, 5, 1; "007" rated 4, 1, 5
    from fedrec_nb.case_study import recommend
    fitted = BiasModel().fit(train, d)
    for protocol in ("full", "rated", "sampled"):
        res = evaluate_ranking(fitted, train, test, protocol=protocol, k=2, threshold=1, n_negatives=1)
        assert res["n_users"] == 3 and 0 <= res["hit_rate@2"] <= 1, protocol
    recs = recommend(fitted, "u_17", train, d.items, n=3)  # top-N keyed by raw item ids, rated items left out
    rated = set(train.item_id[train.user_id == "u_17"])
    assert len(recs) == 1 and set(recs.item_id) == set(d.items.item_id) - rated
    # features: contiguous indices inside, raw ids at each index
    f = features.encode_features(d)
    u, i, _ = features.encode_ratings(test, f)
    assert f.user_ids[u.numpy()].tolist() == test.user_id.tolist()
    assert f.item_ids[i.numpy()].tolist() == test.item_id.tolist()
    assert f.item_index(["7", "007", 7]).tolist()[2] == -1  # the integer 7 is not the string "7"


def test_integer_ids_beyond_int64_and_mixed_ids_from_a_dataframe():
    from fedrec_nb.baselines import BiasModel
    big, neg = 2 ** 64 + 5, -(2 ** 63) - 1
    df = pd.DataFrame({"user_id": pd.Series([big, big, neg, neg, "007", "007", 7, 7], dtype=object),
                       "item_id": pd.Series(["a", 1, "a", 1, "a", 1, "a", 1], dtype=object),
                       "rating": [5, 4, 4, 2, 3, 3, 1, 2], "timestamp": range(8)})
    d = ratings.load_ratings(df, rating_scale=(1, 5))
    assert d.users.user_id.tolist() == [neg, 7, big, "007"]  # numbers by value, then strings; nothing cast or merged
    assert d.ratings.user_id.tolist() == df.user_id.tolist() and d.items.item_id.tolist() == [1, "a"]
    m = BiasModel().fit(d.ratings, d)
    assert m.user_bias([big])[0] > 0 > m.user_bias([7])[0] and m.user_bias(["7"])[0] == 0  # "7" was never seen
    f = features.encode_features(d)
    assert f.user_index([big, "007", 7, "7"]).tolist() == [2, 3, 1, -1]
    tr, te = splits.split_ratings(d.ratings, "leave_one_out")
    assert sorted(map(repr, te.user_id)) == sorted(map(repr, [big, neg, "007", 7])) and (te.timestamp % 2 == 1).all()
    from fedrec_nb.metrics import evaluate_ranking
    fitted = BiasModel().fit(tr, d)
    for protocol in ("full", "rated", "sampled"):  # mixed ids cannot be sorted by numpy: the metrics must not try
        res = evaluate_ranking(fitted, tr, te, protocol=protocol, k=1, threshold=1, n_negatives=1)
        assert res["n_users"] == 4, protocol
    u64 = ratings.load_ratings(pd.DataFrame({"user_id": np.array([2 ** 64 - 1, 3], dtype=np.uint64), "item_id": [1, 1], "rating": [1., 2]}))
    assert u64.ratings.user_id.dtype == np.uint64 and u64.users.user_id.tolist() == [3, 2 ** 64 - 1]
    assert features.encode_features(u64).user_index(np.array([2 ** 64 - 1], dtype=np.uint64)).tolist() == [1]


@pytest.mark.parametrize("frame, message", [
    (dict(user_id=[1.0, 2.5], item_id=[1, 1], rating=[3, 4]), r"column user_id row 1: 2\.5 is not a whole number"),
    (dict(user_id=[1, 2], item_id=pd.Series([1, "x", 2.5], dtype=object)[:2].tolist()[:1] + [np.nan], rating=[3, 4]),
     "column item_id row 1: missing id"),
    (dict(user_id=[1, 2], item_id=[1, 1], rating=[3, np.nan]), r"rating missing \(NaN\) in row 1"),
    (dict(user_id=[1, 2], item_id=[1, 1], rating=[3, -np.inf]), r"rating -inf \(not finite\) in row 1"),
    (dict(user_id=[], item_id=[], rating=[]), "no ratings"),
    (dict(user_id=[True, False], item_id=[1, 1], rating=[3, 4]), "booleans"),
    (dict(user_id=[1, 2], item_id=[1, 1], rating=[3, 4], timestamp=[5, np.nan]), "column timestamp row 1"),
])
def test_bad_own_data_is_refused_with_column_and_row(frame, message):
    with pytest.raises((ratings.DataFormatError, ValueError), match=message):
        ratings.load_ratings(pd.DataFrame(frame), rating_scale=(1, 5))


@pytest.mark.parametrize("scale", [(1, np.inf), (np.nan, 5), (5, 1), (3,)])
def test_rating_scale_must_be_two_finite_numbers(scale):
    with pytest.raises(ValueError, match="rating_scale"):
        ratings.load_ratings(pd.DataFrame({"user_id": [1], "item_id": [1], "rating": [3.0]}), rating_scale=scale)


def test_whole_float_ids_become_integers_and_plain_integer_text_stays_integer(tmp_path):
    d = ratings.load_ratings(pd.DataFrame({"user_id": [1.0, 2.0], "item_id": [10.0, 10.0], "rating": [3, 4]}))
    assert d.ratings.user_id.tolist() == [1, 2] and d.ratings.user_id.dtype == np.int64
    (tmp_path / "r.csv").write_text("user_id,item_id,rating,timestamp\n1,10,4,5\n2,10,3,6\n")
    c = ratings.load_ratings(tmp_path / "r.csv")
    assert c.ratings.user_id.dtype == np.int64 and c.ratings.timestamp.tolist() == [5, 6]
    (tmp_path / "z.csv").write_text("user_id,item_id,rating\n01,10,4\n1,10,3\n")  # "01" is not 1
    z = ratings.load_ratings(tmp_path / "z.csv")
    assert z.users.user_id.tolist() == ["01", "1"]


def test_temporal_split_without_timestamps_is_refused():
    d = ratings.load_ratings(pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2], "rating": [3, 4, 5, 1]}))
    with pytest.raises(ValueError, match="'temporal' needs the time of every rating.*no timestamp"):
        splits.split_ratings(d.ratings, "temporal", test_size=0.5)
    with pytest.raises(ValueError, match="no timestamp column"):
        splits.split_ratings(d.ratings.drop(columns="timestamp"), "leave_one_out")
    tr, te = splits.split_ratings(d.ratings, "random", test_size=0.5)  # the others need no time
    assert len(tr) + len(te) == 4


def test_leak_check_is_exact_for_ids_a_64_bit_key_would_confuse():
    # (1, 1) and (0, 2**32 + 1) share the key u * 2**32 + i; as pairs they are different, so nothing leaks
    r = pd.DataFrame({"user_id": [1, 0, 1, 0], "item_id": [1, 2 ** 32 + 1, 2, 3], "rating": [1., 2, 3, 4], "timestamp": range(4)})
    for seed in range(5):
        tr, te = splits.split_ratings(r, "random", test_size=0.5, seed=seed)
        assert len(tr) + len(te) == 4
    with pytest.raises(ValueError, match=r"pair \('u', 'x'\) is on both sides"):
        dup = pd.DataFrame({"user_id": ["u", "u"] * 3, "item_id": ["x", "x", "y", "z", "w", "v"], "rating": [1.] * 6,
                            "timestamp": range(6)})
        for seed in range(20):
            splits.split_ratings(dup, "random", test_size=0.5, seed=seed)


def test_load_dataset_takes_a_parquet_path_and_names_a_missing_file(tmp_path):
    df = pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": [10, 10, 11], "rating": [1.0, 2.0, 3.0], "timestamp": [1, 2, 3]})
    df.to_parquet(tmp_path / "mine.parquet")
    d = data.load_dataset(str(tmp_path / "mine.parquet"))
    assert d.name == "mine" and d.users.user_id.tolist() == ["a", "b"] and d.items.item_id.tolist() == [10, 11]
    assert data.is_ratings_path("x/ratings.csv") and not data.is_ratings_path("ml-100k")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        data.load_dataset(str(tmp_path / "nope.csv"))
