"""Model files: a small dict {"state_dict", "config", "meta"} saved with torch.save.

`model_version` is derived from the weights' content, so the same file always reports the
same version and a retrained file a different one, with no bookkeeping to forget.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from cdnet.model.cdnet import CDNet
from cdnet.model.files import (  # noqa: F401  (re-exported: the model's file API in one place)
    BUNDLED_ONNX,
    BUNDLED_WEIGHTS,
    UNTRAINED_VERSION,
    WEIGHTS_DIR,
    file_digest,
    onnx_path_for,
    version_of,
)


def model_config(model: CDNet) -> dict:
    """The architecture settings `build_model` rebuilds `model` from (saved with its weights)."""
    return {"num_heads": model.heads.out_channels, "pdm_iterations": model.pdm.iterations,
            "fine_head": model.fine is not None,
            "fine_trunk": model.fine is not None and model.fine.trunk_channels > 0}


ARCHITECTURE_DEFAULTS = {"num_heads": 4, "pdm_iterations": 10, "fine_head": False,
                         "fine_trunk": False}


def full_config(config: dict | None) -> dict:
    """A saved config with every architecture setting filled in: files written before a setting
    existed leave it out, and mean its default."""
    return {**ARCHITECTURE_DEFAULTS, **(config or {})}


def build_model(config: dict | None = None, pretrained: bool = False) -> CDNet:
    return CDNet(**full_config(config), pretrained=pretrained)


def with_fine_head(model: CDNet, trunk: bool = False) -> CDNet:
    """`model` with a stride-2 refinement head added, or (`trunk`) its head also fed the trunk's
    stride-2 features: what is new starts at zero, so the outputs stay the same until trained.
    A model that already has what is asked for is returned as is."""
    config = model_config(model)
    if config["fine_head"] and (config["fine_trunk"] or not trunk):
        return model
    grown = build_model({**config, "fine_head": True, "fine_trunk": trunk})
    target = grown.state_dict()
    state = {}
    for key, value in model.state_dict().items():
        if key in target and target[key].shape != value.shape:  # the head's wider first layer
            value = _widened(value, target[key])
        state[key] = value
    missing, unexpected = grown.load_state_dict(state, strict=False)
    stray = [k for k in missing if not k.startswith("fine.")] + list(unexpected)
    if stray:
        raise ValueError(f"weights do not fit the model with a fine head: {stray[:5]}")
    return grown.train(model.training)


def _widened(old: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """`old` (input channels 0..n) in a layer grown to more inputs: new depthwise filters and
    batch-norm entries keep their fresh init, the pointwise weights that read them start at 0,
    so the new inputs add nothing until trained."""
    if fresh.dim() == 4 and fresh.shape[0] == old.shape[0]:  # pointwise (cout, cin, 1, 1)
        out = torch.zeros_like(fresh)
        out[:, : old.shape[1]] = old
    else:  # depthwise filters / batch-norm vectors: one per input channel
        out = fresh.clone()
        out[: old.shape[0]] = old
    return out


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


def read_model_file(path: Path) -> dict:
    """The saved dict of a model file; FileNotFoundError / ValueError naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"model weights not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{path} is not a clicksmith model file")
    return payload


def load_model(path: Path | None = None) -> tuple[CDNet, str]:
    """(model in eval mode, model_version); no path and no bundled file: untrained head."""
    if path is None and not BUNDLED_WEIGHTS.is_file():
        return build_model(pretrained=True).eval(), UNTRAINED_VERSION
    path = Path(path or BUNDLED_WEIGHTS)
    payload = read_model_file(path)
    model = build_model(payload.get("config"))
    model.load_state_dict(payload["state_dict"], strict=True)
    return model.eval(), version_of(path)
