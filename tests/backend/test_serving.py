"""Nothing starves and no lock lingers: `clicksmith serve`'s server model (one process, threads)
keeps /health within Label Studio's 1 s while long clicks run and while clients trickle their
body (which gets a 408 after REQUEST_READ_TIMEOUT_SECONDS); the start-up checks say what is
missing; a Redis stall leaves no session lock behind its request."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.errors import ApiError
from backend.sessions import MemorySessionStore, RedisSessionStore
from tests.backend.ls import REPO, keypoint, predict_body
from tests.backend.test_health import (  # noqa: F401  (fixtures)
    fake_label_studio,
    free_port,
    own_redis,
)

H, W = 72, 96


def get(url: str, timeout: float) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post(url: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Serve:
    """`clicksmith serve` with `args` and `env` on a free port, in its own process group."""

    def __init__(self, tmp_path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"serve-{self.port}.log"
        self.log = open(self.log_path, "wb")
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("REDIS_URL", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY")}
        full_env |= {"TORCH_THREADS": "1", **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clicksmith.cli", "serve", "--port", str(self.port),
             "--log-level", "warning", *args],
            cwd=REPO, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, health = get(self.url + "/health", timeout=2)
                if health.get("model_state") == "ready":
                    return health
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("server did not start:\n" + self.output())
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def serve(tmp_path):
    started: list[Serve] = []

    def start(args=(), **env) -> Serve:
        s = Serve(tmp_path, list(args), env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def probe_health(url: str, stop: threading.Event) -> list[float | None]:
    """/health latencies every 0.2 s until `stop`; None: no 200 within Label Studio's 1 s."""
    out: list[float | None] = []
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            status, _ = get(url + "/health", timeout=1.0)
            took = time.monotonic() - t0
            out.append(took if status == 200 and took <= 1.0 else None)
        except (urllib.error.URLError, OSError):
            out.append(None)
        stop.wait(0.2)
    return out


