"""Shared fixtures: the real predictor (loaded once) and paths to ../shared."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DATASETS = SHARED / "datasets"


def require_dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"dataset {name} not available: {path} is absent (../shared not beside repo)")
    return path


@pytest.fixture(scope="session")
def predictor():
    from cdnet import load_predictor

    return load_predictor()


@pytest.fixture(scope="session")
def torch_predictor():
    from cdnet import load_predictor

    return load_predictor(backend="torch")


def disk_image(h: int = 160, w: int = 200, cy: int = 80, cx: int = 100, r: int = 40):
    """A bright disk on a dark textured background, and its mask."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img[mask] = (220, 180, 60)
    return img, mask


@pytest.fixture
def fake_ls():
    """A fake Label Studio API (tests/review/lsfake.py) served on 127.0.0.1."""
    from tests.review.lsfake import FakeLabelStudio, ServerThread

    fake = FakeLabelStudio()
    server = ServerThread(fake).start()
    yield fake
    server.stop()


@contextmanager
def real_redis(url: str) -> Iterator:
    """A client of the real Redis server at `url` (tests never mock it); the test skips, saying
    why, when no server answers there."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"needs the Redis server at {url} ({exc})")
    try:
        yield client
    finally:
        client.close()
