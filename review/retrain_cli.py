"""`clicksmith retrain`: fine-tune on collected corrections, promote only if better.

Runs in this process by default: progress on stderr (fine-tuning iterations with an ETA, then
the evaluation, object by object), the outcome on stdout. Ctrl-C or SIGTERM stops it cleanly:
the work folder and the lock are removed and the run is recorded as "interrupted".
`--enqueue` hands it to the workers (follow it with `clicksmith status <job>`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from clicksmith.settings import load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", type=int, default=None,
                        help="use this project's corrections only (default: every project)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="fine-tuning iterations (default: RETRAIN_ITERATIONS)")
    parser.add_argument("--enqueue", action="store_true",
                        help="run it on an RQ worker; print the job id for `clicksmith status`")
    parser.add_argument("--json", action="store_true", help="print the full run record")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


class ProgressPrinter:
    """A line on stderr at each change of phase and every `every` seconds within one."""

    def __init__(self, every: float = 10.0, stream=None):
        self.every, self.stream = every, stream or sys.stderr
        self._last, self._key = 0.0, None

    def __call__(self, p: dict) -> None:
        from review.retrain import describe_progress

        key = (p.get("phase"), p.get("set"), p.get("model"))
        now = time.monotonic()
        last_step = (p.get("phase") == "finetune" and p.get("iteration") == p.get("iterations"))
        if key == self._key and now - self._last < self.every and not last_step:
            return
        self._key, self._last = key, now
        print(f"clicksmith retrain: {describe_progress(p)}", file=self.stream, flush=True)


def _stop_on_sigterm() -> None:
    """SIGTERM (kill, a container stop) unwinds like Ctrl-C, so the run cleans up after
    itself instead of leaving its lock and work folder behind."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


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
    _stop_on_sigterm()
    try:
        record = retrain_job(args.project, args.iterations,
                             progress=None if args.quiet else ProgressPrinter())
    except (RetrainError, ValueError) as exc:
        print(f"clicksmith retrain: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clicksmith retrain: interrupted; the run is recorded as interrupted, its work "
              "folder and the lock are removed, the serving model is unchanged",
              file=sys.stderr)
        return 130
    print(record_json(record) if args.json else summary_line(record))
    return 0 if record["status"] == "promoted" else 1
