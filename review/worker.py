"""`clicksmith worker`: an RQ worker for pre-label, corrections and retrain jobs.

Default is RQ's SimpleWorker (jobs run in the worker process): the predictor is loaded once
and reused by every job, and torch/onnxruntime are never used across a fork. Job timeouts still
apply (SIGALRM). A worker that dies mid-job loses nothing: RQ's registry maintenance finds the
abandoned job once its heartbeat expires and retries it (see review.prelabel for why the retry
writes no duplicates). `--fork` runs each job in a forked work-horse instead.
"""

from __future__ import annotations

import argparse
import sys

from clicksmith.settings import load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", action="append", default=None,
                        help="queue name(s) to serve (default: QUEUE_NAME)")
    parser.add_argument("--burst", action="store_true",
                        help="exit when the queue is empty instead of waiting for more jobs")
    parser.add_argument("--fork", action="store_true",
                        help="run each job in a forked work-horse (the model loads per job)")
    parser.add_argument("--name", default=None, help="worker name (default: RQ's)")
    parser.add_argument("--preload", action="store_true",
                        help="load the model before taking the first job")
    parser.add_argument("--maintenance-interval", type=int, default=60,
                        help="seconds between RQ registry clean-ups (abandoned-job recovery)")


def run(args: argparse.Namespace) -> int:
    from rq import SimpleWorker, Worker

    from clicksmith import queue

    try:
        settings = load_settings()
        conn = queue.redis_conn(settings)
    except (ValueError, queue.QueueUnavailable) as exc:
        print(f"clicksmith worker: {exc}", file=sys.stderr)
        return 2
    names = args.queue or [settings.queue_name]
    queues = [queue.job_queue(settings, conn, name) for name in names]
    if args.preload:
        from clicksmith.models import process_model

        print(f"model {process_model(settings).model_version} loaded", flush=True)
    cls = Worker if args.fork else SimpleWorker
    worker = cls(queues, connection=conn, name=args.name,
                 maintenance_interval=args.maintenance_interval)
    worker.work(burst=args.burst, with_scheduler=True)
    return 0
