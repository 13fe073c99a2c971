"""Pre-labelling a Label Studio project: planning (CLI side) and the batch job (worker side).

Idempotence, so that a worker killed at any point loses nothing and the retried job writes no
duplicate: right before computing, each task is re-read from Label Studio (the job needs its
data anyway) and skipped if it already holds a prediction of the current model version. That
covers a kill after LS accepted the bulk write but before the job finished. Label Studio is the
record, not Redis: a Redis "done" set would go stale when someone deletes predictions in LS.
One job owns its task ids, and RQ never runs the same job twice at once. Redis only holds the
run's progress (a set of finished task ids, so a retried job does not count twice).

A bad task never sinks the batch: a task whose image cannot be fetched or decoded, or whose
source does not fit, is reported (the run's failures: which task, why) and skipped, and every
other task of the batch gets its prediction. A transient image failure (the host answers 5xx,
times out) is tried TASK_ATTEMPTS times within TASK_RETRY_BUDGET_S first. Only what concerns
the whole batch fails the job, to be retried by RQ with back-off: Label Studio itself down or
refusing (reading a task, writing the predictions), the model failing.
"""

from __future__ import annotations

import logging
import time

from label_studio_sdk.core.api_error import ApiError

from clicksmith import queue
from clicksmith.labelstudio.client import (
    LabelStudioError,
    as_dict,
    client_for,
    get_task,
    list_tasks,
)
from clicksmith.labelstudio.config import ProjectConfig, project_config
from clicksmith.labelstudio.images import load_task_image
from clicksmith.models import process_model
from clicksmith.prelabel import has_version, task_prediction
from clicksmith.settings import Settings, load_settings
from review import jobs

log = logging.getLogger(__name__)

TASK_ATTEMPTS = 3  # tries of one task whose image fetch fails transiently
TASK_RETRY_DELAYS_S = (1.0, 3.0)  # the waits between them
TASK_RETRY_BUDGET_S = 30.0  # no new try of a task once this long was spent on it


def prelabel_batch(project_id: int, task_ids: list[int], run_id: str | None = None) -> dict:
    """RQ job: pre-label `task_ids` of `project_id` and write them in one bulk request."""
    settings = load_settings()
    conn = queue.redis_conn(settings)
    client = client_for(settings)
    predictor = process_model(settings)
    version = predictor.model_version
    cfg = project_config(client, project_id)
    started = time.time()
    stats = {"written": 0, "skipped": 0, "failed": 0, "model_version": version}
    pending: list[dict] = []
    finished: list[int] = []
    errors: dict[int, str] = {}
    for i, task_id in enumerate(task_ids):
        task_id = int(task_id)
        try:
            task = get_task(client, task_id)
        except ApiError as exc:
            if exc.status_code != 404:
                raise  # LS down or refusing: fail the job, RQ retries it
            errors[task_id] = "task not found (deleted?)"
            stats["failed"] += 1
            finished.append(task_id)
            continue
        if has_version(task, version):
            stats["skipped"] += 1
            finished.append(task_id)
        else:
            try:
                pending.append(_predict_with_retries(predictor, client, settings, cfg, task,
                                                     version))
            except (ValueError, LabelStudioError) as exc:
                # bad image / URL / source, or its host still failing: report it, go on
                log.warning("task %s: %s", task_id, exc)
                errors[task_id] = str(exc)
                stats["failed"] += 1
                finished.append(task_id)
        jobs.update_job_meta(i + 1, len(task_ids), started, run=run_id, model_version=version)
    if pending:
        _write(client, project_id, pending)
        stats["written"] = len(pending)
        finished += [p["task"] for p in pending]
    client.projects.update(project_id, model_version=version)
    jobs.mark_done(conn, run_id, finished, failed=errors)
    if errors:
        stats["errors"] = errors
    return stats


def _predict_with_retries(predictor, client, settings: Settings, cfg: ProjectConfig,
                          task: dict, version: str) -> dict:
    """_predict_one, tried again (TASK_ATTEMPTS, TASK_RETRY_BUDGET_S) while it fails
    transiently; the last error says how often it was tried."""
    started = time.monotonic()
    for attempt in range(1, TASK_ATTEMPTS + 1):
        try:
            return _predict_one(predictor, client, settings, cfg, task, version)
        except LabelStudioError as exc:
            delay = TASK_RETRY_DELAYS_S[min(attempt, len(TASK_RETRY_DELAYS_S)) - 1]
            spent = time.monotonic() - started
            if not exc.transient:
                raise
            if attempt == TASK_ATTEMPTS or spent + delay > TASK_RETRY_BUDGET_S:
                raise LabelStudioError(f"{exc} (tried {attempt} times in {spent:.0f} s)",
                                       status=exc.status, transient=True) from None
            log.info("task %s: %s; trying again in %.0f s", task.get("id"), exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _predict_one(predictor, client, settings: Settings, cfg: ProjectConfig, task: dict,
                 version: str) -> dict:
    image = load_task_image(settings, task, cfg)
    return {"task": int(task["id"]), **task_prediction(predictor, image, task, cfg, version)}


def _write(client, project_id: int, predictions: list[dict]) -> None:
    from label_studio_sdk.types import PredictionRequest

    client.projects.import_predictions(
        id=project_id, request=[PredictionRequest(**p) for p in predictions])


# --- planning (CLI side) -----------------------------------------------------------------------


def plan(settings: Settings, project_id: int, batch_size: int,
         model_version: str | None = None) -> tuple[str, list[str], int]:
    """List the project's tasks and enqueue one job per batch; returns (run id, job ids, total).

    Tasks already holding a prediction of `model_version` are left out up front; the jobs check
    again, since a worker may serve a newer version than the planner saw."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    client = client_for(settings)
    project_config(client, project_id)  # the project exists and has a brush to write
    tasks = list_tasks(client, project_id)
    todo = [int(t["id"]) for t in tasks
            if not (model_version and has_version(t, model_version))]
    conn = queue.redis_conn(settings)
    q = queue.job_queue(settings, conn)
    run_id = jobs.new_run(conn, "prelabel", project_id, len(todo))
    job_ids = []
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        job = q.enqueue(prelabel_batch, project_id, batch, run_id,
                        **queue.job_options(settings, prelabel_batch),
                        meta={"run": run_id, "done": 0, "total": len(batch)},
                        description=f"prelabel project {project_id} tasks {batch[0]}..{batch[-1]}")
        job_ids.append(job.id)
    jobs.set_run_jobs(conn, run_id, job_ids)
    return run_id, job_ids, len(todo)


def project_model_version(settings: Settings, project_id: int) -> str | None:
    client = client_for(settings)
    return as_dict(client.projects.get(project_id)).get("model_version") or None
