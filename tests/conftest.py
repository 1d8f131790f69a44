import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
    if "FEDREC_DATA" not in os.environ and SHARED.is_dir():
        os.environ["FEDREC_DATA"] = str(SHARED)


def _has_ml100k(d):
    "Whether folder `d` holds ML-100K in a form the loader reads: the zip, the folder or the kept recbole wheel."
    from fedrec_nb.downloads import RECBOLE_WHEEL
    d = Path(d)
    return (d / "ml-100k.zip").is_file() or (d / "ml-100k").is_dir() or (d / RECBOLE_WHEEL["file"]).is_file()


@pytest.fixture
def data_dir():
    """The folder with the real ML-100K: FEDREC_DATA, else the cache that `python -m fedrec_nb.data fetch ml-100k`
    fills (scripts/test.sh runs it first); tests that need it are skipped without it."""
    from fedrec_nb.downloads import cache_dir
    for d in (os.environ.get("FEDREC_DATA"), cache_dir()):
        if d and _has_ml100k(d):
            return Path(d)
    pytest.skip("real ML-100K not available (set FEDREC_DATA, or run `python -m fedrec_nb.data fetch ml-100k`)")


@pytest.fixture
def ml1m_dir():
    "The folder with ML-1M's users and movies (ml-1m-metadata.zip or ml-1m.zip); tests that need it are skipped without it."
    d = os.environ.get("FEDREC_DATA")
    if not d or not any((Path(d) / f).is_file() for f in ("ml-1m-metadata.zip", "ml-1m.zip")):
        pytest.skip("ML-1M users/movies not available (set FEDREC_DATA to a folder with ml-1m-metadata.zip)")
    return Path(d)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    "An empty cache and no FEDREC_DATA: only what a test puts there can be found."
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEDREC_CACHE", str(cache))
    monkeypatch.delenv("FEDREC_DATA", raising=False)
    return cache


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    "Any connection to a non-loopback address fails the test (kernels talk over loopback, which stays allowed)."
    import socket

    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and host not in ("127.0.0.1", "localhost", "::1") and not str(host).startswith("127."):
            raise AssertionError(f"a test tried to reach {address}: tests must not use the network")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="module")
def one_thread():
    """torch at one thread in this process and in Flower's Ray workers (OMP_NUM_THREADS, inherited when Ray starts): the
    same summation order on both sides of a Flower-against-sequential comparison. A module asks for it with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    old = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(old)
