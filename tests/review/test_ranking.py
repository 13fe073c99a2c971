"""`clicksmith review`: masks scored by the real predictor, ranked worst first, reported."""

from __future__ import annotations

import base64
import csv
import io
import json

import cv2
import numpy as np

from clicksmith.cli import main as cli
from clicksmith.labelstudio.config import parse_config
from clicksmith.labelstudio.results import brush_item
from tests.review.lsfake import LABEL_CONFIG, blob_image


def _result(mask):
    cfg = parse_config(LABEL_CONFIG, interactive=False)
    return [brush_item(mask, brush=cfg.brush_name, image=cfg.image_name, label="Object",
                       score=0.5)]


def test_review_ranks_reports_and_creates_view(fake_ls, env, tmp_path, capsys):
    fake_ls.add_project(5, 5)
    masks = {}
    for tid in range(1, 5):
        _, gt = blob_image(96, seed=tid)
        masks[tid] = gt if tid % 2 else cv2.dilate(gt.astype(np.uint8), np.ones((9, 9))) > 0
    # task 1: an old prediction replaced by a newer annotation (the annotation must be used)
    fake_ls.predictions.append({"id": 90, "task": 1, "model_version": "m1", "score": 0.9,
                                "result": _result(np.zeros((96, 96), bool)),
                                "created_at": "2026-01-01T00:00:00Z"})
    fake_ls.tasks[1]["annotations"] = [{"id": 91, "result": _result(masks[1]),
                                        "created_at": "2026-01-03T00:00:00Z"}]
    for tid in (2, 3, 4):
        fake_ls.predictions.append({"id": 90 + 2 * tid, "task": tid, "model_version": "m1",
                                    "score": 0.5, "result": _result(masks[tid]),
                                    "created_at": "2026-01-02T00:00:00Z"})
    # task 5 has no mask at all

    out = tmp_path / "report"
    assert cli(["review", "--project", "5", "--out", str(out)]) == 0
    assert "report:" in capsys.readouterr().out

    data = json.loads((out / "review.json").read_text())
    tasks = data["tasks"]
    assert [t["rank"] for t in tasks] == [1, 2, 3, 4, 5]
    assert tasks[0]["task"] == 5 and tasks[0]["score"] is None and tasks[0]["error"] == "no mask"
    scores = [t["score"] for t in tasks[1:]]
    assert scores == sorted(scores) and all(0.0 <= s <= 1.0 for s in scores)
    by_task = {t["task"]: t for t in tasks}
    assert by_task[1]["source"] == "annotation:91"

    # the scores are the predictor's own estimate for exactly these masks
    from clicksmith.models import process_model
    from clicksmith.settings import load_settings

    p = process_model(load_settings())
    for tid in (1, 4):
        img, _ = blob_image(96, seed=tid)
        assert by_task[tid]["score"] == round(p.score_mask(img, masks[tid]), 6)

    rows = list(csv.DictReader(io.StringIO((out / "review.csv").read_text())))
    assert [int(r["task"]) for r in rows] == [t["task"] for t in tasks]

    page = (out / "review.html").read_text()
    assert page.count('src="data:image/jpeg;base64,') == 5
    assert "http" not in page.split("<body>")[1].replace(fake_ls.url, "")  # nothing external
    for t in tasks:
        assert f'href="{fake_ls.url}/projects/5/data?task={t["task"]}"' in page
    thumb = page.split('src="data:image/jpeg;base64,')[1].split('"')[0]
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(thumb), np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and max(decoded.shape[:2]) == 192

    (view,) = fake_ls.views
    assert view["project"] == 5 and view["data"]["ordering"] == ["tasks:predictions_score"]
    assert ("POST", "/api/dm/views/") in fake_ls.calls


def test_review_unknown_project_exits_2(fake_ls, env, tmp_path, capsys):
    assert cli(["review", "--project", "77", "--out", str(tmp_path)]) == 2
    assert "HTTP 404" in capsys.readouterr().err
