"""The model service: the serving model for the HTTP backend and the RQ workers alike.

One `ModelService` loads the predictor (in a background thread, so /health answers at once, or
synchronously in the caller, as a worker wants), watches the registry (`registry.serving_key`)
and reloads when a version is promoted while the old model keeps answering. A failed reload
keeps the old model and is reported in `reload_error`. Callers see the model only through the
`SegmentationModel` protocol: what backend/ and review/ call on it, nothing more.

The backend's app factory builds its own service; RQ jobs are plain functions with plain
arguments, so they reach one service per worker process through `process_model(settings)`.
This module imports no torch: the loader does, when it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from clicksmith import registry
from clicksmith.settings import Settings

if TYPE_CHECKING:
    import numpy as np

    from cdnet.clicks import Click
    from cdnet.inference.image import PreparedImage
    from cdnet.inference.predictor import Box, Result, Session, SessionState
    from cdnet.inference.scale import ObjectScale

log = logging.getLogger(__name__)

State = Literal["idle", "loading", "ready", "error"]


@runtime_checkable
class SegmentationModel(Protocol):
    """What the backend and the workers call on a model (`cdnet.Predictor` is one); `step` is
    the interaction pipeline's one network run per click (backend.pipeline)."""

    @property
    def model_version(self) -> str: ...

    def prepare(self, image: np.ndarray | PreparedImage) -> PreparedImage: ...

    def predict(self, image: np.ndarray | PreparedImage, clicks: Sequence[Click] = (),
                prior_mask: np.ndarray | None = None, box: Box | None = None) -> Result: ...

    def session(self, image: np.ndarray | PreparedImage, prior_mask: np.ndarray | None = None,
                box: Box | None = None, state: SessionState | None = None) -> Session: ...

    def score_mask(self, image: np.ndarray | PreparedImage, mask: np.ndarray) -> float: ...

    def step(self, image: PreparedImage, state: SessionState,
             click: Click) -> tuple[SessionState, Result]: ...

    def for_scale(self, scale: ObjectScale | None) -> SegmentationModel: ...


ModelLoader = Callable[[Settings], SegmentationModel]


def default_loader(settings: Settings) -> SegmentationModel:
    """MODEL_PATH, else the registry's promoted version, else the bundled weights."""
    return registry.load_serving_predictor(settings)


