"""The job queue: one Redis connection helper, one RQ queue, one retry policy, for the HTTP
backend, the CLI and the workers.

Why enqueue by dotted name: the backend must answer Label Studio within one second and must not
import the review/training code (nor its dependencies) to do so; RQ resolves the function in
the worker.
Why retries with back-off (5 s, 30 s, then 120 s for every later retry): a job fails for a
transient reason when Label Studio restarts, Redis or the network blips, or a worker is killed;
immediate retries (what the backend used to enqueue) would all land inside the same outage and
be spent in a second. The back-off needs the RQ scheduler, which `clicksmith worker` runs.
Why only transient failures are retried (`is_transient`, applied by `clicksmith worker`): a
job whose input is at fault (a malformed webhook payload, a task whose image is refused or
missing) fails the same way every time; retrying it three times only delays its failure by
2.5 minutes and hides the reason among retries. Such a job fails once, with the reason.
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

from clicksmith.labelstudio.client import TRANSIENT_STATUSES
from clicksmith.settings import Settings

CORRECTIONS_JOB = "review.corrections.handle_event"
RETRAIN_JOB = "review.retrain.retrain_job"
BACKOFF_S = (5, 30, 120)  # the last interval repeats for later retries
# jobs run once, with their own timeout setting (see above)
_UNRETRIED = {RETRAIN_JOB: "retrain_timeout_seconds"}


class QueueUnavailable(RuntimeError):
    """REDIS_URL is unset or Redis cannot be reached."""


class PermanentJobError(ValueError):
    """The job's input is at fault (a malformed payload, a task whose image cannot be had for a
    permanent reason): running it again cannot help, so the job fails once, with this message."""


# what a job raises when its input is at fault (a bad payload, a task that cannot be read)
_PERMANENT_TYPES = (ValueError, TypeError, LookupError, AttributeError)


def is_transient(exc: BaseException) -> bool:
    """Whether a job that raised `exc` may succeed when run again later (RQ retries it with
    back-off) or not (it fails once, with the reason).

    Transient: anything that says so (LabelStudioError.transient: connection trouble,
    timeouts, 5xx, 429), Label Studio API errors with those statuses or without a response,
    network and Redis errors, timeouts, and any error of an unknown kind (a retry is bounded).
    Permanent: PermanentJobError, a LabelStudioError that is not transient, Label Studio API
    errors with any other 4xx (404: the task is gone, 401/403: the key), and the errors of a
    malformed input (ValueError, TypeError, KeyError/IndexError, AttributeError)."""
    flag = getattr(exc, "transient", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(exc, PermanentJobError):
        return False
    status = getattr(exc, "status_code", None)  # label_studio_sdk's ApiError
    if status is None:
        response = getattr(exc, "response", None)  # httpx.HTTPStatusError
        status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_STATUSES or status >= 500
    if isinstance(exc, (OSError, TimeoutError)):  # ConnectionError, socket errors
        return True
    return not isinstance(exc, _PERMANENT_TYPES)


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


def ping(settings: Settings, timeout: float = 0.25,
         what: str = "job queue (Redis)") -> str | None:
    """None when the queue's Redis answers PING within `timeout` seconds, else why not, naming
    it `what`: for /health and the start-up checks, which must answer quickly."""
    import redis

    try:
        conn = redis_conn(settings, timeout)
    except QueueUnavailable as exc:
        return str(exc)
    try:
        conn.ping()
    except redis.RedisError as exc:
        return f"{what} unreachable: {exc}"
    finally:
        conn.close()
    return None


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
