"""The job queue on the real Redis at 127.0.0.1:6379 (database 12, a fresh queue per test):
enqueue by dotted name, the retry policy with back-off as RQ applies it, Redis unavailable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from clicksmith import queue
from clicksmith.settings import load_settings

REDIS_URL = "redis://127.0.0.1:6379/12"
CALLS: list[tuple] = []


def add(a: int, b: int) -> int:  # run by the worker, by name
    CALLS.append((a, b))
    return a + b


def always_fails(reason: str) -> None:
    raise ConnectionError(reason)


@pytest.fixture
def settings():
    from redis import Redis

    conn = Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except Exception as exc:
        pytest.fail(f"the real Redis at 127.0.0.1:6379 is needed: {exc}")
    s = load_settings(env={}, redis_url=REDIS_URL, queue_name=f"adapter-{uuid.uuid4().hex[:8]}",
                      job_retries=4)
    yield s
    q = queue.job_queue(s, conn)
    for registry in (q.scheduled_job_registry, q.failed_job_registry,
                     q.finished_job_registry):
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)
    q.delete(delete_jobs=True)
    conn.close()


def work(s) -> None:
    """Run the queue's jobs in this process until it is empty (RQ's SimpleWorker, burst)."""
    from rq import SimpleWorker

    q = queue.job_queue(s, queue.redis_conn(s))
    SimpleWorker([q], connection=q.connection).work(burst=True)


def test_enqueue_by_dotted_name(settings):
    jobs = queue.JobQueue(settings)
    assert jobs.enabled
    job_id = jobs.enqueue("tests.adapter.test_queue.add", 2, 3)
    q = queue.job_queue(settings)
    (job,) = q.get_jobs()
    assert job.id == job_id and job.func_name == "tests.adapter.test_queue.add"
    assert job.timeout == settings.job_timeout_seconds and job.retries_left == 4
    CALLS.clear()
    work(settings)
    assert CALLS == [(2, 3)]
    assert job.latest_result().return_value == 5


def test_retries_back_off_on_a_real_queue(settings):
    from rq.job import Job, JobStatus

    job_id = queue.JobQueue(settings).enqueue(always_fails, "Label Studio restarting")
    q = queue.job_queue(settings)
    expected = [5, 30, 120, 120]  # the last interval repeats
    for retries_left, delay in zip((3, 2, 1, 0), expected, strict=True):
        before = datetime.now(UTC)
        work(settings)
        job = Job.fetch(job_id, connection=q.connection)
        assert job.retries_left == retries_left
        assert job.get_status() == JobStatus.SCHEDULED
        due = q.scheduled_job_registry.get_scheduled_time(job)
        assert abs((due - before).total_seconds() - delay) < 3, (due, before, delay)
        # play the scheduler: the retry is due now
        q.scheduled_job_registry.remove(job)
        q.enqueue_job(job)
    work(settings)
    job = Job.fetch(job_id, connection=q.connection)
    assert job.get_status() == JobStatus.FAILED
    assert "Label Studio restarting" in job.latest_result().exc_string


def test_the_retry_policy(settings):
    policy = queue.retry_policy(settings)
    assert policy.max == 4 and policy.intervals == [5, 30, 120, 120]
    policy = queue.retry_policy(load_settings(env={}, job_retries=2))
    assert policy.max == 2 and policy.intervals == [5, 30]
    assert queue.retry_policy(load_settings(env={}, job_retries=0)) is None
    # a retrain runs once, with its own timeout
    options = queue.job_options(settings, queue.RETRAIN_JOB)
    assert options == {"job_timeout": settings.retrain_timeout_seconds, "retry": None}
    corrections = queue.job_options(settings, queue.CORRECTIONS_JOB)
    assert corrections["job_timeout"] == settings.job_timeout_seconds
    assert corrections["retry"].max == 4
    # a function is known by its dotted name
    assert queue.job_name(add) == "tests.adapter.test_queue.add"


def test_a_retrain_is_enqueued_once_with_its_timeout(settings):
    queue.JobQueue(settings).enqueue(queue.RETRAIN_JOB, 7)
    (job,) = queue.job_queue(settings).get_jobs()
    assert job.func_name == queue.RETRAIN_JOB and job.args == (7,)
    assert job.timeout == settings.retrain_timeout_seconds and not job.retries_left


def test_redis_unset_or_down_is_queue_unavailable():
    unset = load_settings(env={})
    assert not queue.JobQueue(unset).enabled
    with pytest.raises(queue.QueueUnavailable, match="REDIS_URL"):
        queue.redis_conn(unset)
    down = load_settings(env={}, redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(queue.QueueUnavailable, match="Redis"):
        queue.JobQueue(down).enqueue("tests.adapter.test_queue.add", 1, 2)
