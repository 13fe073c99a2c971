"""Webhook → RQ queue and progressive sessions shared through the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from backend.sessions import KEY_PREFIX, session_key
from cdnet import Click
from clicksmith.labelstudio.results import rle_to_mask
from tests.backend.conftest import REDIS_URL
from tests.backend.ls import FIXTURES, fixture, keypoint, predict_body

H, W = 72, 96


@pytest.fixture
def queue(redis_db):
    from rq import Queue

    name = f"clicksmith-test-{uuid.uuid4().hex[:8]}"
    q = Queue(name, connection=redis_db)
    yield q
    q.delete(delete_jobs=True)


def test_annotation_events_are_queued_for_review(make_app, queue, redis_db):
    client = make_app(redis_url=REDIS_URL, queue_name=queue.name, job_retries=2).test_client()
    if FIXTURES.is_dir():
        created = fixture("webhook-annotation_created.json")["body"]
    else:
        created = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1}, "task": {"id": 1},
                   "project": {"id": 1}}
    deleted = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 3}], "project": {"id": 1}}
    start = time.perf_counter()
    for body in (created, deleted):
        r = client.post("/webhook", json=body)
        assert r.status_code == 201, r.json
        assert r.json["status"] == "queued"
    assert time.perf_counter() - start < 1.0  # Label Studio waits 1 s and never retries
    jobs = queue.get_jobs()
    assert [j.func_name for j in jobs] == ["review.corrections.handle_event"] * 2
    assert jobs[0].args == (created,) and jobs[1].args == (deleted,)
    assert jobs[0].retries_left == 2


def test_training_requests_queue_a_retrain(make_app, queue):
    client = make_app(redis_url=REDIS_URL, queue_name=queue.name).test_client()
    if FIXTURES.is_dir():
        start = fixture("webhook-start_training.json")["body"]
    else:
        start = {"action": "START_TRAINING", "project": {"id": 1}}
    assert client.post("/webhook", json=start).status_code == 201
    assert client.post("/train", json={"project": "7.1795626672"}).status_code == 201
    assert client.post("/train", json={"project": "x"}).status_code == 400
    jobs = queue.get_jobs()
    assert [(j.func_name, j.args) for j in jobs] == [
        ("review.retrain.retrain_job", (start["project"]["id"],)),
        ("review.retrain.retrain_job", (7,)),
    ]


def test_other_actions_are_acknowledged_and_ignored(make_app, queue):
    client = make_app(redis_url=REDIS_URL, queue_name=queue.name).test_client()
    if FIXTURES.is_dir():
        updated = fixture("webhook-project_updated.json")["body"]
    else:
        updated = {"action": "PROJECT_UPDATED", "project": {"id": 1}}
    for body in (updated, {"action": "TASKS_DELETED", "tasks": [{"id": 1}]},
                 {"action": "SOMETHING_NEW_IN_2027"}):
        r = client.post("/webhook", json=body)
        assert r.status_code == 200 and r.json["status"] == "ignored"
    assert queue.count == 0


def test_without_redis_events_are_acknowledged_not_queued(client):
    r = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}})
    assert r.status_code == 200 and "REDIS_URL" in r.json["reason"]
    assert client.post("/train", json={"project": 1}).json["status"] == "ignored"


def test_unreachable_redis_is_a_503_not_a_500(make_app):
    client = make_app(redis_url="redis://127.0.0.1:1/0").test_client()
    r = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}})
    assert r.status_code == 503 and "Redis" in r.json["error"]


def test_progressive_session_continues_on_another_worker(make_app, disk, predictor, redis_db,
                                                         project_id):
    """Two apps stand for two gunicorn workers: each click lands on the other one."""
    path, img = disk
    workers = [make_app(redis_url=REDIS_URL, session_ttl_seconds=120).test_client()
               for _ in range(2)]
    pts = [(50, 50, True), (62, 40, True), (20, 20, False)]
    masks = []
    for i, (x, y, positive) in enumerate(pts):  # auto-accept: each click arrives alone
        body = predict_body(path, [keypoint(x, y, W, H, positive=positive)], project=project_id)
        r = workers[i % 2].post("/predict", json=body)
        assert r.status_code == 200, r.json
        item = r.json["results"][0]["result"][0]
        masks.append(rle_to_mask(item["value"]["rle"], H, W))
    s = predictor.session(img)
    want = [s.add_click(Click(y * H / 100, x * W / 100, p)).mask.copy() for x, y, p in pts]
    for got, expected in zip(masks, want, strict=True):
        assert np.array_equal(got, expected)
    key = KEY_PREFIX + session_key(project_id, 1, "image", "mask", "Object")
    assert redis_db.exists(key)
    assert 0 < redis_db.ttl(key) <= 120
    assert set(redis_db.hkeys(key)) == {b"meta", b"state", b"base"}
    # a deleted click, seen by the first worker: recomputed from the clicks that remain
    ctx = [keypoint(50, 50, W, H), keypoint(20, 20, W, H, positive=False)]
    r = workers[0].post("/predict", json=predict_body(path, ctx, project=project_id))
    item = r.json["results"][0]["result"][0]
    want = predictor.predict(img, [Click(36, 48), Click(14.4, 19.2, False)]).mask
    assert np.array_equal(rle_to_mask(item["value"]["rle"], H, W), want)
