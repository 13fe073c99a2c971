"""Runs: one CLI invocation's batch jobs, tracked together (the queue itself, its Redis
connection and retry policy are clicksmith.queue's).

Why runs: `clicksmith prelabel` splits a project into many RQ jobs; a user wants one id to
follow. A run is a Redis hash (project, total, start time, job ids) plus a set of finished task
ids — a set, not a counter, so a retried job that re-reports a task does not count it twice.
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


def mark_done(conn, run_id: str | None, task_ids: list[int]) -> None:
    if run_id and task_ids:
        conn.sadd(run_done_key(run_id), *[int(t) for t in task_ids])
        conn.expire(run_done_key(run_id), 7 * 86400)


@dataclass(frozen=True)
class Progress:
    run_id: str
    project: int
    done: int
    total: int
    elapsed_s: float
    job_states: dict[str, int]

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
                "jobs": self.job_states, "finished": self.finished}


def run_progress(conn, run_id: str) -> Progress | None:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    raw = conn.hgetall(run_key(run_id))
    if not raw:
        return None
    info = {k.decode(): v.decode() for k, v in raw.items()}
    states: dict[str, int] = {}
    for job_id in json.loads(info.get("jobs", "[]")):
        try:
            status = Job.fetch(job_id, connection=conn).get_status(refresh=False)
            state = str(getattr(status, "value", status) or "unknown")
        except NoSuchJobError:
            state = "expired"
        states[state] = states.get(state, 0) + 1
    return Progress(run_id, int(info["project"]), int(conn.scard(run_done_key(run_id))),
                    int(info["total"]), time.time() - float(info["started_at"]), states)


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
