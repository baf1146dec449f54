"""Shared fixtures. The whole session runs offline: any outbound connection attempt fails the
test that made it and the session as a whole (transcripts must never leave the machine)."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "data" / "demo"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# A fresh embedding cache per test session, so cache-hit counts are about this run only.
os.environ["CODER_ASSIST_CACHE_DIR"] = tempfile.mkdtemp(prefix="coder-assist-test-cache-")

NETWORK_ATTEMPTS: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(sock: socket.socket, address) -> bool:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else str(address)
    return host in ("localhost", "::1") or str(host).startswith("127.")


def _guarded_connect(self, address):
    if not _is_local(self, address):
        NETWORK_ATTEMPTS.append(repr(address))
        raise ConnectionRefusedError(f"network access attempted in tests: {address!r} (coder-assist must work offline)")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(self, address):
        NETWORK_ATTEMPTS.append(repr(address))
        raise ConnectionRefusedError(f"network access attempted in tests: {address!r}")
    return _real_connect_ex(self, address)


def pytest_configure(config):
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex


def pytest_sessionfinish(session, exitstatus):
    if NETWORK_ATTEMPTS:
        print(f"\nFAILED: {len(NETWORK_ATTEMPTS)} outbound connection attempt(s): {NETWORK_ATTEMPTS[:5]}")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def base_encoder():
    """The real default encoder (the multilingual USE, use-multilingual-v3), loaded once."""
    from coder_assist.ml.embed import load_encoder

    return load_encoder(cache=False)


@pytest.fixture(scope="session")
def minilm_encoder():
    """The real all-MiniLM-L6-v2 from the bundled package (ONNX, exported at set-up), loaded
    once: the encoder of every project made before USE became the default."""
    from coder_assist.ml.embed import load_encoder

    return load_encoder("all-MiniLM-L6-v2", cache=False)


@pytest.fixture
def encoder(base_encoder, tmp_path):
    """The real model behind a fresh on-disk cache, so tests can count what was encoded."""
    from coder_assist.ml.embed import CachedEncoder, EmbeddingCache

    return CachedEncoder(base_encoder, EmbeddingCache(tmp_path / "cache.sqlite"))


@pytest.fixture(scope="session")
def template():
    from coder_assist.formats.template import load_template

    return load_template()
