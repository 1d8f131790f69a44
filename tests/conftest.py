import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
    if "FEDREC_DATA" not in os.environ and SHARED.is_dir():
        os.environ["FEDREC_DATA"] = str(SHARED)


@pytest.fixture
def data_dir():
    "The folder with the real MovieLens zips; tests that need it are skipped without it."
    d = os.environ.get("FEDREC_DATA")
    if not d or not (Path(d) / "ml-100k.zip").exists():
        pytest.skip("real MovieLens data not available (set FEDREC_DATA)")
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
