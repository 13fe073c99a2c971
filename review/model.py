"""One predictor per worker process, reloaded when the registry promotes a new version.

Why a module-level cache: a pre-label batch is short, loading weights is not; RQ's SimpleWorker
runs every job in the same process, so the first job pays and the rest reuse. The cache key is
the weights path plus the registry pointer's mtime, so a promotion is picked up by the next job
without restarting the worker.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cdnet.settings import Settings
from review import registry

_lock = threading.Lock()
_cached: tuple[tuple, object] | None = None


def weights_path(settings: Settings) -> Path | None:
    """MODEL_PATH when set, else the registry's serving version, else None (bundled)."""
    if settings.model_path:
        return Path(settings.model_path)
    return registry.current_weights_path(settings)


def get_predictor(settings: Settings):
    """The cached predictor for the weights that should serve now."""
    global _cached
    path = weights_path(settings)
    key = (str(path) if path else None, registry.pointer_mtime(settings),
           path.stat().st_mtime_ns if path else None)
    with _lock:
        if _cached is None or _cached[0] != key:
            from cdnet import load_predictor

            _cached = (key, load_predictor(
                path, progressive=settings.progressive, backend=settings.inference_backend,
                base_size=settings.base_size, zoom_size=settings.zoom_size,
                threads=settings.torch_threads))
        return _cached[1]


def clear_cache() -> None:
    global _cached
    with _lock:
        _cached = None
