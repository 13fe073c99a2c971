"""Label Studio's own pre-labelling paths: Retrieve Predictions (/predict with tasks and no
context) and GET /versions, against the real predictor.

What Label Studio 1.23 does with the answer (ml/models.py `_get_predictions_from_ml_backend`):
it pairs `results` with the tasks by position and stores nothing when the counts differ; an
entry may be a list of predictions, so `[]` stores none for that task. Each answered task must
get the very pre-label the RQ job writes (clicksmith.prelabel.task_prediction).
"""

from __future__ import annotations

import logging
import uuid

import cv2
import numpy as np
import pytest

from clicksmith import registry
from clicksmith.labelstudio.config import parse_config
from clicksmith.labelstudio.results import rle_to_mask
from clicksmith.prelabel import SourceKind, choose_source, task_prediction
from clicksmith.settings import load_settings
from tests.backend.conftest import REDIS_URL
from tests.backend.ls import LABEL_CONFIG, brush, rectangle, task

H, W = 72, 96
CONFIG = parse_config(LABEL_CONFIG, interactive=False)


def scene(folder, name: str, centres: list[tuple[int, int]],
          seed: int = 0) -> tuple[str, np.ndarray]:
    """A dark textured image with bright disks at `centres` (x, y), saved as PNG."""
    rng = np.random.default_rng(seed)
    img = rng.integers(10, 50, (H, W, 3), dtype=np.uint8)
    for x, y in centres:
        cv2.circle(img, (x, y), 13, (235, 225, 210), -1)
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), img[:, :, ::-1])
    return str(path), img


def retrieve_body(tasks: list[dict], project: str | None = None) -> dict:
    """What Label Studio 1.23 sends for Retrieve Predictions (../shared/fixtures/
    label-studio-1.23.2/predict-batch.json): several tasks, `params.context` null."""
    return {
        "tasks": tasks,
        "project": project or f"{uuid.uuid4().int % 10**6}.1795626672",
        "label_config": LABEL_CONFIG,
        "params": {"login": None, "password": None, "context": None},
    }


def mask_of(prediction: dict) -> np.ndarray:
    (item,) = prediction["result"]
    return rle_to_mask(item["value"]["rle"], item["original_height"], item["original_width"])


def same_prediction(answered: dict, direct: dict) -> None:
    """The HTTP answer is the pre-label function's answer (items differ only by their id)."""
    assert answered["score"] == pytest.approx(direct["score"], abs=1e-6)
    assert answered["model_version"] == direct["model_version"]
    (a,), (d,) = answered["result"], direct["result"]
    assert {k: v for k, v in a.items() if k not in ("id", "score")} == \
        {k: v for k, v in d.items() if k not in ("id", "score")}


def test_retrieve_answers_each_task_with_its_scored_prelabel(make_app, predictor, tmp_path):
    images = [scene(tmp_path, f"t{i}", [(30 + 18 * i, 30 + 4 * i)], seed=i) for i in range(3)]
    tasks = [task(path, task_id=11 + i) for i, (path, _) in enumerate(images)]
    r = make_app().test_client().post("/predict", json=retrieve_body(tasks))
    assert r.status_code == 200, r.json
    results = r.json["results"]
    assert len(results) == 3  # one per task, in task order
    for (_, img), the_task, answered in zip(images, tasks, results, strict=True):
        assert answered["model_version"] == predictor.model_version
        (item,) = answered["result"]
        assert (item["type"], item["from_name"], item["to_name"]) == ("brushlabels", "mask",
                                                                      "image")
        assert item["value"]["brushlabels"] == ["Object"]
        assert 0.0 < answered["score"] <= 1.0 and item["score"] == answered["score"]
        # the score is score_mask of the mask as delivered (mask_score's rule)
        mask = mask_of(answered)
        assert answered["score"] == pytest.approx(predictor.score_mask(img, mask), abs=1e-4)
        # the main object: the bright disk
        disk = img[:, :, 0] > 150
        assert (mask & disk).sum() / (mask | disk).sum() > 0.8
        same_prediction(answered, task_prediction(predictor, img, the_task, CONFIG))


