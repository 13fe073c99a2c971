"""Telemetry through the HTTP backend: clicks on /predict, the annotation on /webhook, the real
Redis at 127.0.0.1:6379 (db 15), the Prometheus histograms on /metrics."""

from __future__ import annotations

import uuid

import pytest

from clicksmith import telemetry as tm
from tests.backend.conftest import REDIS_URL
from tests.backend.ls import brush, keypoint, predict_body, rectangle

H, W = 72, 96


@pytest.fixture
def queue(redis_db):
    from rq import Queue

    q = Queue(f"clicksmith-test-{uuid.uuid4().hex[:8]}", connection=redis_db)
    yield q
    q.delete(delete_jobs=True)


@pytest.fixture
def project(redis_db, project_id):
    """The numeric project of `project_id` ("<id>.<ts>"); its telemetry keys go afterwards."""
    pid = int(project_id.split(".")[0])
    yield pid
    for key in redis_db.scan_iter(f"{tm.PREFIX}:{pid}:*"):
        redis_db.delete(key)


def annotation_event(project: int, task: int, ann: int, mask_item: dict,
                     action: str = "ANNOTATION_CREATED") -> dict:
    annotation = {"id": ann, "task": task, "project": project, "was_cancelled": False,
                  "result": [mask_item], "created_at": None, "updated_at": None}
    return {"action": action, "annotation": annotation, "task": {"id": task},
            "project": {"id": project}}


def metric_lines(client, name: str) -> list[str]:
    return [line for line in client.get("/metrics").text.splitlines()
            if line.startswith(f"clicksmith_{name}")]


def test_clicks_then_the_annotation_webhook_are_counted_once(make_app, disk, queue, redis_db,
                                                             project_id, project):
    path, img = disk
    app = make_app(redis_url=REDIS_URL, queue_name=queue.name)
    client = app.test_client()
    version = app.extensions["clicksmith"].model.model_version
    # an annotator's session on task 3: three clicks (auto-accept: each alone), a box
    for i, (x, y, positive) in enumerate([(50, 50, True), (62, 40, True), (20, 20, False)]):
        body = predict_body(path, [keypoint(x, y, W, H, positive)], task_id=3,
                            project=project_id)
        r = client.post("/predict", json=body)
        assert r.status_code == 200, r.json
        if i == 0:
            answer = r.json["results"][0]["result"][0]
    r = client.post("/predict", json=predict_body(
        path, [rectangle(20, 10, 60, 80, W, H)], task_id=3, project=project_id))
    assert r.status_code == 200, r.json
    # a click on another task that is never submitted
    r = client.post("/predict", json=predict_body(path, [keypoint(50, 50, W, H)], task_id=4,
                                                  project=project_id))
    assert r.status_code == 200
    store = app.extensions["clicksmith"].telemetry
    # the box started a new object (a region of its own): two on task 3, one on task 4
    assert store.pending(project) == {"objects": 3, "tasks": 2}

    # a region Label Studio stored under an id that is none of ours: matched by its label, it
    # finishes both of task 3's objects as one (which made it cannot be told)
    submitted = {**answer, "id": "region-1", "from_name": "mask", "to_name": "image"}
    event = annotation_event(project, 3, 501, submitted)
    for _ in range(3):  # the webhook and two replays of it
        r = client.post("/webhook", json=event)
        assert r.status_code == 201 and r.json["status"] == "queued"
    assert len(queue.get_jobs()) == 3  # the corrections job is queued each time, as before

    [record] = store.objects(project)
    assert (record.task, record.annotation, record.label) == (3, 501, "Object")
    assert (record.clicks, record.tools, record.model_version) == (4, 0, version)
    assert record.regions == ["region-1"] and record.seconds >= 0
    assert store.pending(project) == {"objects": 1, "tasks": 1}
    labels = f'model_version="{version}"'
    count = [line for line in metric_lines(client, "object_clicks_count") if labels in line]
    assert len(count) == 1 and count[0].endswith(" 1")
    buckets = {line.split('le="')[1].split('"')[0]: int(line.rsplit(" ", 1)[1])
               for line in metric_lines(client, "object_clicks_bucket") if labels in line}
    assert (buckets["3.0"], buckets["4.0"], buckets["+Inf"]) == (0, 1, 1)
    assert any(labels in line for line in metric_lines(client, "object_seconds_count"))
    assert [line.rsplit(" ", 1)[1] for line in metric_lines(client, "telemetry_objects_total")
            ] == ["1"]

    report = tm.project_report(app.extensions["clicksmith"].settings, project)
    [row] = report["versions"]
    assert (row["model_version"], row["objects"], row["clicks_median"]) == (version, 1, 4.0)


