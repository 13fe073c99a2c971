"""Where model files live and which version they are, without importing torch.

The serving image carries ONNX Runtime but no PyTorch: it must still find the bundled files
and name the version of any weights file (the version is a digest of the file's bytes, so
reading it never needs the framework that wrote it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
BUNDLED_WEIGHTS = WEIGHTS_DIR / "cdnet_mnv2.pt"
BUNDLED_ONNX = WEIGHTS_DIR / "cdnet_mnv2.onnx"
UNTRAINED_VERSION = "cdnet-mnv2-untrained"


def onnx_path_for(weights: str | Path | None) -> Path:
    """Where the ONNX export of a weights file lives: beside it, or the bundled one."""
    return BUNDLED_ONNX if weights is None else Path(weights).with_suffix(".onnx")


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8]


def version_of(weights: str | Path | None) -> str:
    """The model_version a weights file serves as (None: the bundled file, or the untrained
    network when no bundled file exists, as `cdnet.model.io.load_model` builds then)."""
    if weights is None and not BUNDLED_WEIGHTS.is_file():
        return UNTRAINED_VERSION
    path = Path(weights or BUNDLED_WEIGHTS)
    if not path.is_file():
        raise FileNotFoundError(f"model weights not found: {path}")
    return f"cdnet-mnv2-{file_digest(path)}"
