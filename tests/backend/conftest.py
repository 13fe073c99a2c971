"""Fixtures: the real predictor (loaded once), small synthetic images, apps, real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest

from backend.app import create_app
from clicksmith.settings import load_settings
from tests.conftest import real_redis

REDIS_URL = "redis://127.0.0.1:6379/15"  # a db of its own for backend tests


@pytest.fixture(scope="session")
def predictor():
    from cdnet import load_predictor

    return load_predictor(threads=1)


@pytest.fixture(scope="session")
def disk(tmp_path_factory) -> tuple[str, np.ndarray]:
    """A 72x96 bright disk on a dark, slightly textured background."""
    rng = np.random.default_rng(0)
    img = rng.integers(10, 50, (72, 96, 3), dtype=np.uint8)
    cv2.circle(img, (48, 36), 18, (235, 225, 210), -1)
    path = tmp_path_factory.mktemp("img") / "disk.png"
    cv2.imwrite(str(path), img[:, :, ::-1])
    return str(path), img


@pytest.fixture(scope="session")
def image_roots(tmp_path_factory) -> str:
    """LOCAL_IMAGE_ROOTS for the tests' images: pytest's temporary folders, where every test
    image (the `disk`, each test's tmp_path) is written; no other file is readable."""
    return str(tmp_path_factory.getbasetemp())


@pytest.fixture
def make_app(predictor, image_roots) -> Callable:
    """Apps with the shared real predictor and settings built from defaults + overrides only
    (plus local images under `image_roots`, unless overridden)."""

    def build(**overrides):
        overrides.setdefault("local_image_roots", image_roots)
        settings = load_settings(env={}, **overrides)
        app = create_app(settings, predictor_loader=lambda s: predictor)
        assert app.extensions["clicksmith"].model.wait(30)
        return app

    return build


@pytest.fixture
def client(make_app):
    return make_app().test_client()


@pytest.fixture
def redis_db() -> Iterator:
    with real_redis(REDIS_URL) as r:
        yield r


@pytest.fixture
def project_id(redis_db) -> Iterator[str]:
    """A project id of its own; its session keys are deleted afterwards."""
    project = f"{uuid.uuid4().int % 10**8}.{uuid.uuid4().int % 10**9}"
    yield project
    for key in redis_db.scan_iter(f"clicksmith:session:{project}:*"):
        redis_db.delete(key)
