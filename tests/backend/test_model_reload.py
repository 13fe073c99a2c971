"""A promoted model version is served without a restart; a broken one never replaces it."""

from __future__ import annotations

import time

import pytest
import torch

from backend.model import ModelHolder
from cdnet.model.io import build_model, save_model
from clicksmith import registry
from clicksmith.settings import load_settings


def _wait_for(predicate, holder, seconds=120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        holder.get(timeout=seconds)
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture()
def settings(tmp_path):
    return load_settings(env={}, model_registry=str(tmp_path / "registry"), model_path="",
                         inference_backend="torch")


def _new_weights(path, seed):
    torch.manual_seed(seed)
    save_model(build_model(pretrained=False), path)
    return path


def test_promoted_version_is_picked_up_without_restart(settings, tmp_path):
    holder = ModelHolder(lambda: registry.load_serving_predictor(settings),
                         watch=lambda: registry.serving_key(settings), check_every=0.0)
    first = holder.get(timeout=120).model_version

    registry.store_version(settings, "v2", _new_weights(tmp_path / "w.pt", 1), {"noc90": 1.0})
    registry.promote(settings, "v2")
    assert _wait_for(lambda: holder.model_version != first, holder)
    expected = registry.load_serving_predictor(settings).model_version
    assert holder.model_version == expected and holder.reload_error is None


def test_a_broken_promotion_keeps_the_old_model_serving(settings, tmp_path):
    registry.store_version(settings, "good", _new_weights(tmp_path / "g.pt", 2), {})
    registry.promote(settings, "good")
    holder = ModelHolder(lambda: registry.load_serving_predictor(settings),
                         watch=lambda: registry.serving_key(settings), check_every=0.0)
    good = holder.get(timeout=120).model_version

    bad = registry.version_dir(settings, "bad")
    bad.mkdir(parents=True)
    (bad / registry.WEIGHTS_NAME).write_bytes(b"not a model")
    registry.promote(settings, "bad")
    assert _wait_for(lambda: holder.reload_error is not None, holder)
    assert holder.model_version == good
