"""Recovery and retries through real `clicksmith worker` processes and the real Redis:
a killed worker's job is back within a minute, a job whose input is at fault fails once with
its reason, a transient failure is retried with back-off."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.review.conftest import wait_until

RECOVERY_S = 60  # the promise: a killed worker's job is requeued (and here: done) within it


# --- jobs run by the worker subprocesses (resolved by RQ from this module's dotted name) -------
def slow_once(marker: str) -> str:
    """Records each run (the worker's pid); the first run hangs until its worker is killed."""
    path = Path(marker)
    with path.open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    if len(path.read_text().split()) == 1:
        time.sleep(600)
    return "done"


def fails_with(marker: str, kind: str) -> None:
    """Records each run, then raises a transient or a permanent error."""
    from clicksmith.labelstudio.client import LabelStudioError

    with Path(marker).open("a") as fh:
        fh.write(f"{time.time()}\n")
    if kind == "transient":
        raise LabelStudioError("could not fetch image http://x/a.png: HTTP 503", status=502,
                               transient=True)
    raise LabelStudioError("image 'http://x/a.png': no such file")


def _queue(env):
    from redis import Redis
    from rq import Queue

    return Queue(env["QUEUE_NAME"], connection=Redis.from_url(env["REDIS_URL"]))


def _enqueue(env, func, *args) -> str:
    from clicksmith.queue import JobQueue
    from clicksmith.settings import load_settings

    return JobQueue(load_settings()).enqueue(func, *args)


def _runs(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def _status(env, job_id: str) -> str:
    from rq.job import Job

    job = Job.fetch(job_id, connection=_queue(env).connection)
    return str(job.get_status().value)


def test_killed_workers_job_is_requeued_within_a_minute(env, workers, tmp_path):
    """SIGKILL the worker running a job while another worker idles: no clock is moved, nothing
    is cleaned by hand; the job must be done by the survivor within RECOVERY_S."""
    marker = tmp_path / "runs.txt"
    procs = {p.pid: p for p in (workers.start(burst=False), workers.start(burst=False))}
    job_id = _enqueue(env, slow_once, str(marker))
    wait_until(lambda: len(_runs(marker)) == 1, 120, what="the job to start")
    (pid,) = map(int, _runs(marker))
    workers.kill(procs[pid])
    killed_at = time.time()

    wait_until(lambda: _status(env, job_id) == "finished", RECOVERY_S + 30, step=0.5,
               what="the survivor to finish the abandoned job")
    took = time.time() - killed_at
    assert took < RECOVERY_S, f"the abandoned job was done {took:.0f} s after the kill"
    runs = _runs(marker)
    assert len(runs) == 2 and int(runs[1]) != pid  # run again, once, by the other worker
    from rq.job import Job

    job = Job.fetch(job_id, connection=_queue(env).connection)
    assert job.return_value() == "done"
    assert job.retries_left == int(env["JOB_RETRIES"]) - 1  # the requeue used one retry


def test_permanent_error_fails_once_with_its_reason(env, workers, tmp_path):
    marker = tmp_path / "runs.txt"
    job_id = _enqueue(env, fails_with, str(marker), "permanent")
    workers.wait(workers.start(burst=True), timeout=120)
    assert _status(env, job_id) == "failed"
    assert len(_runs(marker)) == 1  # JOB_RETRIES=2, yet not retried
    from review.status_cli import describe

    info = describe(_queue(env).connection, job_id)
    assert "no such file" in info["error"][0]


def test_malformed_webhook_payload_fails_once(env, workers):
    """A corrections job whose payload is malformed fails at once, with the reason."""
    from clicksmith.queue import CORRECTIONS_JOB
    from review.status_cli import describe

    job_id = _enqueue(env, CORRECTIONS_JOB, {"action": "ANNOTATION_CREATED",
                                             "annotation": {"result": []}, "project": 3})
    started = time.time()
    workers.wait(workers.start(burst=True), timeout=120)
    assert _status(env, job_id) == "failed"
    assert time.time() - started < 60  # no back-off waited (5 + 30 s for JOB_RETRIES=2)
    info = describe(_queue(env).connection, job_id)
    assert "annotation" in info["error"][0]


def _children_cmdlines(pid: int) -> list[str]:
    """The command lines of a process's children (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue  # a process that ended meanwhile
    return found


def test_transient_error_is_retried_with_back_off(env, workers, tmp_path):
    """The retries are moved back into the queue by the worker's scheduler, which is a spawned
    interpreter, not a fork of the worker (a fork of a process with threads can hang)."""
    marker = tmp_path / "runs.txt"
    job_id = _enqueue(env, fails_with, str(marker), "transient")
    worker = workers.start(burst=False)
    def scheduler_started():  # multiprocessing's resource tracker is a child too
        return [c for c in _children_cmdlines(worker.pid) if "resource_tracker" not in c]

    wait_until(scheduler_started, 60, what="the scheduler process")
    children = _children_cmdlines(worker.pid)
    assert any("spawn_main" in c for c in children), children
    assert not any("clicksmith.cli worker" in c for c in children), children  # no fork
    # JOB_RETRIES=2: three runs, 5 s then 30 s apart (the scheduler of the worker moves them)
    wait_until(lambda: _status(env, job_id) == "failed", 150, step=0.5,
               what="the retries to be spent")
    times = [float(t) for t in _runs(marker)]
    assert len(times) == 3
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert 4 <= gaps[0] < 15 and 29 <= gaps[1] < 45, gaps
