"""A bitmask prediction as clicksmith writes it (results.brush_item with tag="BitmaskLabels") is
accepted by a real Label Studio 1.23 in a project with config/labeling-bitmask.xml, and stored
as sent: read back, it decodes to the same mask."""

from __future__ import annotations

import numpy as np
import pytest

from clicksmith.labelstudio.config import parse_config
from clicksmith.labelstudio.results import brush_item, decode_bitmask
from tests.e2e.conftest import FIXTURES, REPO, read_rgb

pytestmark = pytest.mark.e2e


def test_a_bitmask_prediction_is_accepted_and_stored(ls):
    xml = (REPO / "config" / "labeling-bitmask.xml").read_text()
    cfg = parse_config(xml)
    project = ls.projects.create(title="clicksmith e2e bitmask", label_config=xml)
    mask = read_rgb(FIXTURES / "masks" / "figure.png")[:, :, 0] > 127
    assert mask.any() and not mask.all()
    task = ls.tasks.create(project=project.id, data={"image": "/data/upload/figure.png"})
    item = brush_item(mask, brush=cfg.brush_name, image=cfg.image_name, label="Object",
                      score=0.9, tag=cfg.brush.tag)
    ls.predictions.create(task=task.id, result=[item], score=0.9, model_version="e2e-bitmask")
    (stored,) = list(ls.predictions.list(task=task.id))
    (region,) = stored.result
    assert region["type"] == "bitmasklabels" and region["from_name"] == "mask"
    assert region["value"]["bitmasklabels"] == ["Object"]
    assert region["value"]["imageDataURL"] == item["value"]["imageDataURL"]
    assert (region["original_width"], region["original_height"]) == mask.shape[::-1]
    assert np.array_equal(decode_bitmask(region), mask)
