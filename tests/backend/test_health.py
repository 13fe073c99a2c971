"""/health tells the truth: Redis (sessions, jobs) and Label Studio checked, the model's state,
UP (200) only when everything configured works, else DEGRADED (503) with the reasons, which
Label Studio 1.23 shows; it answers within Label Studio's 1 s even with Redis stalled."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from backend import health as health_module
from tests.backend.conftest import REDIS_URL

GOOD_TOKEN = "good-legacy-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A redis-server of our own on a free port (no persistence), to stop and stall."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("needs redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> OwnRedis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--enable-debug-command", "local"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return self

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                             text=True, timeout=30)
        return out.stdout.strip()

    def stall(self, seconds: float) -> threading.Thread:
        """DEBUG SLEEP in the background: Redis answers nothing meanwhile."""
        import redis

        t = threading.Thread(target=self.cli, args=("DEBUG", "SLEEP", str(seconds)))
        t.start()
        # from_url: no retries (a plain Redis() retries timeouts, riding out the stall)
        probe = redis.Redis.from_url(self.url, socket_timeout=0.1, socket_connect_timeout=0.1)
        deadline = time.monotonic() + 5
        try:
            while True:  # until the sleep has begun
                assert time.monotonic() < deadline, "Redis did not stall (DEBUG refused?)"
                probe.ping()
                time.sleep(0.02)
        except redis.TimeoutError:
            pass
        finally:
            probe.close()
        return t

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    r = OwnRedis().start()
    yield r
    r.stop()


def serve(app) -> tuple[str, object]:
    """`app` behind a threaded werkzeug server on 127.0.0.1: (URL, server)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


@pytest.fixture
def fake_label_studio() -> Iterator[str]:
    """Label Studio's GET /api/current-user/whoami: 200 for `Token good-legacy-token`, else
    401 (as Label Studio 1.23 answers a wrong or missing key)."""
    app = Flask("fake-ls")

    @app.get("/api/current-user/whoami")
    def whoami():
        if request.headers.get("Authorization") != f"Token {GOOD_TOKEN}":
            return jsonify({"detail": "Invalid token."}), 401
        return jsonify({"id": 1, "email": "admin@example.com"})

    url, server = serve(app)
    yield url
    server.shutdown()


def label_studio_health(url: str) -> tuple[bool, str]:
    """What Label Studio 1.23 makes of our /health: MLApi.health → _request (timeout 1 s,
    raise_for_status, JSON), then MLBackend.update_state / _validate_healthcheck: (connected,
    the "Additional info" it shows)."""
    response = None
    try:
        response = requests.get(url + "/health", timeout=(1.0, 1.0))
        response.raise_for_status()
    except requests.exceptions.RequestException as exc:
        return False, str(exc)
    try:
        response.json()
    except ValueError as exc:
        return False, str(exc)
    return True, ""


def timed_get(client, path: str = "/health"):
    start = time.perf_counter()
    r = client.get(path)
    return r, time.perf_counter() - start


def test_up_when_redis_and_the_model_work(make_app, redis_db):
    client = make_app(redis_url=REDIS_URL).test_client()
    r, seconds = timed_get(client)
    assert r.status_code == 200 and seconds < 1.0
    h = r.json
    assert h["status"] == "UP" and h["model_state"] == "ready" and h["sessions"] == "redis"
    assert h["checks"]["sessions"] == {"ok": True, "store": "redis"}
    assert h["checks"]["queue"] == {"ok": True, "configured": True}
    assert h["checks"]["model"]["ok"] and h["checks"]["model"]["version"].startswith("cdnet-")
    assert h["checks"]["label_studio"] == {"ok": True, "configured": False}
    assert "reasons" not in h and "error" not in h


def test_without_redis_memory_sessions_and_no_queue_are_up(client):
    h = client.get("/health").json
    assert h["status"] == "UP"
    assert h["checks"]["sessions"] == {"ok": True, "store": "memory"}
    assert h["checks"]["queue"]["configured"] is False and h["checks"]["queue"]["ok"] is True


def test_redis_down_is_degraded_with_the_reason_and_label_studio_shows_it(make_app, own_redis,
                                                                           disk):
    from tests.backend.ls import keypoint, predict_body

    app = make_app(redis_url=own_redis.url)
    url, server = serve(app)
    try:
        assert label_studio_health(url) == (True, "")
        own_redis.stop()
        time.sleep(health_module.REDIS_CACHE_S + 0.1)
        start = time.perf_counter()
        r = requests.get(url + "/health", timeout=5)
        assert time.perf_counter() - start < 1.0
        assert r.status_code == 503
        h = r.json()
        assert h["status"] == "DEGRADED"
        assert h["checks"]["sessions"]["ok"] is False and h["checks"]["queue"]["ok"] is False
        where = f"Redis at redis://127.0.0.1:{own_redis.port}/0 unreachable"
        assert any(where in reason for reason in h["reasons"]), h["reasons"]
        assert h["reasons"][0].startswith("session store: ")
        assert h["reasons"][1].startswith("job queue: ")
        connected, shown = label_studio_health(url)
        assert not connected
        assert shown.startswith("503 Server Error: DEGRADED: session store: ") and where in shown
        # and the clicks fail for the same reason
        body = predict_body(disk[0], [keypoint(50, 50, 96, 72)])
        assert requests.post(url + "/predict", json=body, timeout=30).status_code == 503
        own_redis.start()  # back on the same port: UP again once the cached ping is stale
        time.sleep(health_module.REDIS_CACHE_S + 0.1)
        assert label_studio_health(url) == (True, "")
    finally:
        server.shutdown()


