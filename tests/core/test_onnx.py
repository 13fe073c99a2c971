"""ONNX export: same numbers as torch, and never used when it is stale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdnet import Click, load_predictor
from cdnet.model.io import build_model, save_model
from cdnet.onnx_export import export_onnx, max_difference
from tests.conftest import disk_image


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    weights = tmp_path_factory.mktemp("onnx") / "model.pt"
    save_model(build_model(pretrained=True), weights)
    return weights, export_onnx(weights)


@pytest.mark.parametrize("size", [(256, 320), (400, 224), (64, 64)])
def test_onnx_equals_torch_within_1e_4(exported, size):
    weights, onnx_file = exported
    assert max_difference(weights, onnx_file, size) < 1e-4


def test_auto_backend_uses_a_matching_onnx_and_gives_the_same_masks(exported):
    weights, _ = exported
    auto = load_predictor(weights, flip=False)
    eager = load_predictor(weights, backend="torch", flip=False)
    assert auto.runner.name == "onnx" and auto.model_version == eager.model_version
    assert load_predictor(weights, flip=True).runner.name == "onnx+flip"
    img, _ = disk_image()
    a = auto.predict(img, [Click(80, 100), Click(20, 20, positive=False)])
    b = eager.predict(img, [Click(80, 100), Click(20, 20, positive=False)])
    assert np.abs(a.probs - b.probs).max() < 1e-4


def test_a_stale_onnx_is_not_used(exported, tmp_path):
    weights, onnx_file = exported
    other = tmp_path / "model.pt"
    torch.manual_seed(1)
    save_model(build_model(pretrained=False), other)
    other.with_suffix(".onnx").write_bytes(onnx_file.read_bytes())  # exported from other weights
    assert load_predictor(other, flip=False).runner.name == "torch"