def test_an_existing_brush_region_is_refined(make_app, predictor, tmp_path):
    path, img = scene(tmp_path, "two", [(28, 36), (70, 36)])
    rough = np.zeros((H, W), bool)
    rough[26:47, 58:80] = True  # a box-shaped brush stroke over the right disk
    annotated = task(path, task_id=21, annotations=[{
        "id": 5, "result": [brush(rough, label="Background")],
        "created_at": "2026-11-25T17:11:13Z", "updated_at": "2026-11-25T17:11:13Z"}])
    assert choose_source(annotated, CONFIG, predictor.model_version).kind is SourceKind.MASK
    r = make_app().test_client().post("/predict", json=retrieve_body([annotated]))
    assert r.status_code == 200, r.json
    (answered,) = r.json["results"]
    same_prediction(answered, task_prediction(predictor, img, annotated, CONFIG))
    # the region's own label, its object (the right disk), not the main-object guess
    assert answered["result"][0]["value"]["brushlabels"] == ["Background"]
    mask = mask_of(answered)
    assert mask[36, 70] and not mask[36, 28]


def test_a_box_gets_a_mask_inside_it(make_app, predictor, tmp_path):
    path, img = scene(tmp_path, "boxed", [(28, 36), (70, 36)], seed=3)
    # around the right disk: x 52..88, y 18..54 (percent of 96 x 72)
    box = rectangle(52 / W * 100, 18 / H * 100, 36 / W * 100, 36 / H * 100, W, H)
    boxed = task(path, task_id=31, annotations=[{"id": 6, "result": [box],
                                                  "updated_at": "2026-11-25T17:11:13Z"}])
    r = make_app().test_client().post("/predict", json=retrieve_body([boxed]))
    assert r.status_code == 200, r.json
    (answered,) = r.json["results"]
    mask = mask_of(answered)
    ys, xs = np.nonzero(mask)
    assert ys.size and xs.min() >= 52 - 1 and xs.max() <= 88 + 1
    assert ys.min() >= 18 - 1 and ys.max() <= 54 + 1
    assert mask[36, 70] and not mask[36, 28]
    same_prediction(answered, task_prediction(predictor, img, boxed, CONFIG))


def test_an_unfetchable_image_leaves_only_its_task_unanswered(make_app, predictor, tmp_path,
                                                              caplog):
    good = [scene(tmp_path, f"g{i}", [(40 + 10 * i, 36)], seed=i) for i in range(2)]
    tasks = [task(good[0][0], task_id=41),
             task(str(tmp_path / "missing.png"), task_id=42),
             task("http://example.invalid/c.png", task_id=43),
             task(good[1][0], task_id=44)]
    with caplog.at_level(logging.WARNING, logger="backend.service"):
        r = make_app().test_client().post("/predict", json=retrieve_body(tasks))
    assert r.status_code == 200, r.json
    results = r.json["results"]
    assert len(results) == 4
    # [] stores no prediction for a task (an empty `result` would be stored, and Label Studio
    # would never ask for that task again)
    assert results[1] == [] and results[2] == []
    for i, k in ((0, 0), (3, 1)):
        same_prediction(results[i], task_prediction(predictor, good[k][1], tasks[i], CONFIG))
    logged = caplog.text
    assert "task 42: no prediction" in logged and "task 43: no prediction" in logged
    assert "example.invalid" in logged


def test_a_config_without_a_brush_is_refused(client, disk):
    path, _ = disk
    body = retrieve_body([task(path)])
    body["label_config"] = ('<View><Image name="image" value="$image"/>'
                            '<KeyPointLabels name="kp" toName="image"><Label value="A"/>'
                            '</KeyPointLabels></View>')
    r = client.post("/predict", json=body)
    assert r.status_code == 400 and "BrushLabels" in r.json["error"]


