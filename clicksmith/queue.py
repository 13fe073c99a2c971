"""The job queue: one Redis connection helper, one RQ queue, one retry policy, for the HTTP
backend, the CLI and the workers.

Why enqueue by dotted name: the backend must answer Label Studio within one second and must not
import the review/training code (nor its dependencies) to do so; RQ resolves the function in
the worker.
Why retries with back-off (5 s, 30 s, then 120 s for every later retry): a job fails for a
transient reason when Label Studio restarts, Redis or the network blips, or a worker is killed;
immediate retries (what the backend used to enqueue) would all land inside the same outage and
be spent in a second. The back-off needs the RQ scheduler, which `clicksmith worker` runs.
Why a retrain is not retried (and gets RETRAIN_TIMEOUT_SECONDS): it fine-tunes for hours, and
it fails for reasons a rerun does not fix (no corrections, a worse model, a bad dataset path);
a person reads the failure and starts it again. The backend used to retry it like any job and
cut it at JOB_TIMEOUT_SECONDS; `clicksmith retrain --enqueue` did not.
Why QueueUnavailable rather than redis errors: callers answer "no queue" in their own terms
(the backend: 503 with the reason; the CLI: exit status 2), without importing redis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clicksmith.settings import Settings

CORRECTIONS_JOB = "review.corrections.handle_event"
RETRAIN_JOB = "review.retrain.retrain_job"
BACKOFF_S = (5, 30, 120)  # the last interval repeats for later retries
# jobs run once, with their own timeout setting (see above)
_UNRETRIED = {RETRAIN_JOB: "retrain_timeout_seconds"}


class QueueUnavailable(RuntimeError):
    """REDIS_URL is unset or Redis cannot be reached."""


def redis_conn(settings: Settings, timeout: float | None = None):
    """A Redis connection for REDIS_URL; QueueUnavailable when it is unset.

    `timeout` bounds connecting and every command: the backend passes a short one so that a
    down Redis is a quick 503, not a hung request. Workers pass none: their blocking dequeue
    waits on the socket for minutes."""
    if not settings.redis_url:
        raise QueueUnavailable("REDIS_URL is not set: jobs need a Redis shared by the workers")
    from redis import Redis

    return Redis.from_url(settings.redis_url, socket_timeout=timeout,
                          socket_connect_timeout=timeout)


def job_queue(settings: Settings, conn=None, name: str | None = None):
    """The RQ queue QUEUE_NAME (or `name`), with JOB_TIMEOUT_SECONDS as its default timeout."""
    from rq import Queue

    return Queue(name or settings.queue_name, connection=conn or redis_conn(settings),
                 default_timeout=settings.job_timeout_seconds)


def job_name(func: str | Callable) -> str:
    return func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"


def retry_policy(settings: Settings, func: str | Callable | None = None):
    """RQ retries for a job: JOB_RETRIES times with back-off; None for unretried jobs."""
    from rq import Retry

    if settings.job_retries <= 0 or (func is not None and job_name(func) in _UNRETRIED):
        return None
    # one interval per retry: RQ picks intervals[len(intervals) - retries_left], so a shorter
    # list would repeat its first value, and a longer one skip its first values
    last = len(BACKOFF_S) - 1
    return Retry(max=settings.job_retries,
                 interval=[BACKOFF_S[min(i, last)] for i in range(settings.job_retries)])


def job_options(settings: Settings, func: str | Callable) -> dict[str, Any]:
    """The `job_timeout` and `retry` every enqueue of `func` uses."""
    timeout_setting = _UNRETRIED.get(job_name(func), "job_timeout_seconds")
    return {"job_timeout": getattr(settings, timeout_setting),
            "retry": retry_policy(settings, func)}


class JobQueue:
    """A lazily connected queue for enqueueing by name; `enabled` is False when REDIS_URL is
    unset. Connects on first use, with a short timeout (`timeout`, seconds)."""

    def __init__(self, settings: Settings, timeout: float = 2.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._queue: Any = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.redis_url)

    @property
    def queue(self):
        if self._queue is None:
            self._queue = job_queue(self.settings, redis_conn(self.settings, self.timeout))
        return self._queue

    def enqueue(self, func: str | Callable, *args: Any, **options: Any) -> str:
        """Queue `func(*args)` with its timeout and retries (job_options; `options` may add
        RQ's meta, description, ... or override them); the job id. QueueUnavailable when
        Redis cannot take it."""
        import redis

        try:
            job = self.queue.enqueue(job_name(func), *args,
                                     **{**job_options(self.settings, func), **options})
        except redis.RedisError as exc:
            raise QueueUnavailable(f"job queue (Redis) unavailable: {exc}") from None
        return str(job.id)