def trickle(port: int, seconds: float) -> tuple[bytes, float, bool]:
    """Send a /predict body at one byte per second: (the server's answer, when it came,
    whether the server then closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{")
        start = time.monotonic()
        answer = b""
        while time.monotonic() - start < seconds:
            s.settimeout(1.0)
            try:
                answer = s.recv(4096)
                break
            except TimeoutError:
                s.sendall(b" ")
        took = time.monotonic() - start
        if not answer:
            return answer, took, False
        s.settimeout(5)
        closed = False
        try:
            while True:
                more = s.recv(4096)
                if not more:
                    closed = True
                    break
                answer += more
        except OSError:
            closed = True  # reset: closed as well
        return answer, took, closed


# --- the server model -------------------------------------------------------------------------
def options(*argv: str) -> dict:
    from backend.cli import configure, server_options
    from clicksmith.settings import load_settings

    parser = argparse.ArgumentParser()
    configure(parser)
    return server_options(parser.parse_args(list(argv)), load_settings(env={}))


def test_serve_defaults_to_one_process_with_threads():
    o = options()
    assert (o["workers"], o["worker_class"], o["threads"]) == (1, "gthread", 32)
    assert options("--workers", "3", "--threads", "4")["workers"] == 3
    sync = options("--worker-class", "sync", "--threads", "8")
    assert (sync["worker_class"], sync["threads"]) == ("sync", 1)  # not silently gthread


def test_several_processes_without_redis_are_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = subprocess.run(
        [sys.executable, "-m", "clicksmith.cli", "serve", "--port", str(free_port()),
         "--workers", "2", "--no-checks"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60)
    assert out.returncode == 2
    assert "--workers 2 needs REDIS_URL" in out.stderr and "--threads" in out.stderr


@pytest.mark.slow
def test_health_answers_while_long_clicks_run_and_bodies_trickle(serve, tmp_path):
    """The default server (no REDIS_URL): /health within 1 s while two annotators' 60-click
    requests run and while two clients trickle a body; the trickled bodies get a 408."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(20, 90, (64, 64, 3), dtype=np.uint8), (1024, 1024))
    cv2.ellipse(img, (512, 512), (256, 200), 15, 0, 360, (230, 210, 190), -1)
    image = str(tmp_path / "big.png")
    cv2.imwrite(image, img)
    server = serve(LOCAL_IMAGE_ROOTS=str(tmp_path), REQUEST_READ_TIMEOUT_SECONDS="3")
    health = server.wait_ready()
    assert health["status"] == "UP" and health["sessions"] == "memory"
    assert "REDIS_URL" not in server.output()  # no warning: the default is right

    # inside the ellipse, then corrections alternating outside / inside (as an annotator would)
    clicks = [keypoint(float(50 + 30 * np.cos(2.4 * i) * (i % 2 or 0.5)),
                       float(50 + 24 * np.sin(2.4 * i) * (i % 2 or 0.5)), 1024, 1024,
                       positive=i % 2 == 0) for i in range(60)]
    stop = threading.Event()
    with ThreadPoolExecutor(3) as pool:
        probes = pool.submit(probe_health, server.url, stop)
        time.sleep(0.3)
        heavy = [pool.submit(post, server.url + "/predict",
                             predict_body(image, clicks, task_id=t, project="1.1"))
                 for t in (1, 2)]
        answers = [h.result() for h in heavy]
        stop.set()
        during_clicks = probes.result()
    assert [status for status, _ in answers] == [200, 200], answers
    answered = [p for p in during_clicks if p is not None]
    assert len(during_clicks) >= 5  # the clicks ran for a while
    assert len(answered) >= 0.9 * len(during_clicks), during_clicks

    stop = threading.Event()
    with ThreadPoolExecutor(3) as pool:
        probes = pool.submit(probe_health, server.url, stop)
        slow = [pool.submit(trickle, server.port, 15) for _ in range(2)]
        trickled = [s.result() for s in slow]
        stop.set()
        during_trickle = probes.result()
    assert all(p is not None for p in during_trickle), during_trickle
    for answer, took, closed in trickled:
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"REQUEST_READ_TIMEOUT_SECONDS" in answer and closed
        assert 2.5 < took < 8, took
    # and the server serves clicks as before
    status, answer = post(server.url + "/predict",
                          predict_body(image, [keypoint(50, 50, 1024, 1024)], task_id=3))
    assert status == 200, answer


@pytest.mark.slow
def test_serve_says_what_is_missing_and_health_is_degraded(serve, fake_label_studio):  # noqa: F811
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    server = serve(REDIS_URL=dead_redis, LABEL_STUDIO_URL=fake_label_studio,
                   LABEL_STUDIO_API_KEY="revoked-token")
    deadline = time.monotonic() + 90
    while True:  # keeps running and answers /health with the reasons
        try:
            start = time.monotonic()
            status, health = get(server.url + "/health", timeout=5)
            took = time.monotonic() - start
            if health["model_state"] == "ready":
                break
        except (urllib.error.URLError, OSError):
            pass
        assert server.proc.poll() is None, server.output()
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.2)
    said = server.output()
    assert f"Redis at {dead_redis} unreachable" in said
    assert f"Label Studio at {fake_label_studio} rejected LABEL_STUDIO_API_KEY" in said
    assert "starting anyway" in said
    assert status == 503 and took < 1.0 and health["status"] == "DEGRADED"
    sessions, queue, label_studio = health["reasons"]
    assert sessions.startswith(f"session store: Redis at {dead_redis} unreachable")
    assert queue.startswith(f"job queue: Redis at {dead_redis} unreachable")
    assert label_studio.startswith(f"Label Studio at {fake_label_studio} rejected")


