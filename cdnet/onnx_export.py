"""Export a weights file to ONNX, with the weights' version stamped in the ONNX metadata.

The stamp lets `load_predictor` use an ONNX file only when it was exported from exactly the
weights being loaded; a stale export silently giving other masks is worse than slower torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cdnet.inference.runner import VERSION_KEY
from cdnet.model.io import BUNDLED_WEIGHTS, onnx_path_for


def export_onnx(weights: str | Path | None = None, out: str | Path | None = None) -> Path:
    import onnx
    import torch

    from cdnet.model.io import load_model

    model, version = load_model(Path(weights) if weights else None)
    out = Path(out) if out else onnx_path_for(weights)
    h, w = 320, 384
    example = (torch.rand(1, 3, h, w) * 255, torch.zeros(1, 2, h, w), torch.zeros(1, 1, h, w))
    tmp = out.with_suffix(".onnx.tmp")
    dyn = {2: "height", 3: "width"}
    torch.onnx.export(
        model, example, str(tmp), input_names=["image", "clicks", "prior"],
        output_names=["logits", "head_logits", "coarse_logits", "quality"],
        dynamic_axes={"image": dyn, "clicks": dyn, "prior": dyn, "logits": dyn,
                      "head_logits": {2: "height_4", 3: "width_4"},
                      "coarse_logits": {2: "height_16", 3: "width_16"}},
        opset_version=17, dynamo=False)
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key, entry.value = VERSION_KEY, version
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    return out


def max_difference(weights: str | Path | None, onnx_file: Path, size=(256, 320)) -> float:
    """Largest |torch - onnx| probability difference on a random input with clicks and prior."""
    from cdnet.inference.runner import OnnxRunner, TorchRunner
    from cdnet.model.io import load_model

    rng = np.random.default_rng(0)
    h, w = size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    clicks = np.zeros((2, h, w), np.float32)
    clicks[0, h // 2 - 4 : h // 2 + 4, w // 2 - 4 : w // 2 + 4] = 1
    clicks[1, 10:18, 10:18] = 1
    prior = np.zeros((h, w), np.float32)
    prior[h // 4 : h // 2, w // 4 : w // 2] = 1
    model, _ = load_model(Path(weights) if weights else None)
    a, b = TorchRunner(model)(image, clicks, prior), OnnxRunner(onnx_file)(image, clicks, prior)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help=f"weights file (default: {BUNDLED_WEIGHTS.name})")
    parser.add_argument("--out", help="ONNX file (default: beside the weights)")


def run(args: argparse.Namespace) -> int:
    out = export_onnx(args.weights, args.out)
    diff = max_difference(args.weights, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); max |torch - onnx| = {diff:.2e}")
    return 0 if diff < 1e-4 else 1
