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
    """Loads the predictor in a daemon thread; `get` waits for it.

    With `watch` (a function returning what identifies the weights that should serve, e.g. the
    registry pointer's mtime), `get` checks it every `check_every` seconds and, when it changed,
    loads the new version in the background while the old one keeps answering: a promoted
    model is picked up without a restart and without a slow request.
    """

    def __init__(self, loader: Callable[[], Any], watch: Callable[[], object] | None = None,
                 check_every: float = 2.0) -> None:
        self._loader = loader
        self._watch = watch
        self._check_every = check_every
        self._checked_at = time.monotonic()
        self._reloading = threading.Lock()
        self._key: object = None
        self._key = self._current_key()
        self.reload_error: str | None = None
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
        self._maybe_reload()
        return self.predictor

    def _current_key(self) -> object:
        if self._watch is None:
            return None
        try:
            return self._watch()
        except (OSError, ValueError) as exc:  # a broken registry must not break serving
            self.reload_error = f"{type(exc).__name__}: {exc}"
            log.error("cannot read which model should serve: %s", exc)
            return self._key

    def _maybe_reload(self) -> None:
        if self._watch is None or time.monotonic() - self._checked_at < self._check_every:
            return
        self._checked_at = time.monotonic()
        key = self._current_key()
        if key == self._key or not self._reloading.acquire(blocking=False):
            return
        threading.Thread(target=self._reload, args=(key,), name="clicksmith-reload",
                         daemon=True).start()

    def _reload(self, key: object) -> None:
        try:
            predictor = self._loader()
        except Exception as exc:  # keep serving the old model; report on /health
            log.exception("reloading the model failed; the previous version keeps serving")
            self.reload_error = f"{type(exc).__name__}: {exc}"
        else:
            self.predictor, self._key, self.reload_error = predictor, key, None
            log.info("now serving %s", self.model_version)
        finally:
            self._reloading.release()
