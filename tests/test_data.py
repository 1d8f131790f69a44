"""fedrec_nb.data: real files, bad input and the download path, as a user meets them."""
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedrec_nb import data as D


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
    d = D.load_movielens("ml-100k", data_dir=data_dir, download=False)
    r = d.ratings
    assert (len(r), r.user_id.nunique(), r.item_id.nunique()) == (100_000, 943, 1_682)
    assert r.rating.mean() == pytest.approx(3.52986, abs=1e-5)
    assert r.groupby("user_id").size().min() >= 20
    counts = d.items.explode("genres")["genres"].value_counts()
    assert counts.index[0] == "Drama" and counts.iloc[0] == 725
    assert list(r.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert list(d.users.columns) == ["user_id", "gender", "age", "occupation", "zip_code"]
    assert d.rating_scale == (1.0, 5.0) and d.name == "ml-100k"


def test_real_ml1m_metadata(data_dir):
    users, items = D.load_ml1m_metadata(data_dir)
    assert len(items) == 3_883 and len(users) == 6_040
    assert len({g for gs in items.genres for g in gs}) == 18
    assert set(users.age) == set(D.ML1M_AGES)
    assert users.occupation.isin(D.ML1M_OCCUPATIONS.values()).all()
    # ISO-8859-1 accents come through as characters, not mojibake
    assert items.title.str.contains("é").any() and not items.title.str.contains("Ã").any()


def test_ml1m_metadata_without_ratings_gives_clear_error(data_dir, isolated_cache):
    with pytest.raises(FileNotFoundError, match="ratings.dat is missing"):
        # ml-1m-metadata.zip is not ml-1m.zip; copy it under the release's name to exercise the reader
        import shutil
        shutil.copy(data_dir / "ml-1m-metadata.zip", isolated_cache.parent / "ml-1m.zip")
        D.load_movielens("ml-1m", data_dir=isolated_cache.parent, download=False)


# --- where files come from ------------------------------------------------------------------------

def test_search_order_data_dir_then_env_then_cache(tmp_path, isolated_cache, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b, isolated_cache):
        d.mkdir(parents=True, exist_ok=True)
        _zip(d / "ml-100k.zip", _ml100k_members())
    monkeypatch.setenv("FEDREC_DATA", str(b))
    assert D.find_movielens("ml-100k", a) == a / "ml-100k.zip"
    assert D.find_movielens("ml-100k") == b / "ml-100k.zip"
    monkeypatch.delenv("FEDREC_DATA")
    assert D.find_movielens("ml-100k") == isolated_cache / "ml-100k.zip"


def test_extracted_folder_is_read_like_the_zip(tmp_path, isolated_cache):
    z = _zip(tmp_path / "ml-100k.zip", _ml100k_members())
    zipfile.ZipFile(z).extractall(tmp_path / "x")
    from_folder = D.load_movielens("ml-100k", data_dir=tmp_path / "x", download=False)
    from_zip = D.load_movielens("ml-100k", data_dir=tmp_path, download=False)
    pd.testing.assert_frame_equal(from_folder.ratings, from_zip.ratings)
    assert from_zip.items.title.tolist() == ["Café Movie (1995)", "Other (1996)"]


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError, match="ml-100k, ml-1m"):
        D.load_movielens("ml-10k")


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        D.load_movielens("ml-100k", data_dir=tmp_path / "nowhere")


def test_not_found_without_download_says_what_was_tried(tmp_path, isolated_cache):
    with pytest.raises(FileNotFoundError, match="download=False") as e:
        D.load_movielens("ml-100k", data_dir=tmp_path, download=False)
    assert str(tmp_path) in str(e.value)


# --- bad files ------------------------------------------------------------------------------------

def test_truncated_zip(tmp_path, isolated_cache):
    z = _zip(tmp_path / "ml-100k.zip", _ml100k_members())
    raw = z.read_bytes()
    z.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(D.DataFormatError, match="ml-100k.zip.*(truncated|corrupt)"):
        D.load_movielens("ml-100k", data_dir=tmp_path, download=False)


def test_corrupt_member_fails_crc(tmp_path, isolated_cache):
    z = _zip(tmp_path / "ml-100k.zip", _ml100k_members())
    raw = bytearray(z.read_bytes())
    i = raw.find(b"1\t10\t4")  # stored uncompressed: flip a byte of u.data's content
    raw[i] = ord("7")
    z.write_bytes(bytes(raw))
    with pytest.raises(D.DataFormatError, match="corrupt"):
        D.load_movielens("ml-100k", data_dir=tmp_path, download=False)


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
    with pytest.raises(D.DataFormatError, match=message) as e:
        D.load_movielens("ml-100k", data_dir=tmp_path, download=False)
    assert "ml-100k.zip" in str(e.value) or "ml-100k" in str(e.value)


def test_read_ml1m_ratings_names_file_and_line():
    raw = b"1::1193::5::978300760\n1::661::3::978302109\n1::914::x::978301968\n"
    with pytest.raises(D.DataFormatError, match=r"ratings.dat, line 3: rating 'x'"):
        D.read_ml1m_ratings(raw, "ratings.dat")
    ok = D.read_ml1m_ratings(raw[: raw.rfind(b"1::914")], "ratings.dat")
    assert ok.item_id.tolist() == [1193, 661] and ok.rating.dtype == np.float32


# --- downloads ------------------------------------------------------------------------------------

def test_download_with_wrong_checksum_leaves_nothing(tmp_path, isolated_cache):
    src = tmp_path / "served.zip"
    src.write_bytes(b"not really a zip")
    with pytest.raises(IOError, match="Checksum mismatch"):
        D.atomic_download(src.as_uri(), isolated_cache / "ml-100k.zip", md5="0" * 32, progress=False)
    assert not isolated_cache.exists() or list(isolated_cache.iterdir()) == []