def test_a_stalled_redis_is_reported_within_labels_studios_second(make_app, own_redis):
    client = make_app(redis_url=own_redis.url).test_client()
    assert client.get("/health").status_code == 200
    time.sleep(health_module.REDIS_CACHE_S + 0.1)
    stall = own_redis.stall(3)
    try:
        r, seconds = timed_get(client)
        assert seconds < 1.0, seconds
        assert r.status_code == 503 and "Timeout" in r.json["error"], r.json
        # cached: the next probes do not wait on Redis again
        r, seconds = timed_get(client)
        assert r.status_code == 503 and seconds < 0.1
    finally:
        stall.join()
    time.sleep(health_module.REDIS_CACHE_S + 0.1)
    assert client.get("/health").status_code == 200


def test_label_studio_rejecting_the_key_is_degraded(make_app, fake_label_studio):
    client = make_app(label_studio_url=fake_label_studio,
                      label_studio_api_key="wrong-token").test_client()
    deadline = time.monotonic() + 10
    while True:  # the check runs in the background: /health never waits on Label Studio
        r, seconds = timed_get(client)
        assert seconds < 1.0
        if r.json["checks"]["label_studio"]["ok"] is not None:
            break
        assert r.status_code == 200 and time.monotonic() < deadline
        time.sleep(0.05)
    assert r.status_code == 503 and r.json["status"] == "DEGRADED"
    assert "rejected LABEL_STUDIO_API_KEY (HTTP 401" in r.json["error"]
    assert "rejected LABEL_STUDIO_API_KEY" in r.status


def test_label_studio_accepting_the_key_is_up(make_app, fake_label_studio):
    client = make_app(label_studio_url=fake_label_studio,
                      label_studio_api_key=GOOD_TOKEN).test_client()
    deadline = time.monotonic() + 10
    while client.get("/health").json["checks"]["label_studio"]["ok"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    h = client.get("/health").json
    assert h["status"] == "UP" and h["checks"]["label_studio"]["ok"] is True


def test_the_label_studio_check_says_what_is_wrong(fake_label_studio):
    from clicksmith.settings import load_settings

    def check(**overrides):
        return health_module.check_label_studio(load_settings(env={}, **overrides), timeout=2)

    assert check() is None  # LABEL_STUDIO_URL unset: nothing to check
    assert check(label_studio_url=fake_label_studio, label_studio_api_key=GOOD_TOKEN) is None
    assert "rejected LABEL_STUDIO_API_KEY" in check(label_studio_url=fake_label_studio,
                                                    label_studio_api_key="nope")
    assert "LABEL_STUDIO_API_KEY is not set" in check(label_studio_url=fake_label_studio)
    gone = f"http://127.0.0.1:{free_port()}"
    assert f"Label Studio at {gone} unreachable" in check(label_studio_url=gone,
                                                          label_studio_api_key=GOOD_TOKEN)



def test_deep_health_lists_workers_token_and_model_within_a_second(make_app, redis_db,
                                                                   fake_label_studio):
    """GET /health?deep=1: the same checks with details (the workers on QUEUE_NAME, the token's
    kind and user, the model's settings); 503 while no worker listens, 200 once one does; the
    plain /health is unchanged (no workers check: Label Studio's probe stays as it was)."""
    import uuid

    from rq import Queue, Worker

    queue = f"deep-{uuid.uuid4().hex[:12]}"
    client = make_app(redis_url=REDIS_URL, queue_name=queue, label_studio_url=fake_label_studio,
                      label_studio_api_key=GOOD_TOKEN).test_client()
    deadline = time.monotonic() + 10
    while client.get("/health").json["checks"]["label_studio"]["ok"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    plain = client.get("/health")
    assert plain.status_code == 200 and "workers" not in plain.json["checks"]
    r, seconds = timed_get(client, "/health?deep=1")
    assert seconds < 1.0 and r.status_code == 503
    h = r.json
    assert h["checks"]["workers"] == {
        "ok": False, "queue": queue, "workers": [],
        "error": f"no worker listens on the queue {queue!r}: webhooks are queued but never "
                 "handled (start `clicksmith worker`)"}
    assert h["reasons"] == [h["checks"]["workers"]["error"]]
    assert h["checks"]["label_studio"]["token"] == "legacy token"
    assert h["checks"]["label_studio"]["user"] == "admin@example.com"
    assert h["checks"]["model"]["inference_backend"] and h["checks"]["model"]["ok"] is True

    worker = Worker([Queue(queue, connection=redis_db)], connection=redis_db, name=f"w-{queue}")
    worker.register_birth()
    try:
        time.sleep(health_module.REDIS_CACHE_S + 0.1)  # the cached list goes stale
        r, seconds = timed_get(client, "/health?deep=1")
        assert seconds < 1.0 and r.status_code == 200, r.json
        assert r.json["checks"]["workers"] == {"ok": True, "queue": queue,
                                               "workers": [f"w-{queue}"]}
        r, seconds = timed_get(client, "/health?deep=1")  # cached: no Redis round trip
        assert r.status_code == 200 and seconds < 0.1
    finally:
        worker.register_death()
