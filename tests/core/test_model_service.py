"""The model service: background and synchronous loading, registry watching, typed seams.

Real predictors from a real registry (copies of the bundled weights); loaders only wrap the real
one to count calls or hold a load back, so "the old model keeps answering" is observed, not
timed.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path

import pytest

from cdnet.fileio import atomic_write_bytes
from clicksmith import models, registry
from clicksmith.models import (
    ModelService,
    ModelUnavailable,
    SegmentationModel,
    process_model,
    process_service,
    reset_process_service,
)
from clicksmith.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "cdnet" / "weights" / "cdnet_mnv2.pt"


@pytest.fixture()
def settings(tmp_path):
    return load_settings(env={}, model_registry=str(tmp_path / "registry"), model_path="",
                         inference_backend="torch", torch_threads=1, flip_average=False)


@pytest.fixture(autouse=True)
def _no_process_service():
    reset_process_service()
    yield
    reset_process_service()


def _store(settings, tmp_path, version: str, promote: bool = True) -> Path:
    """A copy of the bundled weights stored (and promoted) as `version`; its weights path."""
    copy = tmp_path / f"{version}.pt"
    shutil.copyfile(BUNDLED, copy)
    registry.store_version(settings, version, copy, {"noc90": 1.0})
    if promote:
        registry.promote(settings, version)
    return registry.version_dir(settings, version) / registry.WEIGHTS_NAME


class RecordingLoader:
    """The real registry loader; records which weights each load served, and can be held."""

    def __init__(self) -> None:
        self.loaded: list[Path | None] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, settings) -> SegmentationModel:
        self.entered.set()
        assert self.gate.wait(60), "the test never released the load"
        weights = registry.serving_weights(settings)
        model = registry.load_serving_predictor(settings)
        self.loaded.append(weights)
        return model


def _until(predicate, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_background_load_answers_loading_then_ready(settings):
    loader = RecordingLoader()
    loader.gate.clear()
    service = ModelService(settings, loader)
    assert loader.entered.wait(10)
    assert service.state == "loading" and service.model_version == "" and service.model is None
    assert not service.wait(0.05)
    with pytest.raises(ModelUnavailable) as caught:
        service.get(timeout=0.05)
    assert caught.value.reason == "loading" and "still loading" in caught.value.message

    loader.gate.set()
    assert service.wait(60)
    model = service.get(timeout=1)
    assert service.state == "ready" and service.error is None and service.reload_error is None
    assert isinstance(model, SegmentationModel)
    assert service.model_version == model.model_version
    assert model.model_version.startswith("cdnet-mnv2-")
    assert service.load_seconds is not None and service.load_seconds > 0
    assert loader.loaded == [None]  # no registry version yet: the bundled weights


def test_a_failed_load_is_reported(settings):
    atomic_write_bytes(registry.pointer_path(settings), b"ghost\n")  # points at nothing
    service = ModelService(settings)  # the default loader: the registry's serving version
    assert service.wait(60)
    assert service.state == "error" and service.model is None
    assert "ghost" in service.error and service.error.startswith("ValueError")
    with pytest.raises(ModelUnavailable) as caught:
        service.get(timeout=1)
    assert caught.value.reason == "failed"
    assert "could not be loaded" in caught.value.message and "ghost" in caught.value.message


def test_a_failed_background_load_recovers_when_a_version_is_promoted(settings, tmp_path):
    atomic_write_bytes(registry.pointer_path(settings), b"ghost\n")
    service = ModelService(settings, check_every=0.0)
    assert service.wait(60) and service.state == "error"
    _store(settings, tmp_path, "fixed")

    def ready():
        try:
            return service.get(timeout=1) is not None
        except ModelUnavailable:
            return False

    assert _until(ready)
    assert service.state == "ready" and service.error is None


def test_a_promotion_is_picked_up_while_the_old_model_keeps_answering(settings, tmp_path):
    v1 = _store(settings, tmp_path, "v1")
    loader = RecordingLoader()
    service = ModelService(settings, loader, check_every=0.0)
    old = service.get(timeout=60)
    assert loader.loaded == [v1]

    loader.gate.clear()  # the next load (the promoted version) is held back
    v2 = _store(settings, tmp_path, "v2")
    loader.entered.clear()
    start = time.perf_counter()
    assert service.get(timeout=1) is old  # starts the reload, answers at once
    assert loader.entered.wait(10), "the promotion did not start a reload"
    for _ in range(5):  # while v2 loads, v1 keeps answering without waiting for it
        assert service.get(timeout=1) is old
    assert time.perf_counter() - start < 5.0
    assert service.state == "ready"

    loader.gate.set()
    assert _until(lambda: service.get(timeout=1) is not old)
    assert loader.loaded == [v1, v2]
    assert service.state == "ready" and service.reload_error is None
    new = service.get(timeout=1)
    assert new.model_version == old.model_version  # a copy: same content, same version
    assert service.get(timeout=1) is new and loader.loaded == [v1, v2]  # no further reloads


def test_a_broken_registry_keeps_the_old_model_and_reports(settings, tmp_path):
    good = _store(settings, tmp_path, "good")
    loader = RecordingLoader()
    service = ModelService(settings, loader, check_every=0.0)
    old = service.get(timeout=60)

    # the pointer names a version that is not there: the key cannot even be read
    atomic_write_bytes(registry.pointer_path(settings), b"ghost\n")
    assert service.get(timeout=1) is old
    assert "ghost" in service.reload_error and service.state == "ready"
    assert service.error is None and loader.loaded == [good]

    # a promoted version whose weights do not load: the reload fails, the old model answers
    bad = registry.version_dir(settings, "bad")
    bad.mkdir(parents=True)
    (bad / registry.WEIGHTS_NAME).write_bytes(b"not a model")
    registry.promote(settings, "bad")
    assert _until(lambda: service.get(timeout=1) is old and service.reload_error is not None
                  and "ghost" not in service.reload_error)
    assert service.model_version == old.model_version and service.state == "ready"
    time.sleep(0.3)
    for _ in range(5):  # the failed version is not tried again and again
        assert service.get(timeout=1) is old
    time.sleep(0.3)
    assert loader.loaded == [good]

    # promoting a good version again clears the report
    registry.promote(settings, "good")
    assert _until(lambda: service.get(timeout=1) is not old)
    assert service.reload_error is None and loader.loaded == [good, good]


def test_the_synchronous_accessor_reloads_on_a_new_key(settings, tmp_path):
    v1 = _store(settings, tmp_path, "v1")
    service = process_service(settings)
    assert service.state == "idle" and service.model is None  # nothing loads until asked
    first = process_model(settings)
    assert service.state == "ready" and isinstance(first, SegmentationModel)
    assert process_model(settings) is first and process_service(settings) is service
    assert service.load_seconds is not None

    _store(settings, tmp_path, "v2")  # the next "job" gets v2, loaded before it returns
    second = process_model(settings)
    assert second is not first and process_model(settings) is second
    assert registry.current_version(settings) == "v2"
    assert v1.is_file()

    # a broken promotion: the worker keeps its model and reports
    atomic_write_bytes(registry.pointer_path(settings), b"ghost\n")
    assert process_model(settings) is second and "ghost" in service.reload_error

    # other model settings (another registry) replace the process's service
    other = load_settings(env={}, model_registry=str(tmp_path / "other"), model_path="",
                          inference_backend="torch", torch_threads=1, flip_average=False)
    assert process_service(other) is not service


def test_the_synchronous_accessor_raises_its_own_error_and_retries(settings, tmp_path):
    atomic_write_bytes(registry.pointer_path(settings), b"ghost\n")
    with pytest.raises(ModelUnavailable) as caught:
        process_model(settings)
    assert caught.value.reason == "failed" and isinstance(caught.value.__cause__, ValueError)
    assert process_service(settings).state == "error"
    _store(settings, tmp_path, "fixed")  # the next job loads it
    assert process_model(settings).model_version.startswith("cdnet-mnv2-")
    assert process_service(settings).state == "ready"
    assert process_service(settings).error is None


def test_an_injected_loader_is_not_watched(settings, tmp_path):
    calls = []

    def loader(s):
        calls.append(s)
        return registry.load_configured_predictor(None, s)

    service = ModelService(settings, loader, watch=False, check_every=0.0)
    model = service.get(timeout=60)
    _store(settings, tmp_path, "v1")
    time.sleep(0.1)
    assert service.get(timeout=1) is model and len(calls) == 1 and calls[0] is settings


def test_callers_see_the_protocol(settings):
    members = {"model_version", "prepare", "predict", "session", "score_mask"}
    assert members <= set(dir(SegmentationModel))
    assert typing.get_type_hints(ModelService.get)["return"] is SegmentationModel
    assert typing.get_type_hints(process_model)["return"] is SegmentationModel
    assert typing.get_type_hints(models.default_loader)["return"] is SegmentationModel
    assert typing.get_args(models.ModelLoader) == ([models.Settings], SegmentationModel)

    predictor = registry.load_configured_predictor(None, settings)
    assert isinstance(predictor, SegmentationModel)
    assert predictor.drop_far == settings.drop_far == "new"  # DROP_FAR reaches the predictor
    off = registry.load_configured_predictor(None, models.Settings(
        **{**settings.__dict__, "drop_far": "off"}))
    assert off.drop_far == "off"
    with pytest.raises(ValueError, match="drop_far"):
        registry.load_configured_predictor(None, models.Settings(
            **{**settings.__dict__, "drop_far": "sometimes"}))

    class Partial:
        model_version = "x"

        def prepare(self, image):
            return image

    assert not isinstance(Partial(), SegmentationModel)


def test_the_service_sits_in_the_application_layer():
    tree = ast.parse((REPO / "clicksmith" / "models.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.split(".")[0] in {"backend", "review", "torch"}}
    code = ("import sys, clicksmith.models; "
            "print(sorted(m for m in ('torch', 'cv2', 'numpy', 'flask') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
