"""`clicksmith prelabel --project N`: enqueue pre-label jobs for a project (and follow them)."""

from __future__ import annotations

import argparse
import sys
import time

from clicksmith.settings import load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", type=int, required=True, help="Label Studio project id")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="tasks per job (default: PRELABEL_BATCH_SIZE)")
    parser.add_argument("--wait", action="store_true",
                        help="follow progress until every job has finished")
    parser.add_argument("--poll", type=float, default=2.0,
                        help="seconds between progress checks (a line is printed on a change)")


def run(args: argparse.Namespace) -> int:
    from label_studio_sdk.core.api_error import ApiError

    from clicksmith import queue
    from clicksmith.labelstudio.client import LabelStudioError, describe_error
    from clicksmith.models import ModelUnavailable, process_model
    from review.prelabel import plan

    settings = load_settings()
    batch = settings.prelabel_batch_size if args.batch_size is None else args.batch_size
    try:
        if batch < 1:
            raise ValueError(f"batch size must be >= 1, got {batch}")
        version = process_model(settings).model_version
        run_id, job_ids, total = plan(settings, args.project, batch, model_version=version)
    except (ValueError, ApiError, ModelUnavailable, LabelStudioError,
            queue.QueueUnavailable) as exc:
        print(f"clicksmith prelabel: {describe_error(exc)}", file=sys.stderr)
        return 2
    print(f"run {run_id}: {total} task(s) to pre-label with {version} in {len(job_ids)} job(s)")
    print(f"follow it with: clicksmith status {run_id}")
    if not args.wait:
        return 0
    return follow(queue.redis_conn(settings), run_id, args.poll)


MAX_LISTED = 50  # failures listed one per line (all of them: `clicksmith status RUN --json`)


def follow(conn, run_id: str, poll: float, out=None) -> int:
    """Print the run's progress whenever it changes, until every job has ended; then the
    failures (task: reason) and a last line "run ...: done with N failure(s)".
    Exit status 0 without failures, 1 with some."""
    from review import jobs
    from review.status_cli import format_line

    out = out or sys.stdout
    shown = None
    while True:
        progress = jobs.run_progress(conn, run_id)
        if progress is None:
            print(f"clicksmith prelabel: run {run_id} is gone from Redis", file=sys.stderr)
            return 2
        state = (progress.done, progress.total, len(progress.failures),
                 sorted(progress.job_states.items()))
        if state != shown:
            print(format_line(progress.as_dict()), file=out, flush=True)
            shown = state
        if progress.finished:
            break
        time.sleep(poll)
    failures = progress.failures
    for failure in failures[:MAX_LISTED]:
        print(f"  {failure.describe()}", file=out)
    if len(failures) > MAX_LISTED:
        print(f"  ... and {len(failures) - MAX_LISTED} more (clicksmith status {run_id} --json)",
              file=out)
    n = len(failures)
    which = ", ".join(f"task {f.task}" if f.task is not None else f"job {f.job}"
                      for f in failures[:10]) + (", ..." if n > 10 else "")
    print(f"run {run_id}: done with {n} failure{'' if n == 1 else 's'}"
          + (f": {which}" if n else ""), file=out, flush=True)
    return 0 if n == 0 else 1
