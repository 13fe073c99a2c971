"""Webhook events -> correction examples on disk, through a real RQ worker and the LS stand-in."""

from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest

from cdnet.eval.metrics import iou
from clicksmith.labelstudio.config import parse_config
from clicksmith.labelstudio.results import brush_item
from clicksmith.settings import load_settings
from review.corrections import handle_event, project_dir, read_manifest
from tests.review.conftest import SHARED
from tests.review.lsfake import LABEL_CONFIG

FIXTURES = SHARED / "fixtures" / "label-studio-1.23.2"


def _mask(y0, y1, x0, x1, size=96):
    m = np.zeros((size, size), bool)
    m[y0:y1, x0:x1] = True
    return m


def _payload(fake_ls, ann_id=11, task_id=1, mask=None, stamp="2026-02-01T10:00:00Z",
             action="ANNOTATION_CREATED", config=LABEL_CONFIG, label="Object"):
    cfg = parse_config(config, interactive=False)
    item = brush_item(mask, brush=cfg.brush_name, image=cfg.image_name, label=label, score=1.0)
    task = {k: v for k, v in fake_ls.tasks[task_id].items() if k not in {"predictions"}}
    return {"action": action,
            "annotation": {"id": ann_id, "task": task_id, "project": 3, "result": [item],
                           "was_cancelled": False, "created_at": stamp, "updated_at": stamp,
                           "parent_prediction": None},
            "task": task, "project": {"id": 3, "label_config": config}}


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _add_prediction(fake_ls, task_id, mask, version="cdnet-test-1"):
    cfg = parse_config(LABEL_CONFIG, interactive=False)
    item = brush_item(mask, brush=cfg.brush_name, image=cfg.image_name, label="Object", score=0.7)
    fake_ls.predictions.append({"id": 500 + task_id, "task": task_id, "result": [item],
                                "score": 0.7, "model_version": version,
                                "created_at": "2026-01-05T00:00:00Z"})


def test_webhook_jobs_store_replace_replay_delete(fake_ls, env, workers, tmp_path):
    from redis import Redis
    from rq import Queue

    fake_ls.add_project(3, 2)
    pred = _mask(20, 60, 20, 60)
    _add_prediction(fake_ls, 1, pred)
    corrected = _mask(25, 65, 20, 60)
    created = _payload(fake_ls, mask=corrected)

    # the backend enqueues by dotted name; a real worker runs the event and its replay
    queue = Queue(env["QUEUE_NAME"], connection=Redis.from_url(env["REDIS_URL"]))
    first = queue.enqueue("review.corrections.handle_event", created)
    workers.wait(workers.start())
    assert first.get_status(refresh=True) == "finished", first.exc_info
    folder = project_dir(load_settings(), 3)
    rows = read_manifest(folder)
    assert list(rows) == ["t1_1100"]
    row = rows["t1_1100"]
    assert row["model_version"] == "cdnet-test-1" and row["label"] == "Object"
    assert row["iou"] == pytest.approx(iou(pred, corrected), abs=1e-6)
    stored = cv2.imread(str(folder / row["mask"]), cv2.IMREAD_GRAYSCALE) > 127
    assert (stored == corrected).all()
    image = cv2.imread(str(folder / row["image"]))
    assert image.shape == (96, 96, 3)
    before = _snapshot(folder)

    replay = queue.enqueue("review.corrections.handle_event", copy.deepcopy(created))
    workers.wait(workers.start())
    assert replay.get_status(refresh=True) == "finished", replay.exc_info
    assert _snapshot(folder) == before  # bytes and mtimes: nothing rewritten

    # update replaces; a late replay of the older event cannot revert it
    newer = _mask(10, 40, 50, 90)
    handle_event(_payload(fake_ls, mask=newer, stamp="2026-02-01T11:00:00Z",
                          action="ANNOTATION_UPDATED"))
    handle_event(created)
    rows = read_manifest(folder)
    stored = cv2.imread(str(folder / rows["t1_1100"]["mask"]), cv2.IMREAD_GRAYSCALE) > 127
    assert (stored == newer).all()
    assert rows["t1_1100"]["iou"] == pytest.approx(iou(pred, newer), abs=1e-6)

    # a bulk event for task 2 (no prediction there: no model version, no IoU)
    bulk = _payload(fake_ls, ann_id=12, task_id=2, mask=_mask(0, 30, 0, 30))
    bulk = {**bulk, "action": "ANNOTATIONS_CREATED", "annotation": [bulk["annotation"]],
            "task": [bulk["task"]]}
    assert handle_event(bulk)["stored"] == 1
    assert read_manifest(folder)["t2_1200"]["iou"] is None

    # deletion removes the example and its now unused image; a replay removes nothing more
    gone = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 11}], "project": {"id": 3}}
    assert handle_event(gone)["removed"] == 1
    assert handle_event(gone)["removed"] == 0
    assert list(read_manifest(folder)) == ["t2_1200"]
    assert not (folder / "images" / "t1.png").exists()
    assert not (folder / "masks" / "t1_1100.png").exists()
    manifest_lines = (folder / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in manifest_lines] == ["t2_1200"]


def test_bad_payload_is_a_value_error(env):
    with pytest.raises(ValueError):
        handle_event({"no": "action"})
    assert handle_event({"action": "PROJECT_UPDATED", "project": {"id": 1}})["ignored"]


def test_recorded_label_studio_payloads(fake_ls, env):
    """The real ANNOTATION_CREATED (a choices result, no brush) stores nothing; with a brush
    region added in the recorded config's own tag names it stores one example."""
    if not FIXTURES.is_dir():
        pytest.skip(f"recorded Label Studio payloads not found at {FIXTURES} (../shared absent)")
    body = json.loads((FIXTURES / "webhook-annotation_created.json").read_text())["body"]
    fake_ls.add_project(1, 1)
    body["task"]["data"] = fake_ls.tasks[1]["data"]  # its image, served by the stand-in
    assert handle_event(copy.deepcopy(body))["stored"] == 0

    config = body["project"]["label_config"]
    cfg = parse_config(config, interactive=False)
    item = brush_item(_mask(5, 50, 5, 50), brush=cfg.brush_name, image=cfg.image_name,
                      label="obj", score=1.0)
    body["annotation"]["result"].append(item)
    out = handle_event(copy.deepcopy(body))
    assert out["stored"] == 1
    rows = read_manifest(project_dir(load_settings(), 1))
    (row,) = rows.values()
    assert row["label"] == "obj" and row["task"] == 1 and row["annotation"] == 1
    for name in ("webhook-project_updated.json", "webhook-start_training.json"):
        other = json.loads((FIXTURES / name).read_text())["body"]
        assert handle_event(other) == {"action": other["action"], "ignored": True}
