"""`clicksmith serve`: run the ML backend under gunicorn (or Flask's server with --dev).

Why gunicorn with the factory and no --preload: each worker builds its own app and loads the
model itself after the fork (torch/CUDA state does not survive a fork, see label-studio-ml-backend
issue #424).
Why one process with threads by default (gthread): /health must answer within Label Studio's
1 s while clicks run and while a client sends its body slowly, which one-request-per-process
sync workers cannot do (measured: docs/backend.md "Serving"); and without REDIS_URL the
sessions live in the process's memory, which all its threads share. With REDIS_URL sessions
are in Redis and several worker processes may serve them (--workers).
Why the start-up checks: with Redis unreachable or a rejected Label Studio key every click
fails while Label Studio shows "Connected"; `serve` says so at once, keeps running (the
dependency may come back) and /health answers 503 with the reasons until it is fixed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from clicksmith.settings import Settings, load_settings

DEFAULT_THREADS = 32


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default: settings' host)")
    parser.add_argument("--port", type=int, help="port to listen on (default: settings' port)")
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn worker processes (default 1; more need REDIS_URL, "
                             "where each process holds its own model)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"threads per worker (default {DEFAULT_THREADS}); /health and "
                             "clicks of several annotators are answered side by side")
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"],
                        help="gunicorn worker class (default gthread; sync: one request per "
                             "process at a time, /health waits behind clicks)")
    parser.add_argument("--timeout", type=int, default=120, help="gunicorn worker timeout, s")
    parser.add_argument("--dev", action="store_true", help="Flask's development server instead")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument("--no-checks", action="store_true",
                        help="skip the start-up checks of Redis and Label Studio")


def check_dependencies(settings: Settings) -> tuple[list[str], str | None]:
    """(problems, Label Studio's reason or None) of the configured dependencies: Redis (sessions
    and jobs) answering, Label Studio accepting the API key. Each takes a few seconds at most.
    The checks are clicksmith/checks.py's, which `clicksmith doctor` and /health use too."""
    from clicksmith.checks import check_label_studio, check_redis

    problems = []
    redis_reason = check_redis(settings)
    if redis_reason:
        problems.append(f"{redis_reason}: clicks (sessions) and webhooks (jobs) fail until it "
                        "answers")
    ls_reason = check_label_studio(settings, timeout=5.0)
    if ls_reason:
        problems.append(f"{ls_reason}: images stored in Label Studio cannot be fetched")
    return problems, ls_reason


def server_options(args: argparse.Namespace, settings: Settings) -> dict:
    """gunicorn's settings for these arguments."""
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": 1 if args.workers is None else args.workers,
        "worker_class": args.worker_class,
        # a sync worker with threads > 1 would silently become gthread
        "threads": args.threads if args.worker_class == "gthread" else 1,
        "timeout": args.timeout,
        "loglevel": args.log_level,
        "accesslog": "-",
        "preload_app": False,
    }


MALLOC_ARENAS = "2"


def cap_malloc_arenas() -> None:
    """Run `clicksmith serve` again with MALLOC_ARENA_MAX=2 when it was not set.

    Why: each of the server's request threads can get a glibc malloc arena of its own, and each
    arena keeps the high-water mark of the large bodies it parsed, so resident memory climbs
    with the thread count. glibc reads MALLOC_ARENA_MAX only when a process starts, hence the
    re-exec. Only a command-line start is re-run (an in-process call, as in tests, is left
    alone), and a value already in the environment wins.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or sys.argv[1:2] != ["serve"]:
        return
    env = dict(os.environ, MALLOC_ARENA_MAX=MALLOC_ARENAS)
    os.execve(sys.executable, [sys.executable, "-m", "clicksmith.cli", *sys.argv[1:]], env)


def run(args: argparse.Namespace) -> int:
    cap_malloc_arenas()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
    except (ValueError, TypeError) as exc:
        print(f"clicksmith serve: {exc}", file=sys.stderr)
        return 2
    if not 0 < settings.port < 65536:
        print(f"clicksmith serve: port {settings.port} is not in 1..65535", file=sys.stderr)
        return 2
    workers = 1 if args.workers is None else args.workers
    if workers < 1 or args.threads < 1 or args.timeout < 1:
        print("clicksmith serve: --workers, --threads and --timeout must be >= 1",
              file=sys.stderr)
        return 2
    if workers > 1 and not settings.redis_url:
        print(f"clicksmith serve: --workers {workers} needs REDIS_URL: without it each process "
              "keeps its own sessions, so an annotator's next click could land in a process "
              "that never saw the previous ones. One process serves several annotators with "
              "its threads (--threads).", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    ls_reason: str | None | bool = False
    if not args.no_checks:
        problems, ls_reason = check_dependencies(settings)
        for problem in problems:
            print(f"clicksmith serve: {problem}", file=sys.stderr)
        if problems:
            print("clicksmith serve: starting anyway; /health answers 503 DEGRADED with these "
                  "reasons (Label Studio shows the backend as not connected) until they are "
                  "fixed", file=sys.stderr)
    from backend.app import create_app
    from backend.health import Health
    from backend.serving import BodyDeadline

    def build():
        app = create_app(settings)
        health = Health(app.extensions["clicksmith"], label_studio=ls_reason)
        app.extensions["clicksmith_health"] = health
        health.start()
        app.wsgi_app = BodyDeadline(app.wsgi_app, settings.request_read_timeout_seconds,
                                    settings.max_request_bytes)
        return app

    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        BaseApplication = None  # noqa: N806
    if args.dev or BaseApplication is None:
        if not args.dev:
            print("clicksmith serve: gunicorn is not installed; using Flask's server",
                  file=sys.stderr)
        build().run(settings.host, settings.port, threaded=True, use_reloader=False)
        return 0

    options = server_options(args, settings)

    class Server(BaseApplication):
        """gunicorn with our factory: each worker calls create_app after the fork."""

        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return build()

    Server().run()
    return 0
