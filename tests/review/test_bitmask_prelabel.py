"""Pre-labelling a BitmaskLabels project (Label Studio 1.20+): the task's bitmask annotation is
the source, and the pre-label is written as a bitmask region (PNG data URL), not brush RLE."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from clicksmith.labelstudio.config import parse_config
from clicksmith.labelstudio.results import brush_item, decode_bitmask
from clicksmith.settings import load_settings
from review import prelabel

REPO = Path(__file__).resolve().parents[2]
BITMASK_CONFIG = (REPO / "config" / "labeling-bitmask.xml").read_text()


class _Predictor:
    """Answers a prior with itself (what the real one does with no click, re-scored); records
    the prior it was given."""

    model_version = "v-test"

    def __init__(self) -> None:
        self.priors: list[np.ndarray] = []

    def predict(self, image, prior_mask=None, **_):
        self.priors.append(prior_mask)
        return SimpleNamespace(mask=prior_mask, quality=0.8)


def test_a_bitmask_project_is_prelabelled_in_its_own_format(tmp_path):
    image = np.full((48, 64, 3), 40, np.uint8)
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), image)
    prior = np.zeros((48, 64), bool)
    prior[10:30, 20:50] = True
    cfg = parse_config(BITMASK_CONFIG, interactive=False)
    annotation = brush_item(prior, brush=cfg.brush_name, image=cfg.image_name,
                            label="Background", score=1.0, tag="BitmaskLabels")
    task = {"id": 5, "data": {"image": str(path)},
            "annotations": [{"id": 50, "created_at": "2026-01-02T00:00:00Z",
                             "result": [annotation]}]}
    settings = load_settings(env={}, local_image_roots=str(tmp_path))
    predictor = _Predictor()
    prediction = prelabel._predict_one(predictor, None, settings, cfg, task, "v1")
    (item,) = prediction["result"]
    assert np.array_equal(predictor.priors[0], prior)  # the bitmask region was the source
    assert item["type"] == "bitmasklabels" and item["from_name"] == "mask"
    assert item["value"]["bitmasklabels"] == ["Background"]
    assert "rle" not in item["value"]
    assert np.array_equal(decode_bitmask(item), prior)
    assert prediction["task"] == 5 and prediction["score"] == 0.8
