"""The Flask app factory: `create_app()` for gunicorn, `create_app(settings, loader)` for tests.

Why a factory and no module globals: every gunicorn worker, test and benchmark builds its own
app with its own settings, model holder, caches and metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, g, request

from backend.errors import register_error_handlers
from backend.model import ModelHolder
from backend.routes import hooks, ml, status
from backend.service import Backend
from clicksmith.registry import serving_key
from clicksmith.settings import Settings, load_settings

log = logging.getLogger(__name__)

PredictorLoader = Callable[[Settings], Any]


def default_loader(settings: Settings) -> Any:
    """MODEL_PATH, else the registry's promoted version, else the bundled weights."""
    from clicksmith.registry import load_serving_predictor

    return load_serving_predictor(settings)


def create_app(
    settings: Settings | None = None, predictor_loader: PredictorLoader | None = None
) -> Flask:
    """Build the backend app; the model starts loading in the background right away."""
    settings = settings or load_settings()
    loader = predictor_loader or default_loader
    app = Flask("clicksmith")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False
    watch = None if predictor_loader else (lambda: serving_key(settings))
    holder = ModelHolder(lambda: loader(settings), watch=watch)
    app.extensions["clicksmith"] = Backend(settings, holder)
    register_error_handlers(app)
    for blueprint in (status, ml, hooks):
        app.register_blueprint(blueprint)
    _install_timing(app)
    return app


def _install_timing(app: Flask) -> None:
    """Count every answer and time it, per endpoint rule (not per raw path: bounded labels)."""

    @app.before_request
    def _start() -> None:
        g.clicksmith_start = time.perf_counter()

    @app.after_request
    def _record(response):
        start = g.get("clicksmith_start")
        if start is not None:
            rule = request.url_rule.rule if request.url_rule else "unmatched"
            app.extensions["clicksmith"].metrics.observe(
                rule, request.method, response.status_code, time.perf_counter() - start
            )
        return response
