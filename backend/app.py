"""The Flask app factory: `create_app()` for gunicorn, `create_app(settings, loader)` for tests.

Why a factory and no module globals: every gunicorn worker, test and benchmark builds its own
app with its own settings, model service, caches and metrics.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request

from backend.errors import error_response, register_error_handlers
from backend.routes import hooks, ml, status
from backend.service import Backend
from clicksmith.models import ModelLoader, ModelService, ModelUnavailable
from clicksmith.settings import Settings, load_settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, predictor_loader: ModelLoader | None = None
) -> Flask:
    """Build the backend app; the model starts loading in the background right away.

    Without `predictor_loader` the service loads the registry's serving version and reloads
    when another is promoted; an injected loader (tests) is loaded once, with no watching."""
    settings = settings or load_settings()
    app = Flask("clicksmith")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False
    model = ModelService(settings, predictor_loader, background=True,
                         watch=predictor_loader is None)
    app.extensions["clicksmith"] = Backend(settings, model)
    register_error_handlers(app)
    # no model to answer with (still loading, or failed): the backend's 503 with the reason
    app.register_error_handler(ModelUnavailable, lambda exc: error_response(503, exc.message))
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
