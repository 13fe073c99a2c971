"""CDNet interactive segmentation: clicks in, masks out. Start at `cdnet.inference.predictor`.

The names below are imported on first use (PEP 562), so `import cdnet` costs nothing: the
command line and the HTTP service start without loading torch or OpenCV until a model is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Click": "cdnet.clicks",
    "PreparedImage": "cdnet.inference.image",
    "Predictor": "cdnet.inference.predictor",
    "Result": "cdnet.inference.predictor",
    "Session": "cdnet.inference.predictor",
    "SessionState": "cdnet.inference.predictor",
    "load_predictor": "cdnet.inference.predictor",
}

__all__ = ["Click", "PreparedImage", "Predictor", "Result", "Session", "SessionState",
           "load_predictor"]

if TYPE_CHECKING:
    from cdnet.clicks import Click
    from cdnet.inference.image import PreparedImage
    from cdnet.inference.predictor import (
        Predictor,
        Result,
        Session,
        SessionState,
        load_predictor,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cdnet' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
