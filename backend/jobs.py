"""Hand webhook work to the RQ queue; the review package's workers run it.

Why by dotted name: the backend must answer Label Studio within one second and must not import
the review/training code (nor its dependencies) to do so; RQ resolves the function in the worker.
"""

from __future__ import annotations

from typing import Any

from backend.errors import ApiError
from clicksmith.settings import Settings

CORRECTIONS_JOB = "review.corrections.handle_event"
RETRAIN_JOB = "review.retrain.retrain_job"


class JobQueue:
    """A lazily connected RQ queue; `enabled` is False when REDIS_URL is unset."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: Any = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.redis_url)

    def _get(self) -> Any:
        if self._queue is None:
            import redis
            from rq import Queue

            connection = redis.Redis.from_url(
                self.settings.redis_url, socket_timeout=2, socket_connect_timeout=2
            )
            self._queue = Queue(self.settings.queue_name, connection=connection)
        return self._queue

    def enqueue(self, func: str, *args: Any) -> str:
        """Queue `func(*args)` with the configured timeout and retries; the job id."""
        import redis
        from rq import Retry

        retries = self.settings.job_retries
        try:
            job = self._get().enqueue(
                func,
                *args,
                job_timeout=self.settings.job_timeout_seconds,
                retry=Retry(max=retries) if retries > 0 else None,
            )
        except redis.RedisError as exc:
            raise ApiError(503, f"job queue (Redis) unavailable: {exc}") from None
        return str(job.id)
