"""One error shape for the whole service: `{"error": <reason>, "status": <code>}`.

Why: Label Studio shows the backend's answer to the annotator, and a traceback page helps nobody;
every bad input must come back as a 4xx JSON with a reason the annotator or admin can act on.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A request the backend refuses, with the HTTP status and a human-readable reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str):
    """The JSON body and status every refusal uses."""
    response = jsonify({"error": message, "status": status})
    response.status_code = status
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
        log.exception("unhandled error")
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")
