"""Pre-labelling through real RQ workers, real Redis and a recording Label Studio stand-in."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from clicksmith.cli import main as cli
from clicksmith.labelstudio.results import decode_brush
from tests.review.conftest import wait_until


def _run_prelabel(capsys, project: int, batch: int) -> str:
    assert cli(["prelabel", "--project", str(project), "--batch-size", str(batch)]) == 0
    out = capsys.readouterr().out
    return out.split()[1].rstrip(":")  # "run <id>: ..."


def test_prelabel_20_tasks_with_two_workers(fake_ls, env, workers, capsys):
    fake_ls.add_project(7, 20)
    # task 3 holds a box, task 4 an annotated brush mask: they must be used as sources.
    fake_ls.tasks[3]["annotations"] = [{"id": 30, "created_at": "2026-01-02T00:00:00Z", "result": [
        {"type": "rectanglelabels", "original_width": 96, "original_height": 96,
         "value": {"x": 10, "y": 20, "width": 30, "height": 40, "rectanglelabels": ["Object"]}}]}]
    prior = np.zeros((96, 96), bool)
    prior[30:70, 25:60] = True
    from clicksmith.labelstudio.config import parse_config
    from clicksmith.labelstudio.results import brush_item
    from tests.review.lsfake import LABEL_CONFIG

    cfg = parse_config(LABEL_CONFIG, interactive=False)
    item = brush_item(prior, brush=cfg.brush_name, image=cfg.image_name, label="Object",
                      score=1.0)
    fake_ls.tasks[4]["annotations"] = [{"id": 40, "created_at": "2026-01-02T00:00:00Z",
                                        "result": [item]}]

    procs = [workers.start(burst=False), workers.start(burst=False)]
    assert cli(["prelabel", "--project", "7", "--batch-size", "6", "--wait",
                "--poll", "0.5"]) == 0
    out = capsys.readouterr().out
    run_id = out.split()[1].rstrip(":")
    assert "20/20 tasks (100%)" in out.splitlines()[-1]
    assert all(p.poll() is None for p in procs)  # workers stay up for the next jobs

    assert sorted(p["task"] for p in fake_ls.predictions) == list(range(1, 21))
    versions = {p["model_version"] for p in fake_ls.predictions}
    assert len(versions) == 1
    version = versions.pop()
    assert fake_ls.projects[7]["model_version"] == version
    # bulk writes: one import per job (4 jobs of <= 6 tasks), never one per task
    imports = [c for c in fake_ls.calls if c[1] == "/api/projects/7/import/predictions"]
    assert len(imports) == 4
    for p in fake_ls.predictions:
        (res,) = p["result"]
        mask = decode_brush(res)
        assert mask.shape == (96, 96)
        assert 0.0 <= p["score"] <= 1.0 and res["value"]["brushlabels"] == ["Object"]
    box_mask = decode_brush(fake_ls.predictions_of(3)[0]["result"][0])
    assert not box_mask[:, 45:].any() and not box_mask[:18].any()  # limited to the box
    refined = decode_brush(fake_ls.predictions_of(4)[0]["result"][0])
    assert (refined == prior).mean() > 0.95  # no clicks: the existing mask, re-scored

    assert cli(["status", run_id]) == 0
    line = capsys.readouterr().out
    assert "20/20 tasks (100%)" in line and "4 finished" in line

    # a second run skips every task: same version already there, nothing enqueued or written
    assert cli(["prelabel", "--project", "7", "--wait", "--poll", "0.5"]) == 0
    assert "0 task(s) to pre-label" in capsys.readouterr().out
    assert len(fake_ls.predictions) == 20


def test_worker_killed_mid_job_retry_writes_no_duplicates(fake_ls, env, workers, capsys):
    from redis import Redis
    from rq import Queue
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry, StartedJobRegistry
    from rq.scheduler import RQScheduler

    fake_ls.add_project(9, 8)
    fake_ls.stall_next_import = threading.Event()
    fake_ls.stall_next_import.set()
    run_id = _run_prelabel(capsys, 9, batch=8)
    proc = workers.start(burst=False)
    # LS has stored the batch, the worker waits for the answer: kill it right there.
    assert fake_ls.import_stored.wait(180), "the worker never wrote its batch"
    workers.kill(proc)
    fake_ls.release_import.set()
    assert len(fake_ls.predictions) == 8

    conn = Redis.from_url(env["REDIS_URL"])
    queue = Queue(env["QUEUE_NAME"], connection=conn)
    registry = StartedJobRegistry(queue=queue)
    assert len(registry.get_job_ids()) == 1  # abandoned, still "started"
    # RQ's maintenance retries it once its heartbeat has expired (>= 60 s); move the clock.
    registry.cleanup(timestamp=time.time() + 3600)
    scheduled = ScheduledJobRegistry(queue=queue)
    (job_id,) = scheduled.get_job_ids()  # retried after the Retry interval (5 s)
    wait_until(lambda: scheduled.get_scheduled_time(job_id).timestamp() < time.time(), 30,
               what="the retry to become due")
    # The dead worker's scheduler lock lapses after 61 s; let it lapse now so the next
    # worker's scheduler enqueues the due retry.
    conn.delete(RQScheduler.get_locking_key(queue.name))
    out = workers.wait(workers.start())
    assert "Job OK" in out or "Successfully completed" in out, out
    assert sorted(p["task"] for p in fake_ls.predictions) == list(range(1, 9))  # no duplicates
    job = Job.fetch(job_id, connection=conn)
    result = job.return_value()
    assert result["written"] == 0 and result["skipped"] == 8  # LS already held the batch
    assert job.meta["done"] == job.meta["total"] == 8 and job.meta["run"] == run_id
    assert cli(["status", job_id]) == 0
    assert capsys.readouterr().out.strip() == f"job {job_id}: finished 8/8"
    assert cli(["status", run_id]) == 0
    assert "8/8 tasks" in capsys.readouterr().out


def test_prelabel_bad_input_exits_2(env, capsys):
    assert cli(["prelabel", "--project", "5", "--batch-size", "0"]) == 2
    assert "batch size" in capsys.readouterr().err
    assert cli(["status", "no-such-run"]) == 2


@pytest.mark.parametrize("url,ok", [
    ("/data/upload/1/a.png", True),
    ("http://evil.example.com/a.png", False),
    ("file:///etc/passwd", False),
])
def test_image_host_rule(env, url, ok):
    from clicksmith.labelstudio.client import LabelStudioError
    from clicksmith.labelstudio.images import ImageFetcher
    from clicksmith.settings import load_settings

    if ok:
        where = ImageFetcher(load_settings()).locate(url)
        assert where.on_label_studio and where.target.startswith(env["LABEL_STUDIO_URL"])
    else:
        with pytest.raises(LabelStudioError):
            ImageFetcher(load_settings()).locate(url)


def test_batch_job_reports_bad_tasks_without_failing(fake_ls, env):
    """A deleted task and an image on a foreign host are reported, the rest is written."""
    from review.prelabel import prelabel_batch

    fake_ls.add_project(6, 2)
    fake_ls.tasks[2]["data"]["image"] = "http://203.0.113.9/elsewhere.png"
    stats = prelabel_batch(6, [1, 2, 999])
    assert stats["written"] == 1 and stats["failed"] == 2
    assert set(stats["errors"]) == {2, 999}
    assert "not the Label Studio host" in stats["errors"][2]
    assert [p["task"] for p in fake_ls.predictions] == [1]
    assert ("GET", "/elsewhere.png") not in fake_ls.calls
