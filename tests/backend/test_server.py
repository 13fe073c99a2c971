"""A real gunicorn server (`clicksmith serve`) on a free port, hit by concurrent HTTP clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.sessions import KEY_PREFIX, SessionRecord, session_key
from clicksmith.labelstudio.results import rle_to_mask
from tests.backend.conftest import REDIS_URL
from tests.backend.ls import REPO, keypoint, predict_body

H, W = 72, 96


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None, timeout: float = 120) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def server(redis_db, tmp_path, image_roots):
    port = free_port()
    env = dict(os.environ, REDIS_URL=REDIS_URL, TORCH_THREADS="1", SESSION_TTL_SECONDS="120",
               LOCAL_IMAGE_ROOTS=image_roots)
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "clicksmith.cli", "serve", "--port", str(port), "--workers", "2",
         "--log-level", "warning"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                start = time.perf_counter()
                status, health = call(url + "/health", timeout=5)
                health_seconds = time.perf_counter() - start
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.time() > deadline:
                    log.close()
                    pytest.fail("server did not start:\n" + (tmp_path / "server.log").read_text())
                time.sleep(0.2)
        yield url, health, health_seconds
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the session of the gunicorn master we started
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


@pytest.mark.slow
def test_gunicorn_serves_concurrent_annotators(server, disk, redis_db):
    url, health, health_seconds = server
    assert health["status"] == "UP" and health["sessions"] == "redis"
    assert health_seconds < 1.0  # Label Studio's timeout, even while the model loads
    path, _ = disk
    project = f"{uuid.uuid4().int % 10**8}.1"
    pts = [(50, 50, True), (60, 45, True)]

    def annotator(task_id: int) -> list:
        answers = []
        for n in range(1, len(pts) + 1):
            ctx = [keypoint(x, y, W, H, positive=p) for x, y, p in pts[:n]]
            answers.append(call(url + "/predict",
                                predict_body(path, ctx, task_id=task_id, project=project)))
        return answers

    try:
        with ThreadPoolExecutor(4) as pool:
            runs = list(pool.map(annotator, range(1, 5)))
        for task_id, answers in enumerate(runs, start=1):
            for status, body in answers:
                assert status == 200, body
                item = body["results"][0]["result"][0]
                assert rle_to_mask(item["value"]["rle"], H, W).shape == (H, W)
                assert body["results"][0]["model_version"].startswith("cdnet-")
            key = KEY_PREFIX + session_key(project, task_id, "image", "mask", "Object")
            record = SessionRecord.from_fields(redis_db.hgetall(key))
            assert [(round(c.x, 3), round(c.y, 3)) for c in record.clicks] == [
                (round(x * W / 100, 3), round(y * H / 100, 3)) for x, y, _ in pts]
        status, body = call(url + "/predict", {"tasks": "nope"})
        assert status == 400 and "tasks" in body["error"]
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            assert b"clicksmith_request_duration_seconds_bucket" in r.read()
    finally:
        for key in redis_db.scan_iter(f"{KEY_PREFIX}{project}:*"):
            redis_db.delete(key)


def test_serve_refuses_bad_arguments():
    from clicksmith.cli import main

    assert main(["serve", "--port", "0"]) == 2
    assert main(["serve", "--workers", "0"]) == 2
