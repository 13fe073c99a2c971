"""Pre-labelling through real RQ workers, real Redis and a recording Label Studio stand-in."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from clicksmith.cli import main as cli
from clicksmith.labelstudio.results import decode_brush
from tests.review.conftest import wait_until


class ImageHost:
    """An image host on 127.0.0.1: answers each GET with the next status of `statuses` (the
    last one repeats), 200 with `image`; `hits` counts the requests."""

    def __init__(self, statuses: list[int], image: bytes = b"") -> None:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                with host.lock:
                    status = host.statuses[min(host.hits, len(host.statuses) - 1)]
                    host.hits += 1
                body = host.image if status == 200 else b"boom"
                self.send_response(status)
                self.send_header("Content-Type", "image/png" if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.statuses, self.image, self.hits = statuses, image, 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.netloc = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image_host():
    hosts: list[ImageHost] = []

    def make(statuses: list[int], image: bytes = b"") -> ImageHost:
        hosts.append(ImageHost(statuses, image))
        return hosts[-1]

    yield make
    for h in hosts:
        h.close()


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
    lines = out.splitlines()
    assert lines[-1] == f"run {run_id}: done with 0 failures"
    assert "20/20 tasks (100%)" in lines[-2]
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
    """The worker dies after LS stored its batch; the other worker runs the job again within a
    minute (nothing moved by hand) and writes no duplicate."""
    from redis import Redis
    from rq.job import Job

    fake_ls.add_project(9, 8)
    fake_ls.stall_next_import = threading.Event()
    fake_ls.stall_next_import.set()
    run_id = _run_prelabel(capsys, 9, batch=8)
    proc = workers.start(burst=False)
    # LS has stored the batch, the worker waits for the answer: kill it right there.
    assert fake_ls.import_stored.wait(180), "the worker never wrote its batch"
    survivor = workers.start(burst=False)
    workers.kill(proc)
    killed_at = time.time()
    fake_ls.release_import.set()
    assert len(fake_ls.predictions) == 8

    conn = Redis.from_url(env["REDIS_URL"])
    (job_id,) = json.loads(conn.hget(f"clicksmith:run:{run_id}", "jobs"))
    wait_until(lambda: Job.fetch(job_id, connection=conn).get_status().value == "finished",
               120, step=0.5, what="the survivor to run the abandoned job")
    assert time.time() - killed_at < 60
    assert survivor.poll() is None
    assert sorted(p["task"] for p in fake_ls.predictions) == list(range(1, 9))  # no duplicates
    job = Job.fetch(job_id, connection=conn)
    result = job.return_value()
    assert result["written"] == 0 and result["skipped"] == 8  # LS already held the batch
    assert job.meta["done"] == job.meta["total"] == 8 and job.meta["run"] == run_id
    assert cli(["status", job_id]) == 0
    assert capsys.readouterr().out.strip() == f"job {job_id}: finished 8/8"
    assert cli(["status", run_id]) == 0
    assert "8/8 tasks" in capsys.readouterr().out


def test_one_bad_image_is_reported_and_the_rest_prelabelled(fake_ls, env, workers, capsys,
                                                            image_host):
    """One of nine task images answers HTTP 500: it is tried three times, reported (which
    task, why) and skipped; the eight others get their prediction; `--wait` prints a line per
    change only, lists the failure and ends "done with 1 failure" with exit status 1."""
    host = image_host([500])
    workers.env["ALLOWED_IMAGE_HOSTS"] = host.netloc
    fake_ls.add_project(8, 9)
    fake_ls.tasks[5]["data"]["image"] = f"http://{host.netloc}/img5.png"
    workers.start(burst=False)
    started = time.time()
    assert cli(["prelabel", "--project", "8", "--batch-size", "3", "--wait",
                "--poll", "0.2"]) == 1
    took = time.time() - started
    out = capsys.readouterr().out
    run_id = out.split()[1].rstrip(":")
    lines = out.splitlines()
    assert lines[-1] == f"run {run_id}: done with 1 failure: task 5"
    assert lines[-2].startswith(f"  task 5: could not fetch image http://{host.netloc}/img5.png:"
                                " HTTP 500 (tried 3 times")
    progress = [line for line in lines if line.startswith(f"{run_id}: ")]
    assert len(progress) == len(set(progress)) <= 12  # a line per change, not per poll
    assert "9/9 tasks (100%), 1 failed" in progress[-1] and "3 finished" in progress[-1]
    assert host.hits == 3
    assert sorted(p["task"] for p in fake_ls.predictions) == [1, 2, 3, 4, 6, 7, 8, 9]
    assert took < 90  # model load + 9 tasks + 1 + 3 s of retries; no job-level back-off

    assert cli(["status", run_id, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["failed"] == 1 and info["failures"][0]["task"] == 5
    assert "HTTP 500" in info["failures"][0]["reason"]


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


def test_batch_job_retries_a_transient_image_failure(fake_ls, env, monkeypatch, image_host):
    """An image host that answers 503 once, then the image: the task is pre-labelled; one that
    answers 404 (permanent) is asked once and reported."""
    from review.prelabel import prelabel_batch

    fake_ls.add_project(4, 2)
    flaky = image_host([503, 200], fake_ls.images["4/img1.png"])
    gone = image_host([404])
    monkeypatch.setenv("ALLOWED_IMAGE_HOSTS", f"{flaky.netloc},{gone.netloc}")
    fake_ls.tasks[1]["data"]["image"] = f"http://{flaky.netloc}/a.png"
    fake_ls.tasks[2]["data"]["image"] = f"http://{gone.netloc}/b.png"
    stats = prelabel_batch(4, [1, 2])
    assert stats["written"] == 1 and stats["failed"] == 1
    assert flaky.hits == 2 and gone.hits == 1
    assert "HTTP 404" in stats["errors"][2]
    assert [p["task"] for p in fake_ls.predictions] == [1]


def test_status_without_an_id_lists_the_newest_runs_first(env, capsys):
    from redis import Redis

    from review import jobs

    conn = Redis.from_url(env["REDIS_URL"])
    older = jobs.new_run(conn, "prelabel", 3, 5)
    conn.hset(jobs.run_key(older), "started_at", time.time() - 60)
    newer = jobs.new_run(conn, "prelabel", 4, 2)
    jobs.mark_done(conn, newer, [1, 2], failed={2: "image answered HTTP 404"})
    assert cli(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [newer, older]
    assert "2/2 tasks (100%), 1 failed" in lines[0] and "0/5 tasks (0%)" in lines[1]
    assert cli(["status", "--json"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == [newer, older]
