"""Every bad input gets a 4xx JSON answer with a reason, never a 500 or an HTML traceback."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.backend.ls import LABEL_CONFIG, brush, keypoint, predict_body, rectangle

H, W = 72, 96


def refused(response, status: int, *words: str) -> str:
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.is_json, response.data[:300]
    message = response.json["error"]
    assert response.json["status"] == status
    assert "Traceback" not in response.get_data(as_text=True)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_malformed_json(client):
    r = client.post("/predict", data=b"{not json", content_type="application/json")
    refused(r, 400, "not valid JSON")
    refused(client.post("/setup", data=b"[1, 2]", content_type="application/json"), 400,
            "JSON object")
    refused(client.post("/webhook", data=b"", content_type="application/json"), 400)


def test_predict_without_tasks(client):
    refused(client.post("/predict", json={"label_config": LABEL_CONFIG}), 400, "tasks")


def test_setup_names_what_the_config_lacks(client):
    no_brush = '<View><Image name="image" value="$image"/><KeyPointLabels name="kp" ' \
               'toName="image"><Label value="A"/></KeyPointLabels></View>'
    refused(client.post("/setup", json={"project": "1.1", "schema": no_brush}), 400,
            "BrushLabels")
    no_prompt = '<View><Image name="image" value="$image"/><BrushLabels name="b" ' \
                'toName="image"><Label value="A"/></BrushLabels></View>'
    refused(client.post("/setup", json={"project": "1.1", "schema": no_prompt}), 400,
            "KeyPointLabels")
    refused(client.post("/setup", json={"project": "1.1", "schema": "<View><Image"}), 400,
            "not valid XML")
    refused(client.post("/setup", json={"project": "1.1"}), 400, "schema")
    no_image = '<View><Text name="t" value="$t"/></View>'
    refused(client.post("/setup", json={"schema": no_image}), 400, "Image")


def test_unknown_label_and_control(client, disk):
    path, _ = disk
    body = predict_body(path, [keypoint(50, 50, W, H, label="Giraffe")])
    refused(client.post("/predict", json=body), 400, "Giraffe")
    body = predict_body(path, [keypoint(50, 50, W, H, from_name="nope")])
    refused(client.post("/predict", json=body), 400, "nope")


@pytest.mark.parametrize("x,y", [(120.0, 50.0), (50.0, -3.0), ("a", 50.0), (None, 10.0)])
def test_click_outside_the_image(client, disk, x, y):
    path, _ = disk
    item = keypoint(50, 50, W, H)
    item["value"]["x"], item["value"]["y"] = x, y
    refused(client.post("/predict", json=predict_body(path, [item])), 400)


def test_bad_box_and_stroke(client, disk):
    path, _ = disk
    refused(client.post("/predict", json=predict_body(path, [rectangle(90, 10, 30, 20, W, H)])),
            400, "rectangle")
    small = brush(np.ones((10, 10), bool))
    refused(client.post("/predict", json=predict_body(path, [small])), 400, "10x10")
    broken = brush(np.ones((H, W), bool))
    broken["value"]["rle"] = [1, 2, 3]
    refused(client.post("/predict", json=predict_body(path, [broken])), 400, "RLE")
    rotated = keypoint(50, 50, W, H)
    rotated["image_rotation"] = 90
    refused(client.post("/predict", json=predict_body(path, [rotated])), 400, "rotat")


def test_missing_unreadable_and_refused_images(client, tmp_path):
    ctx = [keypoint(50, 50, W, H)]
    refused(client.post("/predict", json=predict_body(str(tmp_path / "gone.png"), ctx)), 400,
            "gone.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a png")
    refused(client.post("/predict", json=predict_body(str(junk), ctx)), 400, "not a readable")
    refused(client.post("/predict", json=predict_body("http://169.254.169.254/x.png", ctx)), 400,
            "refusing", "169.254.169.254")
    refused(client.post("/predict", json=predict_body("/data/upload/1/a.png", ctx)), 400,
            "LABEL_STUDIO_URL")
    refused(client.post("/predict", json=predict_body("/etc/hostname", ctx)), 400,
            "refusing", "LOCAL_IMAGE_ROOTS")
    body = predict_body("x", ctx)
    body["tasks"][0]["data"] = {"other": "x"}
    refused(client.post("/predict", json=body), 400, "image")


def test_image_over_the_pixel_limit(make_app, disk):
    path, _ = disk
    client = make_app(max_image_pixels=1000).test_client()
    refused(client.post("/predict", json=predict_body(path, [keypoint(50, 50, W, H)])), 413,
            "6912", "limit")


def test_body_over_the_size_limit(make_app, disk):
    path, _ = disk
    client = make_app(max_request_bytes=2000).test_client()
    body = predict_body(path, [keypoint(50, 50, W, H)])
    body["tasks"][0]["annotations"] = [{"result": [brush(np.eye(H, W, dtype=bool))] * 10}]
    refused(client.post("/predict", json=body), 413, "2000")


def test_basic_auth_on_setup_and_predict_only(make_app, disk):
    path, _ = disk
    client = make_app(basic_auth_user="ls", basic_auth_pass="s3cret").test_client()
    body = predict_body(path, [keypoint(50, 50, W, H)])
    r = refused(client.post("/predict", json=body), 401, "basic auth")
    assert r
    bad = {"Authorization": "Basic " + base64.b64encode(b"ls:wrong").decode()}
    refused(client.post("/setup", json={"schema": LABEL_CONFIG}, headers=bad), 401, "wrong")
    good = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
    assert client.post("/setup", json={"schema": LABEL_CONFIG}, headers=good).status_code == 200
    assert client.post("/predict", json=body, headers=good).status_code == 200
    assert client.get("/health").status_code == 200  # stays open for Label Studio's check


def test_webhook_secret(make_app):
    client = make_app(webhook_secret="hush").test_client()
    body = {"action": "PROJECT_UPDATED", "project": {"id": 1}}
    refused(client.post("/webhook", json=body), 401, "X-Clicksmith-Secret")
    refused(client.post("/webhook", json=body, headers={"X-Clicksmith-Secret": "no"}), 401)
    ok = client.post("/webhook", json=body, headers={"X-Clicksmith-Secret": "hush"})
    assert ok.status_code == 200


def test_unknown_route_and_method(client):
    refused(client.get("/nothing-here"), 404)
    refused(client.get("/predict"), 405)


def test_interactive_request_with_several_tasks(client, disk):
    path, _ = disk
    body = predict_body(path, [keypoint(50, 50, W, H)])
    body["tasks"] = body["tasks"] * 2
    refused(client.post("/predict", json=body), 400, "one task")


def test_model_that_failed_to_load_answers_503(disk):
    from backend.app import create_app
    from clicksmith.settings import load_settings

    def broken(settings):
        raise FileNotFoundError("weights.pt is missing")

    app = create_app(load_settings(env={}), predictor_loader=broken)
    assert app.extensions["clicksmith"].model.wait(10)
    client = app.test_client()
    r = client.get("/health")  # degraded: Label Studio shows it as not connected, with why
    health = r.json
    assert r.status_code == 503 and "weights.pt" in r.status
    assert health["status"] == "DEGRADED" and health["model_state"] == "error"
    assert "weights.pt" in health["model_error"] and "weights.pt" in health["error"]
    refused(client.post("/predict", json=predict_body(disk[0], [keypoint(50, 50, W, H)])), 503,
            "could not be loaded")


def test_an_internal_failure_is_a_json_500_without_traceback(disk, image_roots):
    from backend.app import create_app
    from clicksmith.settings import load_settings

    class Exploding:
        model_version = "exploding"

        def prepare(self, image):
            raise RuntimeError("secret internals /etc/somewhere")

    app = create_app(load_settings(env={}, local_image_roots=image_roots),
                     predictor_loader=lambda s: Exploding())
    assert app.extensions["clicksmith"].model.wait(10)
    r = app.test_client().post("/predict", json=predict_body(disk[0], [keypoint(50, 50, W, H)]))
    message = refused(r, 500, "internal error", "RuntimeError")
    assert "secret internals" not in message


# --- what Label Studio shows, and what the backend's log says ---------------------------------
# Label Studio 1.23 (label_studio/ml/api_connector.py, MLApi._request) calls raise_for_status()
# and shows str() of the requests HTTPError: the status line's reason phrase, never the body.


def label_studio_message(url: str, body: dict) -> str:
    """What Label Studio 1.23 makes of our answer: MLApi._request, line for line."""
    import requests

    response = None
    try:
        response = requests.post(url, json=body, timeout=60)
        response.raise_for_status()
    except requests.exceptions.RequestException as exc:
        return str(exc)
    return response.json().get("error", "")


@pytest.fixture
def served(make_app, disk):
    """The app behind a real HTTP server on 127.0.0.1 (werkzeug's, threaded)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def test_label_studio_shows_the_reason_of_a_refused_setup_and_predict(served, tmp_path):
    no_prompt = '<View><Image name="image" value="$image"/><BrushLabels name="b" ' \
                'toName="image"><Label value="A"/></BrushLabels></View>'
    shown = label_studio_message(f"{served}/setup", {"project": "1.1", "schema": no_prompt})
    assert shown.startswith("400 Client Error: ") and "BAD REQUEST" not in shown, shown
    assert "KeyPointLabels" in shown and shown.endswith(f"for url: {served}/setup"), shown

    body = predict_body(str(tmp_path / "gone.png"), [keypoint(50, 50, W, H)], task_id=31)
    shown = label_studio_message(f"{served}/predict", body)
    assert shown.startswith("400 Client Error: ") and "gone.png" in shown, shown

    body = predict_body("http://169.254.169.254/x.png", [keypoint(50, 50, W, H)])
    shown = label_studio_message(f"{served}/predict", body)
    assert "refusing" in shown and "169.254.169.254" in shown, shown


def test_the_body_keeps_the_whole_message_and_the_status_line_its_reason(client):
    from backend.errors import reason_phrase

    no_prompt = '<View><Image name="image" value="$image"/><BrushLabels name="b" ' \
                'toName="image"><Label value="A"/></BrushLabels></View>'
    r = client.post("/setup", json={"project": "1.1", "schema": no_prompt})
    message = refused(r, 400, "<KeyPointLabels>")
    assert r.status == f"400 {reason_phrase(message)}"
    assert "KeyPointLabels" in r.status and "<" not in r.status  # shown as HTML: no tags
    assert set(r.json) == {"error", "status"}


def test_reason_phrases_are_what_an_http_status_line_may_hold():
    from gunicorn.http.wsgi import STATUS_RE

    from backend.errors import REASON_LIMIT, reason_phrase

    for message in ["plain", "two\nlines\r\n and\ttabs", "bounds 0…1 → größer — “quoted”",
                    "x" * 5000, "", "\x00\x1b[31m"]:
        phrase = reason_phrase(message)
        assert STATUS_RE.fullmatch(f"400 {phrase}"), phrase
        assert phrase.isascii() and phrase.isprintable() and 0 < len(phrase) <= REASON_LIMIT
    assert reason_phrase("two\nlines") == "two lines"
    assert reason_phrase("bounds 0…1 → 2") == "bounds 0...1 -> 2"
    assert reason_phrase("x" * 5000).endswith("...")


def test_reason_phrases_hold_no_html_tag():
    """Label Studio's Connect Model dialog shows the text as sanitized HTML: a "<Tag>" vanished
    from it ("no  or  control points"), so the phrase names the tag without brackets."""
    from backend.errors import reason_phrase

    assert reason_phrase("no <KeyPointLabels> or <RectangleLabels> control points") == \
        "no KeyPointLabels or RectangleLabels control points"
    assert reason_phrase("no <Image/> in </View>") == "no Image in View"
    assert reason_phrase("set KEY=<label studio host> or <!x") == \
        "set KEY=< label studio host> or < !x"
    assert reason_phrase("0 < x <= 5, y > 2 -> ok") == "0 < x <= 5, y > 2 -> ok"
    assert reason_phrase("≤ 5") == "<= 5"


def test_every_refusal_is_logged_once_with_endpoint_and_task(client, make_app, disk, caplog):
    path, _ = disk
    caplog.set_level("WARNING", logger="backend.errors")
    body = predict_body(path, [keypoint(50, 50, W, H, label="Giraffe")], task_id=4711)
    refused(client.post("/predict", json=body), 400, "Giraffe")
    [record] = caplog.records
    assert record.levelname == "WARNING"
    line = record.getMessage()
    assert "POST /predict" in line and "task 4711" in line and "Giraffe" in line, line

    caplog.clear()
    refused(client.post("/setup", json={"schema": "<View><Image"}), 400)
    [record] = caplog.records
    line = record.getMessage()
    assert "POST /setup" in line and "not valid XML" in line and "task" not in line, line

    caplog.clear()
    small = make_app(max_request_bytes=2000).test_client()
    big = predict_body(path, [keypoint(50, 50, W, H)])
    big["tasks"][0]["annotations"] = [{"result": [brush(np.eye(H, W, dtype=bool))] * 10}]
    refused(small.post("/predict", json=big), 413)
    [record] = caplog.records
    assert "POST /predict" in record.getMessage() and "2000" in record.getMessage()

    caplog.clear()
    refused(client.post("/webhook", json={"task": {"id": 9}}), 400, "action")
    [record] = caplog.records
    assert "POST /webhook (task 9)" in record.getMessage() and "\n" not in record.getMessage()


def test_model_unavailable_is_logged_and_an_internal_error_once_with_its_traceback(
        disk, image_roots, caplog):
    from backend.app import create_app
    from clicksmith.settings import load_settings

    def broken(settings):
        raise FileNotFoundError("weights.pt is missing")

    app = create_app(load_settings(env={}), predictor_loader=broken)
    assert app.extensions["clicksmith"].model.wait(10)
    caplog.set_level("WARNING")
    body = predict_body(disk[0], [keypoint(50, 50, W, H)], task_id=8)
    refused(app.test_client().post("/predict", json=body), 503)
    lines = [r.getMessage() for r in caplog.records if r.name == "backend.errors"]
    assert len(lines) == 1 and "task 8" in lines[0] and "could not be loaded" in lines[0]

    class Exploding:
        model_version = "exploding"

        def prepare(self, image):
            raise RuntimeError("secret internals")

    app = create_app(load_settings(env={}, local_image_roots=image_roots),
                     predictor_loader=lambda s: Exploding())
    assert app.extensions["clicksmith"].model.wait(10)
    caplog.clear()
    refused(app.test_client().post("/predict", json=body), 500)
    records = [r for r in caplog.records if r.name == "backend.errors"]
    assert [r.levelname for r in records] == ["ERROR"] and records[0].exc_info
