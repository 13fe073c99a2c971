"""What /health answers, and the dependency checks `clicksmith serve` runs at start.

What Label Studio 1.23 does with /health (label_studio/ml/api_connector.py `MLApi.health`,
ml/models.py `MLBackend.update_state`, ml/serializers.py `_validate_healthcheck`): a GET with a
1 s timeout (ML_TIMEOUT_HEALTH) whose JSON body it never looks at. Any 2xx means connected: it
goes on to /setup. Anything else (a 4xx/5xx, a timeout, no JSON) marks the backend Disconnected
(and predict_tasks skips it); adding or editing the model then fails with "Can't connect to ML
backend <url>, health check failed ... Additional info: 503 Server Error: <reason> for url:
<url>/health", where <reason> is the reason phrase of our status line (requests' HTTPError
text; the body is not read). So a degraded backend answers 503 with its reasons in both the
status line and the JSON body, and a working one 200, as before.

What counts: everything configured must work. The session store and the job queue (Redis
reachable: a PING with a 0.25 s timeout, cached REDIS_CACHE_S), the model (a model that failed
to load; one still loading is normal and stays UP: /setup and /predict say "loading"), and,
when LABEL_STUDIO_URL is set, Label Studio accepting LABEL_STUDIO_API_KEY (one authenticated
GET /api/current-user/whoami, in a background thread, rechecked every LS_RECHECK_OK_S, or
LS_RECHECK_FAILED_S after a failure): /health itself never waits on Label Studio.

GET /health?deep=1 adds details for a person (`clicksmith doctor` shows them): the RQ workers
listening on QUEUE_NAME (a failing check: webhooks would be queued and never handled), the
token's kind (legacy / personal access token) and user, the model's settings. Same cached
checks, same 200/503, same bound on the time it takes.
The checks themselves live in clicksmith/checks.py, shared with `clicksmith serve`'s start-up
checks and `clicksmith doctor`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from backend.errors import reason_phrase
from clicksmith.checks import (  # noqa: F401 - the checks live in clicksmith/, re-exported
    WHOAMI_PATH,
    check_label_studio,
    check_redis,
    label_studio_token,
    token_kind,
    workers_listening,
)
from clicksmith.settings import Settings

log = logging.getLogger(__name__)

REDIS_CACHE_S = 1.5
PING_TIMEOUT_S = 0.25
LS_RECHECK_OK_S = 60.0
LS_RECHECK_FAILED_S = 10.0


@dataclass
class _Result:
    reason: str | None
    at: float  # time.monotonic() of the check
    user: str = ""  # whom Label Studio knows the key as, when it accepted it


class Health:
    """The /health answer of one app: cheap to ask (cached checks), never waiting on
    Label Studio and at most PING_TIMEOUT_S (twice: connect, read) on Redis."""

    def __init__(self, backend: Any, label_studio: str | None | bool = False) -> None:
        """`label_studio`: a start-up check's result to begin with (its reason, or None when
        it passed); False: none, check in the background on first use."""
        self.backend = backend
        self.settings: Settings = backend.settings
        self._redis: tuple[float, dict[str, dict]] | None = None
        self._redis_lock = threading.Lock()
        self._ls: _Result | None = None
        self._ls_lock = threading.Lock()
        self._ls_running = False
        self._workers: tuple[float, dict[str, Any]] | None = None
        self._workers_lock = threading.Lock()
        if label_studio is not False and self.settings.label_studio_url:
            self._ls = _Result(label_studio or None, time.monotonic())  # type: ignore[arg-type]

    # --- the parts ------------------------------------------------------------------------
    def _redis_checks(self) -> dict[str, dict]:
        """Session store and job queue, pinged at most once every REDIS_CACHE_S."""
        with self._redis_lock:
            now = time.monotonic()
            if self._redis is not None and now - self._redis[0] < REDIS_CACHE_S:
                return self._redis[1]
            sessions = self.backend.sessions
            session_reason = sessions.ping()
            jobs = self.backend.jobs
            queue: dict[str, Any] = {"ok": True, "configured": bool(jobs.enabled)}
            if not jobs.enabled:
                queue["note"] = "REDIS_URL is not set: webhooks are acknowledged, not queued"
            elif sessions.kind == "redis" and getattr(sessions, "url", None) == \
                    self.settings.redis_url:
                # the same Redis: one PING answers for both
                if session_reason:
                    queue |= {"ok": False, "error": "job queue: " + session_reason}
            else:
                from clicksmith.queue import ping

                reason = ping(self.settings, PING_TIMEOUT_S)
                if reason:
                    queue |= {"ok": False, "error": reason}
            store: dict[str, Any] = {"ok": session_reason is None, "store": sessions.kind}
            if session_reason:
                store["error"] = "session store: " + session_reason
            checks = {"sessions": store, "queue": queue}
            self._redis = (time.monotonic(), checks)
            return checks

    def _label_studio(self, deep: bool = False) -> dict[str, Any]:
        if not self.settings.label_studio_url:
            return {"ok": True, "configured": False}
        with self._ls_lock:
            result = self._ls
            due = result is None or time.monotonic() - result.at > (
                LS_RECHECK_FAILED_S if result.reason else LS_RECHECK_OK_S)
            if due and not self._ls_running:
                self._ls_running = True
                threading.Thread(target=self._check_label_studio, daemon=True,
                                 name="clicksmith-health-ls").start()
        answer: dict[str, Any] = {"configured": True, "url": self.settings.label_studio_url}
        if deep:
            answer["token"] = token_kind(self.settings) or "not set"
            if result is not None and result.user:
                answer["user"] = result.user
        if result is None:
            return answer | {"ok": None, "note": "being checked"}
        answer |= {"ok": result.reason is None,
                   "checked_s_ago": round(time.monotonic() - result.at, 1)}
        if result.reason:
            answer["error"] = result.reason
        return answer

    def _check_label_studio(self) -> None:
        user = ""
        try:
            check = label_studio_token(self.settings)
            reason, user = check.reason, check.user
        except Exception as exc:  # a check must never take the thread's error to the log only
            reason = f"Label Studio check failed: {type(exc).__name__}: {exc}"
        if reason:
            log.warning("%s", reason)
        with self._ls_lock:
            self._ls = _Result(reason, time.monotonic(), user)
            self._ls_running = False

    def start(self) -> None:
        """Start the first Label Studio check now rather than on the first /health."""
        self._label_studio()

    def _workers_check(self, queue: dict[str, Any]) -> dict[str, Any]:
        """RQ workers listening on QUEUE_NAME (deep only), listed at most once every
        REDIS_CACHE_S, each Redis call bounded by PING_TIMEOUT_S; not asked when the queue's
        Redis is already known down."""
        if not queue.get("configured"):
            return {"ok": True, "configured": False}
        if queue.get("ok") is False:
            return {"ok": False, "error": "workers: not listed, the job queue's Redis is down"}
        with self._workers_lock:
            now = time.monotonic()
            if self._workers is not None and now - self._workers[0] < REDIS_CACHE_S:
                return self._workers[1]
            names, reason = workers_listening(self.settings, PING_TIMEOUT_S)
            check: dict[str, Any] = {"ok": reason is None and bool(names),
                                     "queue": self.settings.queue_name, "workers": names}
            if reason:
                check["error"] = f"workers: cannot be listed: {reason}"
            elif not names:
                check["error"] = (f"no worker listens on the queue {self.settings.queue_name!r}:"
                                  " webhooks are queued but never handled (start "
                                  "`clicksmith worker`)")
            self._workers = (time.monotonic(), check)
            return check

    def _model(self) -> dict[str, Any]:
        model = self.backend.model
        # a promoted version starts loading on a health check too, not only on the next click:
        # it is ready before an annotator waits for it, and /health shows it without traffic
        # (the look at the registry is rate-limited inside poll)
        poll = getattr(model, "poll", None)
        if poll is not None:
            poll()
        answer: dict[str, Any] = {"ok": model.state != "error", "state": model.state,
                                  "version": model.model_version}
        if model.error:
            answer["error"] = f"model could not be loaded: {model.error}"
        reload_error = getattr(model, "reload_error", None)
        if reload_error:  # the previous version still answers: reported, not degraded
            answer["reload_error"] = reload_error
        return answer

    # --- the answer ---------------------------------------------------------------------
    def answer(self, deep: bool = False) -> tuple[dict[str, Any], int, str]:
        """(JSON body, HTTP status, reason phrase). `deep` (GET /health?deep=1): also the RQ
        workers listening, the Label Studio token's kind and user, the model's settings."""
        model = self._model()
        checks = {"model": model, **self._redis_checks(),
                  "label_studio": self._label_studio(deep)}
        if deep:
            model |= {"path": self.settings.model_path or None,
                      "inference_backend": self.settings.inference_backend}
            checks["workers"] = self._workers_check(checks["queue"])
        reasons = [c["error"] for c in checks.values() if c.get("ok") is False]
        body: dict[str, Any] = {
            "status": "DEGRADED" if reasons else "UP",
            "model_state": model["state"],
            "model_version": model["version"],
            "sessions": checks["sessions"]["store"],
        }
        if self.backend.model.error:
            body["model_error"] = self.backend.model.error
        if reasons:
            body["error"] = "; ".join(reasons)
            body["reasons"] = reasons
        body["checks"] = checks
        if not reasons:
            return body, 200, "OK"
        return body, 503, reason_phrase("DEGRADED: " + body["error"])