class ModelUnavailable(RuntimeError):
    """No model to answer with: `reason` is "loading" (retry soon) or "failed" (see message)."""

    def __init__(self, reason: Literal["loading", "failed"], message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_UNREADABLE: Hashable = object()  # the registry could not be read: keep what serves


@dataclass(frozen=True)
class _Serving:
    model: SegmentationModel
    key: Hashable


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class ModelService:
    """The serving model of one process (or one app), kept current with the registry.

    `background=True` starts loading in a daemon thread at once; `get(timeout)` waits for it and
    raises `ModelUnavailable` while loading or after the load failed. When the registry's serving
    key changes (checked at most every `check_every` seconds, on `get`), the new version loads
    in the background while the old one keeps answering.

    `background=False` loads in the caller: the first `get` loads, and a `get` that finds a new
    serving key reloads before returning (a worker picks a promotion up on its next job).

    `watch=False` never looks at the registry (a test's injected loader, a fixed model).
    A reload that fails keeps the old model and sets `reload_error`; the same serving key is not
    tried again until it changes (a fixed or newly promoted version).
    """

    def __init__(self, settings: Settings, loader: ModelLoader | None = None, *,
                 background: bool = True, watch: bool = True,
                 check_every: float = 2.0) -> None:
        self.settings = settings
        self._loader = loader or default_loader
        self._background = background
        self._watch = watch
        self._check_every = check_every
        self._lock = threading.Lock()  # guards the fields below
        self._loading = threading.Lock()  # held by whoever is loading
        self._ready = threading.Event()  # the first load finished, well or not
        self._serving: _Serving | None = None
        self._failed_key: Hashable = None  # the key whose load failed last
        self._has_failed_key = False
        self._checked_at = time.monotonic()
        self._watch_error: str | None = None
        self._reload_error: str | None = None
        self.error: str | None = None
        self.state: State = "idle"
        self.load_seconds: float | None = None
        if background:
            self.state = "loading"
            key = self._read_key()
            self._loading.acquire()
            threading.Thread(target=self._load_and_release, args=(key,),
                             name="clicksmith-model", daemon=True).start()

    # --- what /health and /metrics show -----------------------------------------------
    @property
    def model(self) -> SegmentationModel | None:
        """The model answering now, or None; never waits, never reloads."""
        serving = self._serving
        return serving.model if serving else None

    @property
    def model_version(self) -> str:
        model = self.model
        return str(model.model_version) if model is not None else ""

    @property
    def reload_error(self) -> str | None:
        """Why the newest serving version is not the one answering (None when it is)."""
        return self._watch_error or self._reload_error

    def wait(self, timeout: float | None) -> bool:
        """True once the first load has finished (well or not) within `timeout` seconds."""
        return self._ready.wait(timeout)

    # --- the model ----------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> SegmentationModel:
        """The model that should answer now.

        Background service: waits up to `timeout` for the first load, then raises
        `ModelUnavailable("loading")`; after a failed load `ModelUnavailable("failed")`.
        Synchronous service: loads (or reloads on a new serving key) here; a first load that
        fails raises `ModelUnavailable("failed")` from the loader's error (and the next `get`
        tries again)."""
        if not self._background:
            return self._get_now()
        if not self._ready.wait(timeout):
            raise ModelUnavailable("loading", "the model is still loading; retry in a few seconds")
        self.poll()
        model = self.model
        if model is None:
            raise ModelUnavailable("failed", f"the model could not be loaded: {self.error}")
        return model

    def poll(self) -> None:
        """Background service: when the serving key changed, start loading it (old one
        answers meanwhile). Rate-limited to one registry look every `check_every` seconds."""
        if not self._watch or time.monotonic() - self._checked_at < self._check_every:
            return
        self._checked_at = time.monotonic()
        key = self._read_key()
        if key is _UNREADABLE or not self._wants(key):
            return
        if not self._loading.acquire(blocking=False):
            return  # a load is already running
        if not self._wants(key):  # it finished between the two checks
            self._loading.release()
            return
        threading.Thread(target=self._load_and_release, args=(key,),
                         name="clicksmith-reload", daemon=True).start()

    def _get_now(self) -> SegmentationModel:
        with self._loading:
            key = self._read_key()
            if self._serving is None:
                exc = self._load(key)
                if self._serving is None:
                    raise ModelUnavailable(
                        "failed", f"the model could not be loaded: {self.error}") from exc
            elif key is not _UNREADABLE and self._wants(key):
                self._load(key)  # a failure keeps the old model and sets reload_error
            serving = self._serving
            assert serving is not None
            return serving.model

    # --- loading --------------------------------------------------------------------
    def _wants(self, key: Hashable) -> bool:
        """True when `key` should be loaded: it is not serving and its load did not fail."""
        serving = self._serving
        if serving is not None and serving.key == key:
            return False
        return not (self._has_failed_key and self._failed_key == key)

    def _read_key(self) -> Hashable:
        if not self._watch:
            return None
        try:
            key = registry.serving_key(self.settings)
        except (OSError, ValueError) as exc:  # a broken registry must not break serving
            message = _describe(exc)
            if message != self._watch_error:
                log.error("cannot read which model should serve: %s", message)
            self._watch_error = message
            return _UNREADABLE
        self._watch_error = None
        return key

    def _load_and_release(self, key: Hashable) -> None:
        try:
            self._load(key)
        finally:
            self._loading.release()

    def _load(self, key: Hashable) -> Exception | None:
        """Load for `key` (the caller holds `_loading`) and record the outcome; returns the
        loader's exception instead of raising it."""
        first = self._serving is None
        if first:
            self.state = "loading" if self.state == "idle" else self.state
        start = time.perf_counter()
        try:
            model = self._loader(self.settings)
        except Exception as exc:  # must reach /health or the job's log, not kill the process
            with self._lock:
                self._failed_key, self._has_failed_key = key, True
                if first:
                    log.exception("loading the model failed")
                    self.error, self.state = _describe(exc), "error"
                    self.load_seconds = time.perf_counter() - start
                else:
                    log.exception("reloading the model failed; the previous version keeps "
                                  "serving")
                    self._reload_error = _describe(exc)
            return exc
        else:
            with self._lock:
                self._serving = _Serving(model, None if key is _UNREADABLE else key)
                self._has_failed_key, self._failed_key = False, None
                self.error, self._reload_error, self.state = None, None, "ready"
                self.load_seconds = time.perf_counter() - start
            log.info("now serving %s", self.model_version)
            return None
        finally:
            self._ready.set()


# --- one service per worker process ---------------------------------------------------

_MODEL_FIELDS = ("model_path", "model_registry", "inference_backend", "base_size", "zoom_size",
                 "score_size", "progressive", "progressive_join", "flip_average", "drop_far",
                 "torch_threads")
_process_lock = threading.Lock()
_process: tuple[tuple, ModelService] | None = None


def _model_config(settings: Settings) -> tuple:
    return tuple(getattr(settings, name) for name in _MODEL_FIELDS)


def process_service(settings: Settings) -> ModelService:
    """This process's synchronous, registry-watching service for `settings`' model.

    Why one per process: RQ's SimpleWorker runs every job in the same process, and loading
    weights costs more than a batch; the first job pays, the rest reuse, and a promotion is
    picked up by the next job. Settings that name another model (registry, backend, sizes)
    replace the service."""
    global _process
    config = _model_config(settings)
    with _process_lock:
        if _process is None or _process[0] != config:
            _process = (config, ModelService(settings, background=False, check_every=0.0))
        return _process[1]


def process_model(settings: Settings) -> SegmentationModel:
    """The model that should serve now, for a job or a command (loads or reloads here)."""
    return process_service(settings).get()


def reset_process_service() -> None:
    """Forget this process's service (tests that switch registries)."""
    global _process
    with _process_lock:
        _process = None


__all__ = ["ModelLoader", "ModelService", "ModelUnavailable", "SegmentationModel", "State",
           "default_loader", "process_model", "process_service", "reset_process_service"]
