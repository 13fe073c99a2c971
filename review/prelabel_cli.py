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
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between progress lines")


def run(args: argparse.Namespace) -> int:
    from label_studio_sdk.core.api_error import ApiError

    from clicksmith import queue
    from clicksmith.labelstudio.client import LabelStudioError, describe_error
    from clicksmith.models import ModelUnavailable, process_model
    from review import jobs
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
    from review.status_cli import format_line

    conn = queue.redis_conn(settings)
    while True:
        progress = jobs.run_progress(conn, run_id)
        print(format_line(progress.as_dict()), flush=True)
        if progress.finished:
            return 0 if progress.job_states.get("failed", 0) == 0 else 1
        time.sleep(args.poll)