# --- session locks ------------------------------------------------------------------------------
def test_a_redis_stall_leaves_no_session_lock_behind(own_redis):  # noqa: F811
    """A stall longer than the data connection's 5 s timeout: the release inside the request
    fails; the lock is gone as soon as Redis answers again, and the next request gets it."""
    import redis

    store = RedisSessionStore(own_redis.url, 60)
    r = redis.Redis.from_url(own_redis.url)
    name = store.lock_name("annotator")
    with store.lock("annotator"):
        assert r.exists(name)
        stall = own_redis.stall(6)
        start = time.monotonic()
    assert time.monotonic() - start < 2.5  # the release's retries are bounded
    stall.join()
    deadline = time.monotonic() + 1.0
    while r.exists(name):
        assert time.monotonic() < deadline, "the lock outlived its request"
        time.sleep(0.05)
    start = time.monotonic()
    with store.lock("annotator"):
        pass
    assert time.monotonic() - start < 0.5


def test_a_click_after_a_redis_stall_is_served(make_app, own_redis, disk):  # noqa: F811
    """The annotator's click during a stall fails with a 503; the next one is served."""
    client = make_app(redis_url=own_redis.url).test_client()
    path, _ = disk
    body = predict_body(path, [keypoint(50, 50, W, H)], task_id=5, project="3.3")
    assert client.post("/predict", json=body).status_code == 200
    stall = own_redis.stall(6)
    during = client.post("/predict", json=predict_body(
        path, [keypoint(50, 50, W, H), keypoint(60, 45, W, H)], task_id=5, project="3.3"))
    stall.join()
    assert during.status_code == 503 and "Redis" in during.json["error"]
    start = time.monotonic()
    after = client.post("/predict", json=predict_body(
        path, [keypoint(50, 50, W, H), keypoint(60, 45, W, H)], task_id=5, project="3.3"))
    assert after.status_code == 200, after.json
    assert time.monotonic() - start < 5


def test_the_lock_is_renewed_while_its_request_runs(own_redis):  # noqa: F811
    import redis

    store = RedisSessionStore(own_redis.url, 60, lock_ttl=1.0)
    other = RedisSessionStore(own_redis.url, 60, lock_wait=0.5)  # another worker
    r = redis.Redis.from_url(own_redis.url)
    with store.lock("k"):
        time.sleep(2.5)  # two and a half TTLs
        assert 0 < r.pttl(store.lock_name("k")) <= 1000
        start = time.monotonic()
        with pytest.raises(ApiError) as refused:
            with other.lock("k"):
                pass
        assert 0.4 < time.monotonic() - start < 1.5
    assert refused.value.status == 503 and "retry" in refused.value.message
    assert not r.exists(store.lock_name("k"))


def test_a_waiting_request_gives_up_with_a_clear_503(own_redis):  # noqa: F811
    import redis

    store = RedisSessionStore(own_redis.url, 60, lock_wait=1.0)
    r = redis.Redis.from_url(own_redis.url)
    r.set(store.lock_name("k"), "a dead process's token", px=30000)
    start = time.monotonic()
    with pytest.raises(ApiError) as refused:
        with store.lock("k"):
            pass
    assert 0.9 < time.monotonic() - start < 2.0
    assert refused.value.status == 503
    assert "another request of this annotator's session" in refused.value.message

    memory = MemorySessionStore(8, 60, lock_wait=0.5)
    held, release = threading.Event(), threading.Event()

    def hold():
        with memory.lock("k"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        start = time.monotonic()
        with pytest.raises(ApiError) as refused:
            with memory.lock("k"):
                pass
        assert 0.4 < time.monotonic() - start < 1.5 and refused.value.status == 503
    finally:
        release.set()
        t.join()



def _environ(pid: int) -> dict[str, str]:
    raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


@pytest.mark.slow
def test_serve_caps_malloc_arenas_unless_told_otherwise(serve, monkeypatch):
    """Started from the command line, the server runs with MALLOC_ARENA_MAX=2 (glibc reads it at
    start: `serve` re-executes itself with it); a value in the environment is kept."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    capped = serve(["--no-checks"])
    capped.wait_ready()
    assert _environ(capped.proc.pid).get("MALLOC_ARENA_MAX") == "2"
    chosen = serve(["--no-checks"], MALLOC_ARENA_MAX="4")
    chosen.wait_ready()
    assert _environ(chosen.proc.pid).get("MALLOC_ARENA_MAX") == "4"
