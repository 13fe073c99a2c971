"""`clicksmith retrain`: fine-tune on collected corrections, promote only if not worse.

Runs in this process by default (prints the run record); `--enqueue` hands it to the workers.
"""

from __future__ import annotations

import argparse
import sys

from clicksmith.settings import load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", type=int, default=None,
                        help="use this project's corrections only (default: every project)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="fine-tuning iterations (default: RETRAIN_ITERATIONS)")
    parser.add_argument("--enqueue", action="store_true",
                        help="run it on an RQ worker; print the job id for `clicksmith status`")
    parser.add_argument("--json", action="store_true", help="print the full run record")


def run(args: argparse.Namespace) -> int:
    from clicksmith.queue import JobQueue
    from review.retrain import RetrainError, record_json, retrain_job, summary_line

    settings = load_settings()
    if args.iterations is not None and args.iterations < 1:
        print("clicksmith retrain: --iterations must be >= 1", file=sys.stderr)
        return 2
    if args.enqueue:  # no Redis: QueueUnavailable, told by clicksmith.cli with its fix
        # timeout RETRAIN_TIMEOUT_SECONDS, no retry: clicksmith.queue says why
        job_id = JobQueue(settings).enqueue(
            retrain_job, args.project, args.iterations,
            description=f"retrain (project {args.project or 'all'})")
        print(f"job {job_id}: follow it with: clicksmith status {job_id}")
        return 0
    try:
        record = retrain_job(args.project, args.iterations)
    except (RetrainError, ValueError) as exc:
        print(f"clicksmith retrain: {exc}", file=sys.stderr)
        return 2
    print(record_json(record) if args.json else summary_line(record))
    return 0 if record["status"] == "promoted" else 1
