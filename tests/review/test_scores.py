"""One score for one mask: a pre-label's stored score is what `clicksmith review` shows for
that same mask, for every kind of pre-label source (nothing, a box, an existing mask), and it
is the model's `score_mask` of the mask as stored (clicksmith.prelabel.mask_score has the rule)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clicksmith.cli import main as cli
from clicksmith.labelstudio.config import parse_config
from clicksmith.labelstudio.results import brush_item, rle_to_mask
from tests.review.lsfake import LABEL_CONFIG, blob_image

SIZE = 96


def _box_annotation() -> dict:
    return {"id": 20, "created_at": "2026-01-02T00:00:00Z", "result": [
        {"type": "rectanglelabels", "from_name": "box", "to_name": "image",
         "original_width": SIZE, "original_height": SIZE,
         "value": {"x": 15, "y": 15, "width": 70, "height": 70, "rectanglelabels": ["Object"]}}]}


def _mask_annotation(mask: np.ndarray) -> dict:
    cfg = parse_config(LABEL_CONFIG, interactive=False)
    item = brush_item(mask, brush=cfg.brush_name, image=cfg.image_name, label="Object",
                      score=1.0)
    return {"id": 30, "created_at": "2026-01-02T00:00:00Z", "result": [item]}


@pytest.mark.slow
def test_prelabel_and_review_give_one_score_for_one_mask(fake_ls, env, tmp_path):
    fake_ls.add_project(6, 3, size=SIZE)
    fake_ls.tasks[2]["annotations"] = [_box_annotation()]  # source: the box
    _, gt = blob_image(SIZE, seed=3)
    rough = np.zeros_like(gt)
    rough[20:70, 25:75] = True  # source: an annotator's rough mask
    fake_ls.tasks[3]["annotations"] = [_mask_annotation(rough)]

    from review.prelabel import prelabel_batch

    stats = prelabel_batch(6, [1, 2, 3])
    assert stats["written"] == 3, stats
    stored = {p["task"]: p for p in fake_ls.predictions}

    out = tmp_path / "report"
    assert cli(["review", "--project", "6", "--out", str(out), "--no-view"]) == 0
    reviewed = {t["task"]: t for t in json.loads((out / "review.json").read_text())["tasks"]}

    from clicksmith.models import process_model
    from clicksmith.settings import load_settings

    predictor = process_model(load_settings())
    for tid in (1, 2, 3):
        pred = stored[tid]
        value = pred["result"][0]["value"]
        mask = rle_to_mask(value["rle"], SIZE, SIZE)
        image, _ = blob_image(SIZE, seed=tid)
        # the review looked at that same mask (the newest brush region: our prediction, or
        # for task 3 the annotation it left unchanged) ...
        assert reviewed[tid]["source"] in (f"prediction:{pred['id']}", "annotation:30")
        # ... and shows the number the pre-label stored, which is the mask's score_mask
        assert reviewed[tid]["score"] == pytest.approx(pred["score"], abs=1e-6), tid
        assert pred["score"] == pytest.approx(predictor.score_mask(image, mask), abs=1e-6)
        assert pred["result"][0]["score"] == pytest.approx(pred["score"], abs=1e-6)
    assert np.array_equal(rle_to_mask(stored[3]["result"][0]["value"]["rle"], SIZE, SIZE),
                          rough)  # a mask source with no click comes back as it was
