"""`clicksmith serve`: run the ML backend under gunicorn (or Flask's server with --dev).

Why gunicorn with the factory and no --preload: each worker builds its own app and loads the
model itself after the fork (torch/CUDA state does not survive a fork, see label-studio-ml-backend
issue #424), and sessions live in Redis so any worker can continue any interaction.
"""

from __future__ import annotations

import argparse
import logging
import sys

from clicksmith.settings import load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default: settings' host)")
    parser.add_argument("--port", type=int, help="port to listen on (default: settings' port)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker")
    parser.add_argument("--timeout", type=int, default=120, help="gunicorn worker timeout, s")
    parser.add_argument("--dev", action="store_true", help="Flask's development server instead")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def run(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
    except (ValueError, TypeError) as exc:
        print(f"clicksmith serve: {exc}", file=sys.stderr)
        return 2
    if not 0 < settings.port < 65536:
        print(f"clicksmith serve: port {settings.port} is not in 1..65535", file=sys.stderr)
        return 2
    if args.workers < 1 or args.threads < 1 or args.timeout < 1:
        print("clicksmith serve: --workers, --threads and --timeout must be >= 1",
              file=sys.stderr)
        return 2
    if args.workers > 1 and not settings.redis_url:
        print("clicksmith serve: warning: without REDIS_URL each worker keeps its own sessions; "
              "use --workers 1 or set REDIS_URL", file=sys.stderr)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    from backend.app import create_app

    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        BaseApplication = None  # noqa: N806
    if args.dev or BaseApplication is None:
        if not args.dev:
            print("clicksmith serve: gunicorn is not installed; using Flask's server",
                  file=sys.stderr)
        create_app(settings).run(settings.host, settings.port, threaded=True,
                                 use_reloader=False)
        return 0

    class Server(BaseApplication):
        """gunicorn with our factory: each worker calls create_app after the fork."""

        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", args.workers)
            self.cfg.set("threads", args.threads)
            self.cfg.set("timeout", args.timeout)
            self.cfg.set("loglevel", args.log_level)
            self.cfg.set("accesslog", "-")
            self.cfg.set("preload_app", False)

        def load(self):
            return create_app(settings)

    Server().run()
    return 0
