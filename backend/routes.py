"""HTTP endpoints, as three blueprints: status (open), ml (basic auth), hooks (shared secret).

Label Studio's calls and their timeouts: /health 1 s, /setup 3 s, /predict 100 s, /webhook 1 s
(no retries). Handlers read the app's Backend from `current_app.extensions`, never a global.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import ujson
from flask import Blueprint, Response, current_app, jsonify, request

from backend.auth import require_basic_auth, require_webhook_secret
from backend.errors import ApiError
from backend.lazy_rle import parse_predict
from backend.prompts import project_id
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
# Label Studio 1.23's webhook actions (label_studio/webhooks/models.py WebhookAction) and the
# ML backend's START_TRAINING: the only values the `action` label of the webhooks metric takes,
# any other action is counted as "other" (a label per sent string would grow without bound)
WEBHOOK_ACTIONS = CORRECTION_ACTIONS | TRAIN_ACTIONS | {
    "PROJECT_CREATED",
    "PROJECT_UPDATED",
    "PROJECT_DELETED",
    "TASKS_CREATED",
    "TASKS_DELETED",
    "LABEL_LINK_CREATED",
    "LABEL_LINK_UPDATED",
    "LABEL_LINK_DELETED",
}


def backend() -> Any:
    return current_app.extensions["clicksmith"]


_STEP = np.zeros(256, np.int8)  # +1 opens an array or object, -1 closes one
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
# the only bytes the depth depends on, as a bytes.translate table to 1 (them) and 0 (the rest)
_SYNTAX = bytes(int(chr(c) in '[]{}"\\') for c in range(256))


def _run_before(pos: np.ndarray, slashes: np.ndarray, run_start: np.ndarray,
                carry: int) -> np.ndarray:
    """How many backslashes come right before each position of a slice, given the slice's
    backslash positions `slashes` and each one's run start (an index into them); a run reaching
    the slice's start goes on with the previous slice's `carry` backslashes."""
    at_start = np.where(pos == 0, carry, 0)
    if not slashes.size:
        return at_start
    j = np.maximum(np.searchsorted(slashes, pos) - 1, 0)  # the last backslash before
    s0 = run_start[j]
    length = j - s0 + 1 + np.where(slashes[s0] == 0, carry, 0)
    return np.where((pos > 0) & (slashes[j] == pos - 1), length, at_start)


def json_too_deep(raw: bytes, limit: int, chunk: int = 1 << 20) -> bool:
    """Whether the JSON text `raw` nests arrays and objects more than `limit` deep, found
    without parsing it (Python's parser recurses once per level: 1,000 levels raise
    RecursionError) and without recursion: one pass over `chunk`-byte slices, carrying the
    depth, whether a string is open and the backslashes ending the slice. Brackets inside
    strings do not count; a quote after an odd run of backslashes is escaped. Linear time,
    memory a few times `chunk`, whatever the text.

    Each slice is reduced to its brackets, quotes and backslashes first (their positions), so
    the work after that one pass grows with the text's structure, not its length: a 1 MB
    Label Studio task whose bulk is brush RLE (digits and commas) is a few thousand of them."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    data = np.frombuffer(raw, np.uint8)
    depth, in_string, carry = 0, False, 0  # carry: backslashes ending the previous slice
    for start in range(0, data.size, chunk):
        part = data[start:start + chunk]
        where = np.flatnonzero(np.frombuffer(bytes(raw[start:start + chunk]).translate(_SYNTAX),
                                             bool))
        chars = part[where]
        quotes = where[chars == _QUOTE]
        slashes = where[chars == _BACKSLASH]
        # each backslash's run: the index (among `slashes`) of the run's first backslash
        first = np.ones(slashes.size, bool)
        first[1:] = np.diff(slashes) != 1
        run_start = np.maximum.accumulate(np.where(first, np.arange(slashes.size), 0))

        if quotes.size:  # a quote after an odd run of backslashes is escaped
            quotes = quotes[_run_before(quotes, slashes, run_start, carry) % 2 == 0]
        brackets = where[_STEP[chars] != 0]
        if brackets.size:
            outside = (np.searchsorted(quotes, brackets) + in_string) % 2 == 0
            moves = _STEP[part[brackets[outside]]].astype(np.int64)
            if moves.size:
                if depth + int(np.cumsum(moves).max()) > limit:
                    return True
                depth += int(moves.sum())
        in_string ^= bool(quotes.size % 2)
        carry = int(_run_before(np.array([part.size]), slashes, run_start, carry)[0])
    return False