def test_a_webhook_without_clicks_and_a_click_without_redis_telemetry(make_app, disk, queue,
                                                                       redis_db, project_id,
                                                                       project, monkeypatch):
    path, img = disk
    app = make_app(redis_url=REDIS_URL, queue_name=queue.name)
    client = app.test_client()
    # an annotation nobody clicked through this backend: queued for corrections, no record
    import numpy as np

    mask = np.zeros((H, W), bool)
    mask[10:30, 10:30] = True
    r = client.post("/webhook", json=annotation_event(project, 9, 600, brush(mask)))
    assert r.status_code == 201
    store = app.extensions["clicksmith"].telemetry
    assert store.objects(project) == []
    # telemetry's Redis broken: clicks and webhooks are answered as before, a metric counts it
    import redis

    broken = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=0.2,
                                  socket_connect_timeout=0.2)
    monkeypatch.setattr(store, "_conn", broken)
    r = client.post("/predict", json=predict_body(path, [keypoint(50, 50, W, H)], task_id=9,
                                                  project=project_id))
    assert r.status_code == 200 and r.json["results"][0]["result"]
    r = client.post("/webhook", json=annotation_event(project, 9, 601, brush(mask)))
    assert r.status_code == 201
    failures = {line.split('op="')[1].split('"')[0]: line.rsplit(" ", 1)[1]
                for line in metric_lines(client, "telemetry_failures_total")}
    assert failures == {"record": "1", "finish": "1"}


def test_without_redis_telemetry_is_off_and_clicks_work(client, disk):
    path, _ = disk
    backend = client.application.extensions["clicksmith"]
    assert not backend.telemetry.enabled
    r = client.post("/predict", json=predict_body(path, [keypoint(50, 50, W, H)]))
    assert r.status_code == 200
    assert metric_lines(client, "object_clicks") == []


@pytest.mark.parametrize("auto_accept", [True, False], ids=["auto-accept-on", "auto-accept-off"])
def test_two_objects_of_one_label_in_one_task_are_two_records(make_app, queue, redis_db,
                                                              project_id, project, tmp_path_factory,
                                                              auto_accept):
    """The `pair` scene (two oranges, one label): a click on the first, a refining click on it,
    a click on the second (a new session and region, backend.pipeline.next_object), then one
    annotation holding both regions under the ids the answers carried. Each orange is its own
    record with its own clicks (one record of 3 clicks before), and a replay counts nothing."""
    import shutil

    from tests.backend import test_instances as scene

    path = tmp_path_factory.mktemp("pair") / "pair.png"
    shutil.copyfile(scene.FIXTURES / "images" / "pair.png", path)
    app = make_app(redis_url=REDIS_URL, queue_name=queue.name)
    client = app.test_client()
    (ay, ax), (by, bx) = scene.A_CENTRE, scene.B_CENTRE
    a1, a2, b1 = scene.click(ay, ax), scene.click(ay - 10, ax + 8), scene.click(by, bx)
    # Auto-Accept on: each click alone; off: the refinement holds both of the first object's
    # clicks, then ✓ removes them and the second object's click comes alone
    contexts = [[a1], [a2], [b1]] if auto_accept else [[a1], [a1, a2], [b1]]
    answers = []
    for context in contexts:
        r = client.post("/predict", json=predict_body(str(path), context, task_id=7,
                                                      project=project_id))
        assert r.status_code == 200, r.json
        (item,) = [i for i in r.json["results"][0]["result"] if i["type"] == "brushlabels"]
        answers.append(item)
    first, refined, second = answers
    assert first["id"] == refined["id"] != second["id"]
    store = app.extensions["clicksmith"].telemetry
    assert store.pending(project) == {"objects": 2, "tasks": 1}

    event = {"action": "ANNOTATION_CREATED", "project": {"id": project}, "task": {"id": 7},
             "annotation": {"id": 700, "task": 7, "project": project, "was_cancelled": False,
                            "result": [refined, second], "created_at": None,
                            "updated_at": None}}
    for _ in range(3):  # the webhook and two replays of it
        r = client.post("/webhook", json=event)
        assert r.status_code == 201
    records = {r.region: r for r in store.objects(project)}
    assert set(records) == {first["id"], second["id"]}
    assert (records[first["id"]].clicks, records[first["id"]].tools) == (2, 0)
    assert (records[second["id"]].clicks, records[second["id"]].tools) == (1, 0)
    assert {(r.task, r.annotation, r.label) for r in records.values()} == {(7, 700, "Object")}
    assert records[first["id"]].regions == [first["id"]]
    assert store.pending(project) == {"objects": 0, "tasks": 0}
    version = app.extensions["clicksmith"].model.model_version
    count = [line for line in metric_lines(client, "object_clicks_count")
             if f'model_version="{version}"' in line]
    assert len(count) == 1 and count[0].endswith(" 2")  # two objects observed, once each


