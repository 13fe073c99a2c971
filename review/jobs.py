"""Runs: one CLI invocation's batch jobs, tracked together (the queue itself, its Redis
connection and retry policy are clicksmith.queue's).

Why runs: `clicksmith prelabel` splits a project into many RQ jobs; a user wants one id to
follow. A run is a Redis hash (project, total, start time, job ids) plus a set of finished task
ids — a set, not a counter, so a retried job that re-reports a task does not count it twice —
and a hash of the tasks that could not be done, with the reason (a task done later, by a
retried job, leaves it). A job that failed as a whole is reported with the last line of its
error and the tasks it held.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

PREFIX = "clicksmith"


def run_key(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}"


def run_done_key(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}:done"


def run_failed_key(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}:failed"


def new_run(conn, kind: str, project_id: int, total: int, ttl: int = 7 * 86400) -> str:
    run_id = f"{kind}-{project_id}-{uuid.uuid4().hex[:8]}"
    conn.hset(run_key(run_id), mapping={
        "kind": kind, "project": project_id, "total": total, "started_at": time.time(),
        "jobs": "[]",
    })
    conn.expire(run_key(run_id), ttl)
    return run_id


def set_run_jobs(conn, run_id: str, job_ids: list[str]) -> None:
    conn.hset(run_key(run_id), "jobs", json.dumps(job_ids))


def mark_done(conn, run_id: str | None, task_ids: list[int],
              failed: dict[int, str] | None = None) -> None:
    """Tasks finished by a job: `task_ids` all of them, `failed` those among them that could not
    be done, with the reason (the others are done: a failure recorded before is dropped)."""
    if not run_id or not task_ids:
        return
    failed = {int(t): str(r) for t, r in (failed or {}).items()}
    ok = [int(t) for t in task_ids if int(t) not in failed]
    with conn.pipeline() as pipe:
        pipe.sadd(run_done_key(run_id), *[int(t) for t in task_ids])
        pipe.expire(run_done_key(run_id), 7 * 86400)
        if ok:
            pipe.hdel(run_failed_key(run_id), *ok)
        if failed:
            pipe.hset(run_failed_key(run_id), mapping=failed)
            pipe.expire(run_failed_key(run_id), 7 * 86400)
        pipe.execute()


@dataclass(frozen=True)
class Failure:
    """A task that could not be done (`task`), or a job that failed as a whole (`job`)."""

    reason: str
    task: int | None = None
    job: str | None = None
    tasks: str = ""  # the failed job's tasks, as its description names them

    def describe(self) -> str:
        if self.task is not None:
            return f"task {self.task}: {self.reason}"
        return f"job {self.job} ({self.tasks or 'its tasks'}): {self.reason}"

    def as_dict(self) -> dict:
        return {k: v for k, v in (("task", self.task), ("job", self.job), ("tasks", self.tasks),
                                  ("reason", self.reason)) if v not in (None, "")}


def failure_reason(job) -> str:
    """The last line of a failed job's error (its exception and message)."""
    result = job.latest_result()
    text = (getattr(result, "exc_string", None) or "").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed (no error recorded)"


@dataclass(frozen=True)
class Progress:
    run_id: str
    project: int
    done: int
    total: int
    elapsed_s: float
    job_states: dict[str, int]
    failures: tuple[Failure, ...] = ()

    @property
    def eta_s(self) -> float | None:
        """Remaining time at the average rate so far (None before the first task is done)."""
        if self.done == 0 or self.elapsed_s <= 0:
            return None
        return (self.total - self.done) * self.elapsed_s / self.done

    @property
    def finished(self) -> bool:
        unfinished = sum(n for s, n in self.job_states.items() if s not in {"finished", "failed",
                                                                            "canceled", "stopped"})
        return self.done >= self.total or unfinished == 0

    def as_dict(self) -> dict:
        return {"run": self.run_id, "project": self.project, "done": self.done,
                "total": self.total, "elapsed_s": round(self.elapsed_s, 1),
                "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
                "jobs": self.job_states, "finished": self.finished,
                "failed": len(self.failures),
                "failures": [f.as_dict() for f in self.failures]}


def run_progress(conn, run_id: str) -> Progress | None:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    raw = conn.hgetall(run_key(run_id))
    if not raw:
        return None
    info = {k.decode(): v.decode() for k, v in raw.items()}
    states: dict[str, int] = {}
    failures = [Failure(v.decode(), task=int(k))
                for k, v in sorted(conn.hgetall(run_failed_key(run_id)).items(),
                                   key=lambda kv: int(kv[0]))]
    for job_id in json.loads(info.get("jobs", "[]")):
        try:
            job = Job.fetch(job_id, connection=conn)
            status = job.get_status(refresh=False)
            state = str(getattr(status, "value", status) or "unknown")
        except NoSuchJobError:
            state = "expired"
        states[state] = states.get(state, 0) + 1
        if state == "failed":
            tasks = (job.description or "").rpartition(" tasks ")[2]
            failures.append(Failure(failure_reason(job), job=job_id, tasks=f"tasks {tasks}"
                                    if tasks else ""))
    return Progress(run_id, int(info["project"]), int(conn.scard(run_done_key(run_id))),
                    int(info["total"]), time.time() - float(info["started_at"]), states,
                    tuple(failures))


def list_runs(conn, limit: int = 20) -> list[Progress]:
    """The newest `limit` runs still in Redis (runs expire a week after they start), newest
    first: what `clicksmith status` shows when asked for no run in particular."""
    started: list[tuple[float, str]] = []
    for key in conn.scan_iter(match=run_key("*"), count=500):
        name = key.decode()
        run_id = name[len(run_key("")):]
        if run_id.endswith((":done", ":failed")):
            continue
        stamp = conn.hget(name, "started_at")
        if stamp is not None:
            started.append((float(stamp), run_id))
    runs = (run_progress(conn, run_id) for _, run_id in sorted(started, reverse=True)[:limit])
    return [p for p in runs if p is not None]


def update_job_meta(done: int, total: int, started: float, **extra: object) -> None:
    """Progress of the current RQ job in its meta (no-op outside a worker)."""
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        return
    elapsed = time.time() - started
    job.meta.update({"done": done, "total": total,
                     "eta_s": round((total - done) * elapsed / done, 1) if done else None,
                     **extra})
    job.save_meta()


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