def test_a_spent_budget_answers_the_first_task_only_without_a_queue(make_app, tmp_path,
                                                                      caplog):
    images = [scene(tmp_path, f"b{i}", [(48, 36)], seed=i) for i in range(3)]
    tasks = [task(path, task_id=51 + i) for i, (path, _) in enumerate(images)]
    app = make_app(retrieve_budget_seconds=0.0)
    with caplog.at_level(logging.WARNING, logger="backend.service"):
        r = app.test_client().post("/predict", json=retrieve_body(tasks))
    assert r.status_code == 200, r.json
    first, *rest = r.json["results"]
    assert first["result"] and rest == [[], []]
    assert "queued" not in r.json
    assert "2 left without a prediction (REDIS_URL is not set)" in caplog.text


@pytest.fixture
def own_queue(redis_db):
    """A queue name of its own in the backend tests' Redis db; deleted with its jobs after."""
    from rq import Queue

    name = f"test-retrieve-{uuid.uuid4().hex[:8]}"
    yield name
    Queue(name, connection=redis_db).delete(delete_jobs=True)


def test_a_spent_budget_queues_the_rest_as_prelabel_jobs(make_app, tmp_path, redis_db,
                                                         own_queue):
    from rq import Queue

    images = [scene(tmp_path, f"q{i}", [(48, 36)], seed=i) for i in range(4)]
    tasks = [task(path, task_id=61 + i) for i, (path, _) in enumerate(images)]
    app = make_app(retrieve_budget_seconds=0.0, redis_url=REDIS_URL, queue_name=own_queue,
                   prelabel_batch_size=2)
    r = app.test_client().post("/predict", json=retrieve_body(tasks, project="7.1795626672"))
    assert r.status_code == 200, r.json
    first, *rest = r.json["results"]
    assert first["result"] and rest == [[], [], []]
    queue = Queue(own_queue, connection=redis_db)
    jobs = [queue.fetch_job(job_id) for job_id in r.json["queued"]]
    assert queue.count == 2
    assert [j.func_name for j in jobs] == ["review.prelabel.prelabel_batch"] * 2
    # prelabel_batch(project_id, task_ids): the project's id from "<id>.<created timestamp>"
    assert [j.args for j in jobs] == [(7, [62, 63]), (7, [64])]


def test_versions_lists_the_bundled_and_registry_versions_and_marks_the_serving_one(
        make_app, predictor, tmp_path):
    settings = load_settings(env={}, model_registry=str(tmp_path / "registry"))
    for name in ("cdnet-mnv2-aaaa0001", "cdnet-mnv2-aaaa0002"):
        weights = tmp_path / f"{name}.pt"
        weights.write_bytes(name.encode())
        registry.store_version(settings, name, weights, {"miou": 0.9})
    client = make_app(model_registry=settings.model_registry).test_client()
    r = client.get("/versions")
    assert r.status_code == 200
    # the bundled weights are what the test predictor serves
    assert registry.bundled_version() == predictor.model_version
    assert r.json == {"versions": [predictor.model_version, "cdnet-mnv2-aaaa0001",
                                   "cdnet-mnv2-aaaa0002"],
                      "current": predictor.model_version}


def test_versions_before_the_model_has_loaded_names_the_promoted_one(tmp_path, predictor):
    """While the model loads, `current` is the version that will serve: the registry's."""
    import threading

    from backend.app import create_app

    settings = load_settings(env={}, model_registry=str(tmp_path / "registry"))
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    registry.store_version(settings, "cdnet-mnv2-bbbb0001", weights, {})
    registry.promote(settings, "cdnet-mnv2-bbbb0001")
    release = threading.Event()

    def slow_loader(s):
        release.wait(30)
        return predictor

    app = create_app(settings, predictor_loader=slow_loader)
    try:
        r = app.test_client().get("/versions")
        assert r.json == {"versions": [registry.bundled_version(), "cdnet-mnv2-bbbb0001"],
                          "current": "cdnet-mnv2-bbbb0001"}
    finally:
        release.set()