def test_a_rejected_suggestion_is_counted_as_discarded_work(make_app, disk, queue, redis_db,
                                                            project_id, project):
    """Issue 28: a click (its answer accepted, by its id) and a box (a session of its own,
    rejected with ✗: not in the annotation). The box's session is finished as a discarded
    record with its click and version: not in the object histograms, counted by
    clicksmith_discarded_objects_total / clicksmith_discarded_clicks_total, and in the report."""
    path, _ = disk
    app = make_app(redis_url=REDIS_URL, queue_name=queue.name)
    client = app.test_client()
    version = app.extensions["clicksmith"].model.model_version
    r = client.post("/predict", json=predict_body(path, [keypoint(50, 50, W, H)], task_id=3,
                                                  project=project_id))
    assert r.status_code == 200, r.json
    answer = r.json["results"][0]["result"][0]
    r = client.post("/predict", json=predict_body(
        path, [rectangle(20, 10, 60, 80, W, H)], task_id=3, project=project_id))
    assert r.status_code == 200, r.json
    store = app.extensions["clicksmith"].telemetry
    assert store.pending(project) == {"objects": 2, "tasks": 1}

    event = annotation_event(project, 3, 502, {**answer, "from_name": "mask",
                                               "to_name": "image"})
    for _ in range(3):  # the webhook and two replays of it
        assert client.post("/webhook", json=event).status_code == 201
    records = {r.discarded: r for r in store.objects(project)}
    assert set(records) == {False, True}
    assert (records[False].region, records[False].clicks) == (answer["id"], 1)
    assert records[True].region not in ("", answer["id"])
    assert (records[True].clicks, records[True].model_version) == (1, version)
    assert store.pending(project) == {"objects": 0, "tasks": 0}
    labels = f'model_version="{version}"'
    count = [line for line in metric_lines(client, "object_clicks_count") if labels in line]
    assert len(count) == 1 and count[0].endswith(" 1")  # the accepted object only
    for name in ("discarded_objects_total", "discarded_clicks_total"):
        [line] = [line for line in metric_lines(client, name) if labels in line]
        assert line.endswith(" 1"), line
    outcomes = {line.split('outcome="')[1].split('"')[0]: line.rsplit(" ", 1)[1]
                for line in metric_lines(client, "telemetry_objects_total")}
    assert outcomes == {"finished": "1", "discarded": "1"}

    report = tm.project_report(app.extensions["clicksmith"].settings, project)
    [row] = report["versions"]
    assert (row["objects"], row["discarded"], row["discarded_clicks"]) == (1, 1, 1)
    assert row["clicks_per_object_with_discarded"] == 2.0
