"""`clicksmith doctor`: one failing check at a time against fakes on 127.0.0.1 (a Label Studio
1.23 stand-in with the ML backend and webhook lists, a backend's /health, a real Redis with or
without a registered RQ worker); each says what is wrong and the fix, and the exit status is 1;
everything in order is all OK and 0."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from flask import jsonify

from clicksmith.cli import main
from tests.adapter.fakehttp import FakeHost
from tests.conftest import real_redis
from tests.review.lsfake import API_KEY, FakeLabelStudio, ServerThread

REDIS_BASE = "redis://127.0.0.1:6379/13"  # a db of its own; each test has its own queue name

NO_PROMPTS_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image"><Label value="Object"/></BrushLabels>
</View>"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DoctorLabelStudio(FakeLabelStudio):
    """FakeLabelStudio plus what the doctor asks: /health, whoami, the project's ML backends
    (GET /api/ml?project=N) and webhooks (GET /api/webhooks?project=N), as Label Studio 1.23
    serializes them (ml/serializers.py, webhooks/serializers.py)."""

    ml_backends: list[dict] = field(default_factory=list)
    webhooks: list[dict] = field(default_factory=list)

    def app(self):
        app = super().app()

        @app.get("/health")
        def health():
            return jsonify({"status": "UP"})

        @app.get("/api/current-user/whoami")
        def whoami():
            return jsonify({"id": 1, "email": "admin@example.com"})

        @app.get("/api/ml")
        def ml():
            from flask import request

            pid = int(request.args["project"])
            return jsonify([b for b in self.ml_backends if b["project"] == pid])

        @app.get("/api/webhooks")
        def webhooks():
            from flask import request

            pid = int(request.args["project"])
            return jsonify([h for h in self.webhooks if h["project"] == pid])

        return app


@dataclass
class World:
    ls: DoctorLabelStudio
    backend: FakeHost
    env: dict[str, str]
    queue: str
    worker: object = None


@pytest.fixture
def redis_conn():
    with real_redis(REDIS_BASE) as conn:
        yield conn


@pytest.fixture
def world(redis_conn, monkeypatch) -> Iterator[World]:
    """Everything in order: project 1 with one task whose image Label Studio serves, a
    connected interactive ML backend, its webhook, a worker on the queue, a backend whose
    /health says the model is ready."""
    from rq import Queue, Worker

    ls = DoctorLabelStudio()
    ls.add_project(1, 1)
    server = ServerThread(ls).start()
    backend = FakeHost()
    backend.json("/health?deep=1", {
        "status": "UP", "model_state": "ready", "model_version": "cdnet-test-1",
        "checks": {"model": {"ok": True, "state": "ready", "version": "cdnet-test-1"}}})
    ls.ml_backends.append({"id": 1, "project": 1, "url": backend.url, "state": "CO",
                           "readable_state": "Connected", "is_interactive": True,
                           "error_message": None, "model_version": "cdnet-test-1"})
    ls.webhooks.append({"id": 1, "project": 1, "url": backend.url + "/webhook",
                        "is_active": True, "send_payload": True, "send_for_all_actions": True,
                        "actions": [], "headers": {}, "consecutive_failures": 0})
    queue = f"doctor-{uuid.uuid4().hex[:12]}"
    worker = Worker([Queue(queue, connection=redis_conn)], connection=redis_conn,
                    name=f"w-{queue}")
    worker.register_birth()
    env = {"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": API_KEY,
           "REDIS_URL": REDIS_BASE, "QUEUE_NAME": queue, "LOCAL_IMAGE_ROOTS": "",
           "ALLOWED_IMAGE_HOSTS": "", "WEBHOOK_SECRET": ""}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    w = World(ls, backend, env, queue, worker)
    yield w
    if w.worker is not None:
        w.worker.register_death()
    server.stop()
    backend.stop()


def doctor(capsys, world: World, *extra: str) -> tuple[int, dict[str, tuple[str, str]]]:
    """Exit status and {check name: (OK/FAIL/SKIP, detail)} of one run."""
    rc = main(["doctor", "--project", "1", "--backend", world.backend.url, "--timeout", "3",
               *extra])
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines()[:-1]:
        label, rest = line.split(None, 1)
        for name in ("label studio", "token", "labeling config", "task image", "ML backend",
                     "webhook", "redis", "workers", "model"):
            if rest.startswith(name + " "):
                lines[name] = (label, rest[len(name):].strip())
    assert len(lines) == 9, out
    return rc, lines


def failed(lines: dict) -> list[str]:
    return [name for name, (label, _) in lines.items() if label == "FAIL"]


def test_everything_in_order_is_all_ok(capsys, world):
    rc, lines = doctor(capsys, world)
    assert rc == 0
    assert all(label == "OK" for label, _ in lines.values()), lines
    assert lines["token"][1] == "LABEL_STUDIO_API_KEY accepted: legacy token, user " \
                                "admin@example.com"
    assert lines["task image"][1] == "task 1: /data/upload/1/img1.png fetched (96x96)"
    assert lines["ML backend"][1].startswith(f"{world.backend.url}: Connected, interactive")
    assert "reachable from Label Studio" in lines["webhook"][1]
    assert lines["workers"][1] == f"1 on {world.queue!r}: w-{world.queue}"
    assert lines["model"][1] == f"backend at {world.backend.url}: ready, version cdnet-test-1"


def test_label_studio_unreachable(capsys, world, monkeypatch):
    gone = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("LABEL_STUDIO_URL", gone)
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["label studio"]
    label, detail = lines["label studio"]
    assert detail.startswith(f"cannot reach Label Studio at {gone} (LABEL_STUDIO_URL): ")
    assert "Fix: start Label Studio there, or set LABEL_STUDIO_URL" in detail
    assert lines["token"][0] == "SKIP" and lines["ML backend"][0] == "SKIP"


@pytest.mark.parametrize("key, kind, says, fix", [
    ("wrong-legacy-token", "legacy token",
     "rejected LABEL_STUDIO_API_KEY (HTTP 401 on /api/current-user/whoami)",
     "Fix: copy the token from Account & Settings > Legacy Token"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln", "personal access token",
     "Label Studio refused LABEL_STUDIO_API_KEY (401)",
     "Fix: create a new personal access token"),
])
def test_a_rejected_token_says_its_kind_and_the_fix(capsys, world, monkeypatch, key, kind,
                                                     says, fix):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", key)
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["token"]
    detail = lines["token"][1]
    assert says in detail and f"[{kind}]" in detail and fix in detail
    assert lines["labeling config"] == ("SKIP", "Label Studio cannot be asked (see above)")


def test_a_local_image_without_local_image_roots(capsys, world, tmp_path):
    image = tmp_path / "images" / "a.png"
    world.ls.tasks[1]["data"]["image"] = str(image)
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["task image"]
    detail = lines["task image"][1]
    assert f"refusing to read the local file {str(image)!r}: LOCAL_IMAGE_ROOTS is empty" \
        in detail
    assert detail.endswith(f"Fix: LOCAL_IMAGE_ROOTS={image.parent} (or add {image.parent} "
                           "to its comma-separated list)")


def test_an_image_on_a_host_not_allowed(capsys, world):
    # refused before any request: nothing is sent to that host
    world.ls.tasks[1]["data"]["image"] = "https://bucket.s3.example.com/a.png"
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["task image"]
    assert "Fix: add bucket.s3.example.com to ALLOWED_IMAGE_HOSTS" in lines["task image"][1]


def test_a_config_without_keypoints(capsys, world):
    world.ls.projects[1]["label_config"] = NO_PROMPTS_CONFIG
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["labeling config"]
    detail = lines["labeling config"][1]
    assert detail.startswith("project 1: no <KeyPointLabels> or <RectangleLabels> control "
                             "points at Image image")
    assert "Fix: Settings > Labeling Interface > Code" in detail
    assert lines["task image"][0] == "OK"  # the image field is still known


def test_no_ml_backend_connected(capsys, world):
    world.ls.ml_backends.clear()
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["ML backend"]
    detail = lines["ML backend"][1]
    assert detail.startswith("no ML backend is connected to project 1. Fix: Settings > Model > "
                             "Connect Model")
    assert lines["webhook"][1].endswith("reachability from Label Studio not confirmed (no "
                                        "connected ML backend at that address)")


@pytest.mark.parametrize("change, says", [
    ({"is_interactive": False}, "is connected but not interactive: clicks are never sent to "
                                "it. Fix: Settings > Model > edit the model, turn on "
                                "Interactive preannotations"),
    ({"state": "DI", "error_message": None}, "is Disconnected: Label Studio cannot use it. "
                                             "Fix: start `clicksmith serve`"),
])
def test_an_ml_backend_not_usable(capsys, world, change, says):
    world.ls.ml_backends[0].update(change)
    rc, lines = doctor(capsys, world)
    assert rc == 1 and "ML backend" in failed(lines)
    assert says in lines["ML backend"][1]


def test_no_webhook(capsys, world):
    world.ls.webhooks.clear()
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["webhook"]
    assert lines["webhook"][1].startswith("project 1 has no webhook to the backend's /webhook: "
                                          "corrections are not collected")
    assert "Settings > Webhooks" in lines["webhook"][1]


def test_a_webhook_label_studio_cannot_deliver_to(capsys, world):
    world.ls.webhooks[0]["consecutive_failures"] = 3
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["webhook"]
    assert "Label Studio's last 3 deliveries failed: it cannot reach" in lines["webhook"][1]


def test_redis_unreachable(capsys, world, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["redis"]
    detail = lines["redis"][1]
    assert detail.startswith(f"Redis at redis://127.0.0.1:{port}/0 unreachable: ")
    assert detail.endswith("Fix: start Redis there, or set REDIS_URL to a running one")
    assert lines["workers"] == ("SKIP", "Redis is not available (see above)")


def test_no_workers(capsys, world):
    world.worker.register_death()
    world.worker = None
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["workers"]
    assert lines["workers"][1] == (f"no worker listens on the queue {world.queue!r} "
                                   "(QUEUE_NAME): webhooks and pre-labelling jobs wait "
                                   "forever. Fix: clicksmith worker --preload (with the same "
                                   "REDIS_URL and QUEUE_NAME)")


def test_a_degraded_model(capsys, world):
    world.backend.json("/health?deep=1", {
        "status": "DEGRADED", "model_state": "error", "model_version": "",
        "checks": {"model": {"ok": False, "state": "error", "version": "",
                             "error": "model could not be loaded: no such file"}}}, 503)
    rc, lines = doctor(capsys, world)
    assert rc == 1 and failed(lines) == ["model"]
    assert lines["model"][1].startswith(f"backend at {world.backend.url}: model could not be "
                                        "loaded: no such file. Fix: check MODEL_PATH")


def test_bad_usage_is_status_2(capsys):
    assert main(["doctor", "--project", "0"]) == 2
    assert "--project must be a positive id" in capsys.readouterr().err
    assert main(["doctor", "--backend", "localhost:9090"]) == 2
