"""The predictor, loaded in the background so /health answers at once.

Why: Label Studio gives /health one second; loading torch and the weights takes several. The
server starts answering immediately with the model state, and /predict waits for the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from backend.errors import ApiError

log = logging.getLogger(__name__)


class ModelHolder:
    """Loads the predictor once in a daemon thread; `get` waits for it."""

    def __init__(self, loader: Callable[[], Any]) -> None:
        self._loader = loader
        self._ready = threading.Event()
        self.predictor: Any = None
        self.error: str | None = None
        self.state = "loading"
        self.load_seconds: float | None = None
        self._thread = threading.Thread(target=self._load, name="clicksmith-model", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        start = time.perf_counter()
        try:
            self.predictor = self._loader()
            self.state = "ready"
        except Exception as exc:  # any failure must reach /health, not kill the server
            log.exception("loading the model failed")
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = "error"
        self.load_seconds = time.perf_counter() - start
        self._ready.set()

    @property
    def model_version(self) -> str:
        return str(getattr(self.predictor, "model_version", "")) if self.predictor else ""

    def wait(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def get(self, timeout: float) -> Any:
        """The predictor, or ApiError 503 while it is still loading or when loading failed."""
        if not self._ready.wait(timeout):
            raise ApiError(503, "the model is still loading; retry in a few seconds")
        if self.predictor is None:
            raise ApiError(503, f"the model could not be loaded: {self.error}")
        return self.predictor
