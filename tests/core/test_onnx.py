"""ONNX export: same numbers as torch, and never used when it is stale."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from cdnet import Click, load_predictor
from cdnet.model.io import build_model, save_model
from cdnet.onnx_export import export_onnx, max_difference
from tests.conftest import disk_image

REPO = Path(__file__).resolve().parents[2]


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


# --- an install without torch (the serving image): ONNX Runtime alone serves ---------------

_WITHOUT_TORCH = """
import sys

class NoTorch:  # `import torch` raises ImportError, as without the package
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("No module named 'torch'")

sys.meta_path.insert(0, NoTorch())
"""


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _WITHOUT_TORCH + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def test_without_torch_the_bundled_model_and_the_backend_serve_on_onnx():
    out = _run_without_torch("""
        import numpy as np
        from backend.app import create_app
        from cdnet import Click, load_predictor
        from tests.conftest import disk_image

        p = load_predictor()
        img, gt = disk_image()
        mask = p.predict(img, [Click(80, 100)]).mask
        iou = (mask & gt).sum() / (mask | gt).sum()
        print(p.runner.name, p.model_version, round(float(iou), 3))
        create_app  # the HTTP service imports without torch too
    """)
    assert out.returncode == 0, out.stderr
    runner, version, iou = out.stdout.split()
    assert runner == "onnx+flip" and version == load_predictor(flip=False).model_version
    assert float(iou) > 0.8


def test_without_torch_weights_with_no_onnx_export_say_how_to_serve_them(exported, tmp_path):
    weights = tmp_path / "lonely.pt"
    weights.write_bytes(exported[0].read_bytes())
    out = _run_without_torch(f"""
        from cdnet import load_predictor
        load_predictor({str(weights)!r})
    """)
    assert out.returncode != 0
    assert "have no ONNX export" in out.stderr and "clicksmith export-onnx --weights" in out.stderr


@pytest.mark.slow
def test_a_stored_registry_version_carries_its_onnx_export_and_serves_without_torch(tmp_path):
    from clicksmith import registry
    from clicksmith.settings import load_settings

    settings = load_settings(env={}, model_registry=str(tmp_path / "models"))
    weights = tmp_path / "candidate.pt"
    torch.manual_seed(2)
    save_model(build_model(pretrained=False), weights)
    version = load_predictor(weights, backend="torch", flip=False).model_version
    target = registry.store_version(settings, version, weights, {}, export_onnx=True)
    registry.promote(settings, version)
    assert (target / "weights.onnx").is_file()
    out = _run_without_torch(f"""
        from clicksmith import registry
        from clicksmith.settings import load_settings
        s = load_settings(env={{}}, model_registry={str(settings.model_registry)!r})
        p = registry.load_serving_predictor(s)
        print(p.runner.name, p.model_version)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["onnx+flip", version]
