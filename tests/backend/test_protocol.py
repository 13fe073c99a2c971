"""The endpoints Label Studio 1.23 calls, replayed from recorded requests where we have them."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time

import cv2
import numpy as np
import pytest

from backend.app import create_app
from clicksmith.labelstudio.results import rle_to_mask
from clicksmith.settings import load_settings
from tests.backend.ls import FIXTURES, LABEL_CONFIG, fixture

needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"recorded Label Studio requests not found at {FIXTURES}"
)


def test_health_answers_at_once_while_the_model_loads(disk):
    release = threading.Event()

    def slow_loader(settings):
        release.wait(20)
        from cdnet import load_predictor

        return load_predictor(threads=1)

    app = create_app(load_settings(env={}), predictor_loader=slow_loader)
    client = app.test_client()
    start = time.perf_counter()
    for path in ("/health", "/"):
        r = client.get(path)
        assert r.status_code == 200
        assert r.json["status"] == "UP" and r.json["model_state"] == "loading"
    assert time.perf_counter() - start < 0.5
    release.set()
    assert app.extensions["clicksmith"].model.wait(60)
    assert client.get("/health").json["model_state"] == "ready"


@needs_fixtures
def test_recorded_setup_health_and_versions(client, predictor):
    setup = fixture("setup.json")
    r = client.post(setup["path"], json=setup["body"], headers=setup["headers"])
    assert r.status_code == 200
    assert r.json["model_version"] == predictor.model_version
    assert client.get(fixture("health.json")["path"]).json["status"] == "UP"
    versions = client.get(fixture("versions.json")["path"])
    assert versions.status_code == 200
    assert versions.json["current"] == predictor.model_version
    assert predictor.model_version in versions.json["versions"]


@needs_fixtures
def test_recorded_batch_predict_answers_each_task(client):
    """Retrieve Predictions as recorded: two tasks whose images this backend may not fetch
    (no LABEL_STUDIO_URL, a host not allowed): one entry per task, each empty, so Label Studio
    stores nothing and asks again next time (tests/backend/test_retrieve.py: with images)."""
    batch = fixture("predict-batch.json")
    r = client.post(batch["path"], json=batch["body"], headers=batch["headers"])
    assert r.status_code == 200 and r.json == {"results": [[], []]}


class _FakeLabelStudio(http.server.BaseHTTPRequestHandler):
    """Serves one PNG at /static/images/logo.png and records the Authorization headers."""

    png = b""
    access = ""
    seen: list = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.path != "/static/images/logo.png":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.png)))
        self.end_headers()
        self.wfile.write(self.png)

    def do_POST(self):  # noqa: N802
        # personal access token exchange: POST /api/token/refresh/ {"refresh": <PAT>}
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        type(self).seen.append((self.path, body.get("refresh")))
        answer = json.dumps({"access": type(self).access}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_ls():
    img = np.zeros((80, 100, 3), np.uint8)  # the recorded task's image is 100x80
    cv2.rectangle(img, (5, 10), (30, 40), (255, 255, 255), -1)
    _FakeLabelStudio.png = cv2.imencode(".png", img)[1].tobytes()
    _FakeLabelStudio.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeLabelStudio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", img
    server.shutdown()
    server.server_close()


@needs_fixtures
def test_recorded_interactive_predict_downloads_from_label_studio(make_app, fake_ls, predictor):
    url, img = fake_ls
    recorded = fixture("predict-interactive.json")
    body = recorded["body"]
    body["tasks"][0]["data"]["image"] = body["tasks"][0]["data"]["image"].replace(
        "http://127.0.0.1:18080", url
    )
    # without LABEL_STUDIO_URL the host is not trusted
    r = make_app().test_client().post("/predict", json=body)
    assert r.status_code == 400 and "refusing" in r.json["error"]
    assert _FakeLabelStudio.seen == []

    client = make_app(label_studio_url=url, label_studio_api_key="legacy-token-123").test_client()
    r = client.post(recorded["path"], json=body, headers=recorded["headers"])
    assert r.status_code == 200, r.json
    (prediction,) = r.json["results"]
    (item,) = prediction["result"]
    assert (item["from_name"], item["to_name"], item["type"]) == ("tag", "image", "brushlabels")
    assert item["value"]["brushlabels"] == ["obj"]
    assert (item["original_width"], item["original_height"]) == (100, 80)
    mask = rle_to_mask(item["value"]["rle"], 80, 100)
    from cdnet import Click

    assert np.array_equal(mask, predictor.predict(img, [Click(16.0, 10.0)]).mask)
    assert _FakeLabelStudio.seen == [("/static/images/logo.png", "Token legacy-token-123")]
    # the second click on the same image comes from the cache, not from Label Studio
    body["params"]["context"]["result"][0]["value"]["x"] = 20
    assert client.post("/predict", json=body).status_code == 200
    assert len(_FakeLabelStudio.seen) == 1


def test_metrics_exposition(client, disk):
    client.get("/health")
    client.get("/health")
    client.post("/setup", json={"schema": LABEL_CONFIG})
    client.get("/nope")
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'^clicksmith_requests_total\{endpoint="/health",method="GET",'
                     r'status="200",pid="\d+"\} 2$', text, re.M)
    assert re.search(r'^clicksmith_requests_total\{endpoint="unmatched",method="GET",'
                     r'status="404"', text, re.M)
    buckets = [int(v) for v in re.findall(
        r'^clicksmith_request_duration_seconds_bucket\{endpoint="/health",le="[^"]+",'
        r'pid="\d+"\} (\d+)$', text, re.M)]
    assert buckets == sorted(buckets) and buckets[-1] == 2  # cumulative, +Inf = count
    count = re.search(r'^clicksmith_request_duration_seconds_count\{endpoint="/health",'
                      r'pid="\d+"\} (\d+)$', text, re.M)
    assert count and int(count.group(1)) == 2
    assert re.search(r'^clicksmith_model_info\{model_version="cdnet-[^"]+",state="ready"',
                     text, re.M)
    for line in text.splitlines():  # every sample line is "name{labels} value"
        if line and not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+-]+', line), line


def test_personal_access_token_is_exchanged_for_an_access_token(make_app, fake_ls, disk):
    jwt = pytest.importorskip("jwt")
    url, _ = fake_ls
    pat = jwt.encode({"token_type": "refresh", "exp": int(time.time()) + 3600}, "k" * 32, "HS256")
    access = jwt.encode({"token_type": "access", "exp": int(time.time()) + 300}, "k" * 32, "HS256")
    _FakeLabelStudio.access = access
    client = make_app(label_studio_url=url, label_studio_api_key=pat).test_client()
    from tests.backend.ls import keypoint, predict_body

    body = predict_body(f"{url}/static/images/logo.png", [keypoint(50, 50, 100, 80)])
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.json
    assert _FakeLabelStudio.seen == [
        ("/api/token/refresh/", pat),
        ("/static/images/logo.png", f"Bearer {access}"),
    ]