def parse_json(raw: bytes) -> object:
    """The JSON text `raw` parsed, None when it is not JSON.

    ujson (a C parser, installed with label-studio-sdk) first: an interactive /predict carries
    every draft, annotation and prediction of the task, brush RLE mostly (about 1 MB at 100
    masks), which the standard parser reads 4x slower (38 vs 9 ms per MB on this machine): a
    cost every click paid in proportion to the task's regions. The values are the standard
    parser's (NaN and Infinity included); what ujson refuses (a byte order mark, UTF-16) goes
    to the standard parser as before. ujson is laxer in three ways, harmless here: it accepts
    a leading zero (`01`), a raw control character inside a string and a bare `1.`."""
    try:
        return ujson.loads(raw)
    except (ValueError, OverflowError):
        pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def json_body(predict: bool = False) -> dict:
    """The request's JSON object, or ApiError 400 saying why it is not one. The nesting is
    checked on the raw body first (MAX_JSON_DEPTH), before the parser can recurse into it.
    `predict`: a /predict body, whose tasks' stored brush RLE an interactive request leaves
    unparsed until decoded (backend/lazy_rle.py)."""
    limit = backend().settings.max_json_depth
    raw = request.get_data(cache=True)
    if json_too_deep(raw, limit):
        raise ApiError(400, f"the request body is JSON nested deeper than {limit} levels "
                            "(MAX_JSON_DEPTH)")
    if not request.is_json:  # what request.get_json(silent=True) required
        raise ApiError(400, "the request body is not valid JSON")
    body = parse_predict(raw, parse_json) if predict else parse_json(raw)
    if body is None:
        raise ApiError(400, "the request body is not valid JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


# --- status ---------------------------------------------------------------------------------
@status.get("/")
@status.get("/health")
def health():
    """UP (200) when everything configured works, else DEGRADED (503) with the reasons in the
    body and in the status line's reason phrase, which Label Studio shows (backend/health.py)."""
    from backend.health import Health

    checker = current_app.extensions.get("clicksmith_health")
    if checker is None:
        checker = current_app.extensions.setdefault("clicksmith_health", Health(backend()))
    deep = request.args.get("deep", "").lower() in {"1", "true", "yes"}
    answer, code, reason = checker.answer(deep=deep)
    response = jsonify(answer)
    response.status = f"{code} {reason}"
    return response


@status.get("/metrics")
def metrics():
    b = backend()
    extra = {
        "image_cache_hits": b.images.hits,
        "image_cache_misses": b.images.misses,
        "image_cache_images": len(b.images),
        "image_cache_bytes": b.images.nbytes,
        "model_ready": 1 if b.model.state == "ready" else 0,
    }
    text = b.metrics.render(b.model.model_version, b.model.state, extra)
    return Response(text, mimetype="text/plain; version=0.0.4")


@status.get("/versions")
def versions():
    """{"versions": [names], "current": the serving one}: Label Studio lists `versions`."""
    return jsonify(backend().versions())


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
    return jsonify(backend().predict(json_body(predict=True)))


# --- hooks ------------------------------------------------------------------------------------
@hooks.before_request
def _hook_auth() -> None:
    require_webhook_secret(backend().settings.webhook_secret)


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
    backend().metrics.inc("webhooks", action=action if action in WEBHOOK_ACTIONS else "other")
    if action in TRAIN_ACTIONS:
        return _start_training(body)
    if action not in CORRECTION_ACTIONS:
        return jsonify({"status": "ignored", "action": action})
    backend().annotation_submitted(body)  # telemetry: finishes the objects clicked; never raises
    return _enqueue(CORRECTIONS_JOB, body, action=action)


@hooks.post("/train")
def train():
    return _start_training(json_body())
