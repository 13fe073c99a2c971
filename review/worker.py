"""`clicksmith worker`: an RQ worker for pre-label, corrections and retrain jobs.

Default is RQ's SimpleWorker (jobs run in the worker process): the predictor is loaded once
and reused by every job, and torch/onnxruntime are never used across a fork. Job timeouts still
apply (SIGALRM). `--fork` runs each job in a forked work-horse instead.

Recovery when a worker dies mid-job (SIGKILL, OOM, a machine lost): the job is back in the
queue within a minute, not half an hour later. Why RQ alone took that long: a SimpleWorker
sets its job's heartbeat once, to the job timeout + 60 s (31 minutes with the default
JOB_TIMEOUT_SECONDS), and never renews it, since no monitor runs beside the job; the abandoned
job stays "started" until that expires, and an idle worker blocks in its dequeue for
worker_ttl - 15 s (405 s) between registry clean-ups. So here:
- the job's heartbeat is short (`--heartbeat-ttl`, 30 s) and renewed every 5 s while the job
  runs, by a keeper thread (SimpleWorker) or by the horse's monitor loop (`--fork`);
- every worker, idle or busy, sweeps the queue's registries every `--maintenance-interval`
  (10 s): the keeper thread does it (beside a running job too, so one long retrain does not
  stop the recovery of other workers' jobs); the worker's own TTL is short too (its dequeue
  blocks for 15 s, not 405 s);
- an abandoned job is put back at once (one of its retries), not after the back-off: a killed
  worker says nothing about Label Studio or the network, and a scheduled retry would wait for
  RQ's scheduler, whose lock the dead worker may have held for another 61 s.
A killed worker's job is thus requeued 30-40 s after the kill. The jobs make a rerun harmless
(see review.prelabel and review.corrections). The cost: a worker stalled for 30 s (no beat
reached Redis) may see its job run a second time elsewhere; both jobs are idempotent.

RQ's scheduler (it moves retries whose back-off is over back into the queue) runs in a spawned
process, not RQ's forked one: the worker has threads by then (the keeper, RQ's pub/sub, torch's
and onnxruntime's pools), and a child forked while one of them held a lock (a Redis connection
pool's, stdout's) can hang on it for ever; the worker then hangs too, joining it at exit.

Failures: a job is retried (with back-off, clicksmith.queue.BACKOFF_S) only for a transient
error (clicksmith.queue.is_transient); a job whose input is at fault fails once, with its reason.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import threading
import time

from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.logutils import setup_loghandlers
from rq.scheduler import RQScheduler
from rq.scheduler import run as run_scheduler

from clicksmith.settings import load_settings

log = logging.getLogger(__name__)

BEAT_S = 5  # how often a running job's heartbeat is renewed
HEARTBEAT_TTL_S = 30  # a job whose heartbeat is this old is abandoned (its worker is dead)
MAINTENANCE_INTERVAL_S = 10  # how often every worker looks for abandoned jobs
SWEEP_LOCK_S = 30  # the sweep lock of a worker killed while sweeping lapses this fast


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
    parser.add_argument("--maintenance-interval", type=int, default=MAINTENANCE_INTERVAL_S,
                        help="seconds between sweeps for abandoned jobs (and RQ's clean-ups)")
    parser.add_argument("--heartbeat-ttl", type=int, default=HEARTBEAT_TTL_S,
                        help="seconds without a heartbeat after which a running job counts as "
                             f"abandoned and is requeued (>= {3 * BEAT_S})")


def _permanent_fails_once(job, exc_type, exc_value, traceback) -> bool:
    """RQ exception handler: a job whose error is not transient gets no retry (it fails now)."""
    from clicksmith import queue

    if exc_value is not None and job.retries_left and not queue.is_transient(exc_value):
        log.warning("job %s: %s: %s (not retried: the job's input is at fault)", job.id,
                    exc_type.__name__, exc_value)
        job.retries_left = 0
    return True  # let the other handlers run


def requeue_abandoned(queue, exception_handlers=None, timestamp: float | None = None) -> None:
    """Jobs of `queue` whose heartbeat expired before `timestamp` (now): back in the queue at
    once if they have retries left (one is used), else failed (RQ's AbandonedJobError)."""
    from rq.job import Job
    from rq.registry import StartedJobRegistry

    class RequeueAtOnce(Job):
        def get_retry_interval(self) -> int:  # RQ schedules a retry unless this is 0
            return 0

    StartedJobRegistry(queue.name, connection=queue.connection, job_class=RequeueAtOnce,
                       serializer=queue.serializer).cleanup(timestamp, exception_handlers)


class SpawnedScheduler(RQScheduler):
    """RQ's scheduler, started in a fresh interpreter (see the module docstring for why)."""

    def __init__(self, *args, logging_level: str | int = "INFO",
                 date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
                 log_format: str = DEFAULT_LOGGING_FORMAT, **kwargs) -> None:
        super().__init__(*args, logging_level=logging_level, date_format=date_format,
                         log_format=log_format, **kwargs)
        self._log_setup = {"level": logging_level, "date_format": date_format,
                           "log_format": log_format}

    def __getstate__(self) -> dict:
        # the parent's process handle and Redis connection do not cross into the child
        return {**self.__dict__, "_process": None, "_connection": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        setup_loghandlers(name="rq.scheduler", **self._log_setup)  # a fresh interpreter's logs

    def start(self):
        self._status = self.Status.STARTED
        self._connection = None
        self._process = multiprocessing.get_context("spawn").Process(
            target=run_scheduler, args=(self,), name="Scheduler")
        self._process.start()
        return self._process


def worker_class(fork: bool):
    """The worker class: RQ's SimpleWorker (or forking Worker) with the recovery above."""
    from rq import SimpleWorker, Worker, worker_registration
    from rq.registry import clean_registries
    from rq.utils import now

    class Recovering:
        heartbeat_ttl = HEARTBEAT_TTL_S

        def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
            return self.heartbeat_ttl

        def sweep(self) -> None:
            """Requeue abandoned jobs and clean RQ's registries, one worker at a time."""
            for q in self.queues:
                # RQ's own lock key, with a short expiry (RQ's: 15 minutes, which a worker
                # killed while holding it would impose on every other worker)
                if not q.connection.set(q.registry_cleaning_key, 1, nx=True, ex=SWEEP_LOCK_S):
                    continue
                try:
                    requeue_abandoned(q, self._exc_handlers)
                    clean_registries(q, self._exc_handlers)
                    worker_registration.clean_worker_registry(q)
                finally:
                    q.release_maintenance_lock()

        def clean_registries(self) -> None:  # RQ's maintenance, between jobs
            self.sweep()
            for q in self.queues:
                q.intermediate_queue.cleanup(self, q)
            self.last_cleaned_at = now()

        def _start_scheduler(self, burst: bool = False, logging_level: str | int = "INFO",
                             date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
                             log_format: str = DEFAULT_LOGGING_FORMAT) -> None:
            """RQ's own, with SpawnedScheduler in place of RQScheduler (RQ offers no hook)."""
            self.scheduler = SpawnedScheduler(
                self.queues, connection=self.connection, serializer=self.serializer,
                logging_level=logging_level or "INFO", date_format=date_format,
                log_format=log_format)
            self.scheduler.acquire_locks()
            if not self.scheduler.acquired_locks:
                return
            if burst:  # due jobs are moved once, here; no process
                try:
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
            else:
                self.scheduler.start()

        def run_maintenance_tasks(self) -> None:
            import redis

            try:
                super().run_maintenance_tasks()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # RQ would let this end the worker; Redis being away is no reason to quit
                self.log.warning("maintenance skipped, Redis unavailable: %s", exc)
                self.last_cleaned_at = now()

    class RecoveringSimpleWorker(Recovering, SimpleWorker):
        """Beats and sweeps from a keeper thread while a job runs in the main thread."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._running = None  # (job, execution) while one runs
            self._beat_lock = threading.Lock()
            self._keeper_stop = threading.Event()

        def prepare_execution(self, job):
            execution = super().prepare_execution(job)
            with self._beat_lock:
                self._running = (job, execution)
            return execution

        def handle_execution_ended(self, job, queue, heartbeat_ttl):
            with self._beat_lock:  # no beat may land once RQ starts finishing the job
                self._running = None
            return super().handle_execution_ended(job, queue, heartbeat_ttl)

        def execute_job(self, job, queue):
            try:
                return super().execute_job(job, queue)
            finally:
                with self._beat_lock:
                    self._running = None

        def work(self, *args, **kwargs):
            keeper = threading.Thread(target=self._keep, name="clicksmith-keeper", daemon=True)
            keeper.start()
            try:
                return super().work(*args, **kwargs)
            finally:
                self._keeper_stop.set()
                keeper.join(BEAT_S + 5)

        def _keep(self) -> None:
            next_sweep = time.monotonic() + self.maintenance_interval
            while not self._keeper_stop.wait(BEAT_S):
                try:
                    with self._beat_lock:
                        if self._running is not None:
                            self.maintain_heartbeats(*self._running)
                    if time.monotonic() >= next_sweep:
                        next_sweep = time.monotonic() + self.maintenance_interval
                        self.sweep()
                except Exception as exc:  # Redis away, ...: try again at the next beat
                    self.log.warning("heartbeat/sweep failed: %s", exc)

    class RecoveringForkWorker(Recovering, Worker):
        """The horse's monitor beats every BEAT_S; it sweeps too, between beats."""

        _next_sweep = 0.0

        def maintain_heartbeats(self, job, execution) -> None:
            super().maintain_heartbeats(job, execution)
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self.maintenance_interval
                try:
                    self.sweep()
                except Exception as exc:
                    self.log.warning("sweep failed: %s", exc)

    return RecoveringForkWorker if fork else RecoveringSimpleWorker


def make_worker(queues, conn, *, fork: bool = False, name: str | None = None,
                maintenance_interval: int = MAINTENANCE_INTERVAL_S,
                heartbeat_ttl: int = HEARTBEAT_TTL_S):
    cls = worker_class(fork)
    worker = cls(queues, connection=conn, name=name, maintenance_interval=maintenance_interval,
                 worker_ttl=heartbeat_ttl, job_monitoring_interval=BEAT_S,
                 exception_handlers=[_permanent_fails_once])
    worker.heartbeat_ttl = heartbeat_ttl
    return worker


def run(args: argparse.Namespace) -> int:
    from clicksmith import queue

    if args.heartbeat_ttl < 3 * BEAT_S or args.maintenance_interval < 1:
        print(f"clicksmith worker: --heartbeat-ttl must be >= {3 * BEAT_S} and "
              "--maintenance-interval >= 1", file=sys.stderr)
        return 2
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
    worker = make_worker(queues, conn, fork=args.fork, name=args.name,
                         maintenance_interval=args.maintenance_interval,
                         heartbeat_ttl=args.heartbeat_ttl)
    worker.work(burst=args.burst, with_scheduler=True)
    return 0
