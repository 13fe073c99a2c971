"""One predictor per worker process, reloaded when the registry promotes a new version.

Why a module-level cache: a pre-label batch is short, loading weights is not; RQ's SimpleWorker
runs every job in the same process, so the first job pays and the rest reuse. The cache key is
the weights path plus the registry pointer's mtime, so a promotion is picked up by the next job
without restarting the worker.
"""

from __future__ import annotations

import threading

from clicksmith import registry
from clicksmith.settings import Settings

_lock = threading.Lock()
_cached: tuple[tuple, object] | None = None


def get_predictor(settings: Settings):
    """The cached predictor for the weights that should serve now."""
    global _cached
    key = registry.serving_key(settings)
    with _lock:
        if _cached is None or _cached[0] != key:
            _cached = (key, registry.load_serving_predictor(settings))
        return _cached[1]


def clear_cache() -> None:
    global _cached
    with _lock:
        _cached = None
