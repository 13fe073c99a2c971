"""The `clicksmith` command: one entry point, subcommands living beside the code they run.

Each subcommand is a module exposing `configure(parser)` and `run(args) -> int`; it is imported
only when invoked, so `clicksmith status` does not pay for loading torch.

A Redis or Label Studio that cannot be reached ends any subcommand the same way, here: one line
saying what was unreachable, where, and how to fix it, and exit status 2 (as for bad arguments),
instead of the client library's traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from urllib.parse import urlsplit, urlunsplit

# name -> (module, one-line help). Modules are imported lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("backend.cli", "run the Label Studio ML backend HTTP service"),
    "train": ("cdnet.train.cli", "train (or resume training) the CDNet model"),
    "eval": ("cdnet.eval.cli", "NoC evaluation on GrabCut / Berkeley / a dataset folder"),
    "export-onnx": ("cdnet.onnx_export", "export weights to ONNX and check them against torch"),
    "average-weights": ("cdnet.model.average", "average checkpoints of one run into one model"),
    "worker": ("review.worker", "run an RQ worker for pre-label / review / retrain jobs"),
    "prelabel": ("review.prelabel_cli", "pre-label a Label Studio project"),
    "review": ("review.review_cli", "rank a project's masks by predicted quality"),
    "retrain": ("review.retrain_cli", "fine-tune on collected corrections, promote if better"),
    "status": ("review.status_cli", "show progress of a queued job; --project N: clicks and "
               "seconds per object per model version, retrain history"),
    "doctor": ("clicksmith.doctor", "check Label Studio, the token, a project's images, "
               "config, ML backend and webhook, Redis, workers and the model; say what to fix"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    top = argparse.ArgumentParser(
        prog="clicksmith",
        description="Interactive segmentation for Label Studio.",
        epilog="commands:\n" + "\n".join(f"  {n:<16} {h}" for n, (_, h) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("command", choices=sorted(COMMANDS), metavar="command")
    top.add_argument("args", nargs=argparse.REMAINDER)
    if not argv:
        top.print_help()
        return 2
    ns = top.parse_args(argv[:1])
    module_name, help_text = COMMANDS[ns.command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"clicksmith {ns.command}: not available in this build ({exc})", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"clicksmith {ns.command}", description=help_text)
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except Exception as exc:
        reason = unreachable(exc)
        if reason is None:
            raise
        print(f"clicksmith {ns.command}: {reason}", file=sys.stderr)
        return 2


def _setting(name: str) -> str:
    """A setting's value as the subcommand saw it (settings file + environment), for messages."""
    try:
        from clicksmith.settings import load_settings

        return str(getattr(load_settings(), name) or "")
    except Exception:  # noqa: BLE001 - a message must not fail on a broken configuration
        return os.environ.get(name.upper(), "")


def redact(url: str) -> str:
    """`url` without its password (REDIS_URL may hold one)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def _redis_down(exc: BaseException) -> bool:
    redis = sys.modules.get("redis.exceptions")
    return redis is not None and isinstance(exc, redis.ConnectionError | redis.TimeoutError)


def _label_studio_down(exc: BaseException) -> bool:
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, httpx.TransportError)


def unreachable(exc: BaseException) -> str | None:
    """One line for an unreachable Redis or Label Studio (QueueUnavailable, redis connection
    errors, LabelStudioError, the SDK's httpx transport errors, or one of these as the cause);
    None for anything else."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
        queue = sys.modules.get("clicksmith.queue")
        if _redis_down(exc) or (queue is not None and isinstance(exc, queue.QueueUnavailable)):
            url = _setting("redis_url")
            if not url:
                return f"{text}. Fix: set REDIS_URL, e.g. redis://127.0.0.1:6379/0"
            return (f"cannot reach Redis at {redact(url)} (REDIS_URL): {text}. Fix: start Redis "
                    "there, or set REDIS_URL to a running one")
        client = sys.modules.get("clicksmith.labelstudio.client")
        if client is not None and isinstance(exc, client.LabelStudioError):
            return (f"{text}. Fix: check that Label Studio runs at LABEL_STUDIO_URL and "
                    "accepts LABEL_STUDIO_API_KEY")
        if _label_studio_down(exc):
            url = redact(_setting("label_studio_url"))
            return (f"cannot reach Label Studio at {url} (LABEL_STUDIO_URL): {text}. Fix: "
                    "start Label Studio there, or set LABEL_STUDIO_URL to where it runs")
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