def test_download_with_right_checksum_is_renamed_whole(tmp_path, isolated_cache):
    src = _zip(tmp_path / "served.zip", _ml100k_members())
    dest = D.atomic_download(src.as_uri(), isolated_cache / "ml-100k.zip", md5=D.md5sum(src), progress=False)
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in isolated_cache.iterdir()] == ["ml-100k.zip"]


def test_failed_download_and_fallback_report_what_was_tried(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setattr(D, "GROUPLENS_URL", (tmp_path / "missing-{name}.zip").as_uri())
    monkeypatch.setattr(D, "_fetch_recbole_ml100k", lambda: (_ for _ in ()).throw(IOError("pip download failed")))
    with pytest.raises(FileNotFoundError, match="GroupLens.*recbole wheel.*pip download failed"):
        D.load_movielens("ml-100k", progress=False)
    assert not isolated_cache.exists() or list(isolated_cache.iterdir()) == []


def test_recbole_wheel_reader(tmp_path):
    base = "recbole/dataset_example/ml-100k/ml-100k."
    wheel = _zip(tmp_path / "recbole-1.2.1-py3-none-any.whl", {
        base + "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t881250949\n2\t10\t3\t881250950\n",
        base + "user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n",
        base + "item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n10\tToy Story\t1995\tAnimation Children's Comedy\n",
    })
    d = D.read_recbole_ml100k(wheel)
    assert len(d.ratings) == 2 and d.items.genres.iloc[0] == ["Animation", "Children's", "Comedy"]
    assert d.users.occupation.tolist() == ["technician", "other"]
    assert d.items.title.tolist() == ["Toy Story (1995)"]  # GroupLens' form: notebooks look titles up by it


# --- bring your own data ----------------------------------------------------------------------------

def test_load_ratings_from_csv_and_parquet(tmp_path):
    df = pd.DataFrame({"userId": [1, 1, 2], "movieId": [10, 11, 10], "rating": [4.5, 5, 3], "timestamp": [1, 2, 3]})
    df.to_csv(tmp_path / "r.csv", index=False)
    df.to_parquet(tmp_path / "r.parquet")
    cols = {"userId": "user_id", "movieId": "item_id"}
    a = D.load_ratings(tmp_path / "r.csv", columns=cols, rating_scale=(0.5, 5))
    b = D.load_ratings(tmp_path / "r.parquet", columns=cols, rating_scale=(0.5, 5))
    pd.testing.assert_frame_equal(a.ratings, b.ratings)
    assert not a.has_demographics and a.n_items == 2


def test_load_ratings_names_missing_columns_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r"missing \['rating'\]"):
        D.load_ratings(pd.DataFrame({"user_id": [1], "item_id": [2]}))
    with pytest.raises(D.DataFormatError, match="column rating row 1: 'abc'"):
        D.load_ratings(pd.DataFrame({"user_id": [1, 2], "item_id": [2, 2], "rating": ["4", "abc"]}))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        D.load_ratings(tmp_path / "nope.csv")


# --- generator and splits -----------------------------------------------------------------------------

def test_synthetic_has_learnable_structure():
    """Biased MF (Surprise SVD) beats the item mean's held-out RMSE by at least 5% on synthetic data."""
    from surprise import SVD, Dataset, Reader
    d = D.synthetic_movielens(seed=0)
    train, test = D.split_ratings(d.ratings, "random", 0.2, seed=42)
    ts = Dataset.load_from_df(train[["user_id", "item_id", "rating"]], Reader(rating_scale=(1, 5))).build_full_trainset()
    svd = SVD(random_state=0).fit(ts)
    pred = np.array([svd.predict(u, i).est for u, i in zip(test.user_id, test.item_id)])
    item_mean = train.groupby("item_id").rating.mean()
    im = test.item_id.map(item_mean).fillna(train.rating.mean()).to_numpy()
    rmse = lambda p: float(np.sqrt(np.mean((p - test.rating.to_numpy()) ** 2)))
    assert rmse(pred) <= 0.95 * rmse(im), (rmse(pred), rmse(im))


def test_synthetic_with_real_metadata_is_ml1m_shaped(data_dir):
    d = D.load_dataset("synthetic-ml-1m", data_dir)
    assert len(d.ratings) == 1_000_209 and d.n_users == 6_040 and d.n_items == 3_883
    assert d.ratings.groupby("user_id").size().min() >= 20
    assert set(d.ratings.rating.unique()) <= {1, 2, 3, 4, 5}


def test_synthetic_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="below 20 per user"):
        D.synthetic_movielens(n_users=100, n_ratings=1_000)


@pytest.mark.parametrize("method", D.SPLIT_METHODS)
def test_splits_never_leak_and_cover_everything(method):
    d = D.synthetic_movielens(n_users=60, n_items=300, n_ratings=3_000, seed=1)
    train, test = D.split_ratings(d.ratings, method, test_size=0.25, seed=3)
    assert len(train) + len(test) == len(d.ratings)
    assert train.merge(test, on=["user_id", "item_id"]).empty
    assert set(train.user_id) == set(d.ratings.user_id)  # every user keeps training ratings


def test_random_split_is_sklearns():
    sklearn = pytest.importorskip("sklearn.model_selection")
    d = D.synthetic_movielens(n_users=50, n_items=200, n_ratings=2_000, seed=2)
    _, test = D.split_ratings(d.ratings, "random", 0.1, seed=42)
    _, skl_test = sklearn.train_test_split(d.ratings, test_size=0.1, random_state=42)
    pd.testing.assert_frame_equal(test, skl_test.reset_index(drop=True))
