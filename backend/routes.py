"""HTTP endpoints, as three blueprints: status (open), ml (basic auth), hooks (shared secret).

Label Studio's calls and their timeouts: /health 1 s, /setup 3 s, /predict 100 s, /webhook 1 s
(no retries). Handlers read the app's Backend from `current_app.extensions`, never a global.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from backend.auth import require_basic_auth, require_webhook_secret
from backend.errors import ApiError
from clicksmith.queue import CORRECTIONS_JOB, RETRAIN_JOB, JobQueue, QueueUnavailable

status = Blueprint("status", __name__)
ml = Blueprint("ml", __name__)
hooks = Blueprint("hooks", __name__)

CORRECTION_ACTIONS = {
    "ANNOTATION_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATIONS_DELETED",
}
TRAIN_ACTIONS = {"START_TRAINING"}


def backend() -> Any:
    return current_app.extensions["clicksmith"]


def json_body() -> dict:
    """The request's JSON object, or ApiError 400 saying why it is not one."""
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "the request body is not valid JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


# --- status ---------------------------------------------------------------------------------
@status.get("/")
@status.get("/health")
def health():
    b = backend()
    answer = {
        "status": "UP",
        "model_state": b.model.state,
        "model_version": b.model.model_version,
        "sessions": b.sessions.kind,
    }
    if b.model.error:
        answer["model_error"] = b.model.error
    return jsonify(answer)


@status.get("/metrics")
def metrics():
    b = backend()
    extra = {
        "image_cache_hits": b.images.hits,
        "image_cache_misses": b.images.misses,
        "model_ready": 1 if b.model.state == "ready" else 0,
    }
    text = b.metrics.render(b.model.model_version, b.model.state, extra)
    return Response(text, mimetype="text/plain; version=0.0.4")


@status.get("/versions")
def versions():
    # Label Studio accepts a 404 here: one model version per running backend.
    raise ApiError(404, "model versions are not listed; the current one is in /health")


# --- ml ---------------------------------------------------------------------------------------
@ml.before_request
def _ml_auth() -> None:
    s = backend().settings
    require_basic_auth(s.basic_auth_user, s.basic_auth_pass)


@ml.post("/setup")
def setup():
    return jsonify(backend().setup(json_body()))


@ml.post("/predict")
def predict():
    return jsonify(backend().predict(json_body()))


# --- hooks ------------------------------------------------------------------------------------
@hooks.before_request
def _hook_auth() -> None:
    require_webhook_secret(backend().settings.webhook_secret)


def project_id(body: dict) -> int:
    """The numeric project id of a webhook or /train body ({"project": {...}} or "<id>.<ts>")."""
    project = body.get("project")
    if isinstance(project, dict):
        project = project.get("id")
    if isinstance(project, str):
        project = project.split(".", 1)[0]
    try:
        value = int(project)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ApiError(400, "the body names no project id ('project')") from None
    if value <= 0:
        raise ApiError(400, f"project id must be positive, got {value}")
    return value


def _queue() -> JobQueue:
    return backend().jobs


def _enqueue(job_name: str, argument, **answer):
    """Hand work to the RQ queue and answer at once (Label Studio waits one second at most)."""
    queue = _queue()
    if not queue.enabled:
        return jsonify({"status": "ignored", "reason": "REDIS_URL is not set: no job queue"})
    try:
        job = queue.enqueue(job_name, argument)
    except QueueUnavailable as exc:  # Redis down: Label Studio shows the reason
        raise ApiError(503, str(exc)) from None
    backend().metrics.inc("jobs_enqueued", job=job_name)
    return jsonify({"status": "queued", "job_id": job, **answer}), 201


def _start_training(body: dict):
    pid = project_id(body)
    return _enqueue(RETRAIN_JOB, pid, project=pid)


@hooks.post("/webhook")
def webhook():
    body = json_body()
    action = body.get("action")
    if not isinstance(action, str):
        raise ApiError(400, "the webhook body has no 'action'")
    backend().metrics.inc("webhooks", action=action)
    if action in TRAIN_ACTIONS:
        return _start_training(body)
    if action not in CORRECTION_ACTIONS:
        return jsonify({"status": "ignored", "action": action})
    return _enqueue(CORRECTIONS_JOB, body, action=action)


@hooks.post("/train")
def train():
    return _start_training(json_body())
