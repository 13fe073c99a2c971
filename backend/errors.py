"""One error shape for the whole service: `{"error": <reason>, "status": <code>}`, the reason
also in the HTTP status line, and one WARNING line in the backend's log.

Why: every bad input must come back as a 4xx JSON with a reason the annotator or admin can act
on, never a traceback page. Why the status line too: Label Studio 1.23 never reads the body of
an error answer. Its ML connector (`label_studio/ml/api_connector.py`, `MLApi._request`) calls
`response.raise_for_status()` and keeps only `str(exc)` of the `requests` HTTPError, which is
"<code> Client Error: <reason phrase> for url: <url>"; that string is what it shows: in the
"Connect Model" dialog after "Reason:" (`ml/serializers.py`, /setup validation), as the
backend's error message in the model settings (`ml/models.py`, `update_state`), and in the
`errors` of an interactive-annotating answer (`ml/models.py`, `interactive_annotating`).
With the standard phrase it read "400 Client Error: BAD REQUEST for url: ...". So the reason
is the reason phrase: "400 Client Error: the labeling config has no KeyPointLabels ... for url:
...". Why the log line: the backend's console held only access-log lines, so an admin could
not see why a request was refused.

The phrase carries no tag-like "<Name>": the Connect Model dialog puts the text into the page
as sanitized HTML, so "no <KeyPointLabels> or <RectangleLabels> control points" read "no  or
control points" there (seen in chromium, tests/e2e/test_browser_errors.py); the phrase says
"KeyPointLabels". The JSON body and the log line keep the message as written. The labeling
editor shows nothing at all for a refused click (README, "Where a refusal's reason
shows").
"""

from __future__ import annotations

import logging
import re

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

REASON_LIMIT = 300  # characters of the reason phrase; the JSON body keeps the whole message
# characters without an ASCII form that reasons use; anything else non-ASCII becomes "?"
_ASCII = str.maketrans({"—": "-", "–": "-", "→": "->", "…": "...", "‘": "'", "’": "'",
                        "“": '"', "”": '"', "×": "x", "≥": ">=", "≤": "<="})


class ApiError(Exception):
    """A request the backend refuses, with the HTTP status and a human-readable reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def one_line(message: str) -> str:
    """The message with every run of whitespace (newlines included) as one space."""
    return re.sub(r"\s+", " ", str(message)).strip()


# "<Name>" / "</Name>" / "<Name/>": a tag to an HTML sanitizer, which drops it; "<" before a
# letter, "/", "!" or "?" opens one (the rest of the text up to ">" would vanish)
_TAG = re.compile(r"</?([A-Za-z][\w.:-]*)\s*/?>")
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


def reason_phrase(message: str, limit: int = REASON_LIMIT) -> str:
    """The message as an HTTP reason phrase: one line of printable ASCII (what an HTTP status
    line may hold; gunicorn and http.server refuse the rest), at most `limit` characters, with
    no HTML tag in it ("<KeyPointLabels>" -> "KeyPointLabels"; Label Studio's Connect Model
    dialog shows the text as sanitized HTML, which would drop the tag)."""
    text = _TAG_OPEN.sub("< ", _TAG.sub(r"\1", one_line(message))).translate(_ASCII)
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text or "refused"


def _task_id() -> object | None:
    """The id of the task the request is about (/predict's first task, a webhook's task)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and (request.content_length or 0) > limit:
        return None  # the body is not read: it is what was refused
    try:
        body = request.get_json(silent=True)
    except Exception:  # noqa: BLE001 - a log line never turns a refusal into a 500
        return None
    if not isinstance(body, dict):
        return None
    tasks = body.get("tasks")
    task = tasks[0] if isinstance(tasks, list) and tasks else body.get("task")
    return task.get("id") if isinstance(task, dict) else None


def log_refusal(status: int, message: str) -> None:
    """One WARNING line: the request's endpoint, its task id when there is one, the reason."""
    try:
        task = _task_id()
        where = f"{request.method} {request.path}" + (f" (task {task})" if task is not None
                                                      else "")
    except Exception:  # noqa: BLE001 - outside a request, or a body that cannot be read
        where = "(no request)"
    log.warning("refused %s: %d %s", where, status, one_line(message))


def error_response(status: int, message: str, *, logged: bool = False):
    """The answer every refusal uses: the JSON body, the reason in the status line, and the
    reason logged (`logged`: the caller has already logged it)."""
    if not logged:
        log_refusal(status, message)
    response = jsonify({"error": message, "status": status})
    response.status = f"{status} {reason_phrase(message)}"
    return response


def register_error_handlers(app: Flask) -> None:
    """Turn ApiError, werkzeug HTTP errors and unexpected exceptions into JSON answers."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body is larger than the limit of {limit} bytes"
        else:
            message = exc.description or exc.name
        response = error_response(status, message)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="clicksmith"'
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # Logged with its traceback for the operator; the client only learns that it failed.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log",
                              logged=True)
