"""The app's model service: a promoted version is served without a restart, a broken one never
replaces it, and no model to answer with is a 503 while /health answers at once."""

from __future__ import annotations

import threading
import time
import typing

import pytest
import torch

from backend.app import create_app
from cdnet.model.io import build_model, save_model
from clicksmith import registry
from clicksmith.models import ModelService, SegmentationModel
from clicksmith.settings import load_settings
from tests.backend.ls import LABEL_CONFIG


@pytest.fixture()
def settings(tmp_path):
    return load_settings(env={}, model_registry=str(tmp_path / "registry"), model_path="",
                         inference_backend="torch")


def _new_weights(path, seed):
    torch.manual_seed(seed)
    save_model(build_model(pretrained=False), path)
    return path


def _app(settings):
    app = create_app(settings)  # no injected loader: the registry's serving version, watched
    service = app.extensions["clicksmith"].model
    assert isinstance(service, ModelService) and service.wait(120)
    return app.test_client(), service


def _setup_version(client) -> str:
    r = client.post("/setup", json={"schema": LABEL_CONFIG})
    assert r.status_code == 200, r.json
    return r.json["model_version"]


def _until(predicate, seconds=120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_promoted_version_is_picked_up_without_restart(settings, tmp_path):
    client, service = _app(settings)
    first = _setup_version(client)
    assert client.get("/health").json["model_version"] == first

    registry.store_version(settings, "v2", _new_weights(tmp_path / "w.pt", 1), {"noc90": 1.0})
    registry.promote(settings, "v2")
    # the old version answers every request until the new one has loaded
    assert _until(lambda: _setup_version(client) != first)
    expected = registry.load_serving_predictor(settings).model_version
    assert client.get("/health").json["model_version"] == expected != first
    assert service.reload_error is None and service.state == "ready"


def test_a_broken_promotion_keeps_the_old_model_serving(settings, tmp_path):
    registry.store_version(settings, "good", _new_weights(tmp_path / "g.pt", 2), {})
    registry.promote(settings, "good")
    client, service = _app(settings)
    good = _setup_version(client)

    bad = registry.version_dir(settings, "bad")
    bad.mkdir(parents=True)
    (bad / registry.WEIGHTS_NAME).write_bytes(b"not a model")
    registry.promote(settings, "bad")
    assert _until(lambda: _setup_version(client) == good and service.reload_error is not None)
    health = client.get("/health").json
    assert health["model_version"] == good and health["model_state"] == "ready"
    assert "model_error" not in health


def test_no_model_yet_is_a_503_while_health_answers(settings):
    release = threading.Event()

    def held_loader(s) -> SegmentationModel:
        assert release.wait(60)
        return registry.load_serving_predictor(s)

    app = create_app(settings, predictor_loader=held_loader)
    client = app.test_client()
    try:
        r = client.post("/setup", json={"schema": LABEL_CONFIG})
        assert r.status_code == 503 and r.json["status"] == 503
        assert "still loading" in r.json["error"]
        assert client.get("/health").json["model_state"] == "loading"
    finally:
        release.set()
    assert app.extensions["clicksmith"].model.wait(60)
    assert _setup_version(client).startswith("cdnet-mnv2-")


def test_the_app_factory_takes_a_typed_loader():
    loader_type, none = typing.get_args(typing.get_type_hints(create_app)["predictor_loader"])
    assert none is type(None)
    assert typing.get_args(loader_type)[-1] is SegmentationModel  # not Any


def test_a_promotion_loads_on_health_checks_alone(settings, tmp_path):
    """No click needed: Label Studio's (or a load balancer's) /health polls start the load, so
    the new version is ready before the next annotator's click and /health names it."""
    client, service = _app(settings)
    first = client.get("/health").json["model_version"]
    registry.store_version(settings, "v3", _new_weights(tmp_path / "w3.pt", 3), {})
    registry.promote(settings, "v3")
    expected = registry.load_serving_predictor(settings).model_version
    assert _until(lambda: client.get("/health").json["model_version"] == expected != first)
