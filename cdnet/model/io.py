"""Model files: a small dict {"state_dict", "config", "meta"} saved with torch.save.

`model_version` is derived from the weights' content, so the same file always reports the
same version and a retrained file a different one, with no bookkeeping to forget.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch

from cdnet.model.cdnet import CDNet

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
BUNDLED_WEIGHTS = WEIGHTS_DIR / "cdnet_mnv2.pt"
BUNDLED_ONNX = WEIGHTS_DIR / "cdnet_mnv2.onnx"


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8]


def model_config(model: CDNet) -> dict:
    """The architecture settings `build_model` rebuilds `model` from (saved with its weights)."""
    return {"num_heads": model.heads.out_channels, "pdm_iterations": model.pdm.iterations,
            "fine_head": model.fine is not None}


def build_model(config: dict | None = None, pretrained: bool = False) -> CDNet:
    config = config or {}
    return CDNet(num_heads=config.get("num_heads", 4),
                 pdm_iterations=config.get("pdm_iterations", 10), pretrained=pretrained,
                 fine_head=config.get("fine_head", False))


def with_fine_head(model: CDNet) -> CDNet:
    """`model` with a stride-2 refinement head added (zero-initialised: the same outputs until
    trained); a model that has one is returned as is."""
    if model.fine is not None:
        return model
    grown = build_model({**model_config(model), "fine_head": True})
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    stray = [k for k in missing if not k.startswith("fine.")] + list(unexpected)
    if stray:
        raise ValueError(f"weights do not fit the model with a fine head: {stray[:5]}")
    return grown.train(model.training)


def save_model(model: CDNet, path: Path, meta: dict | None = None, extra: dict | None = None):
    """Atomic save: a crash mid-write never leaves a truncated weights file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": model_config(model),
        "meta": meta or {},
        **(extra or {}),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_model(path: Path | None = None) -> tuple[CDNet, str]:
    """(model in eval mode, model_version); no path and no bundled file: untrained head."""
    if path is None and not BUNDLED_WEIGHTS.is_file():
        return build_model(pretrained=True).eval(), "cdnet-mnv2-untrained"
    path = Path(path or BUNDLED_WEIGHTS)
    if not path.is_file():
        raise FileNotFoundError(f"model weights not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{path} is not a clicksmith model file")
    model = build_model(payload.get("config"))
    model.load_state_dict(payload["state_dict"], strict=True)
    return model.eval(), f"cdnet-mnv2-{file_digest(path)}"
