"""/predict with a Label Studio 1.20+ BitmaskLabels config: the answer is a bitmask region (PNG
data URL) holding exactly the mask a BrushLabels config gets as RLE for the same clicks, and the
task's newest bitmask region seeds the prior as a brush region does."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from backend.packing import unpack_mask
from backend.sessions import session_key
from cdnet import Click
from clicksmith.labelstudio.results import brush_item, rle_to_mask
from tests.backend.ls import keypoint, predict_body, rectangle, task

H, W = 72, 96
REPO = Path(__file__).resolve().parents[2]
BITMASK_CONFIG = (REPO / "config" / "labeling-bitmask.xml").read_text()


def px(x_pct: float, y_pct: float, positive: bool = True) -> Click:
    return Click(y_pct * H / 100, x_pct * W / 100, positive)


def _items(client, body: dict) -> list[dict]:
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.json
    (result,) = r.json["results"]
    return result["result"]


def _png_alpha(url: str) -> np.ndarray:
    """The PNG's alpha as an independent decoder (Pillow) reads it, as the editor's canvas does."""
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    png = Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))
    assert png.format == "PNG" and png.size == (W, H)
    return np.asarray(png.convert("RGBA"))[:, :, 3]


def test_bitmask_answer_equals_the_brush_answer_for_the_same_clicks(client, disk):
    path, _ = disk
    ctx = [keypoint(50, 50, W, H), keypoint(20, 20, W, H, positive=False),
           rectangle(25, 20, 50, 60, W, H)]
    brush_items = _items(client, predict_body(path, ctx, project="31.1"))
    bitmask_items = _items(client, predict_body(path, ctx, project="32.1", config=BITMASK_CONFIG))
    (brush,) = brush_items
    (bitmask,) = bitmask_items
    assert brush["type"] == "brushlabels" and bitmask["type"] == "bitmasklabels"
    assert (bitmask["from_name"], bitmask["to_name"]) == ("mask", "image")
    assert (bitmask["original_width"], bitmask["original_height"]) == (W, H)
    assert bitmask["image_rotation"] == 0
    assert set(bitmask["value"]) == {"imageDataURL", "bitmasklabels"}
    assert bitmask["value"]["bitmasklabels"] == ["Object"]
    assert bitmask["score"] == brush["score"]
    brush_mask = rle_to_mask(brush["value"]["rle"], H, W)
    alpha = _png_alpha(bitmask["value"]["imageDataURL"])
    assert set(np.unique(alpha)) <= {0, 255}
    assert brush_mask.any() and np.array_equal(alpha > 0, brush_mask)


def test_a_single_click_bitmask_answer_is_the_predictors_mask(client, disk, predictor):
    path, img = disk
    (item,) = _items(client, predict_body(path, [keypoint(50, 50, W, H)],
                                          config=BITMASK_CONFIG))
    assert item["type"] == "bitmasklabels"
    want = predictor.predict(img, [px(50, 50)]).mask
    assert np.array_equal(_png_alpha(item["value"]["imageDataURL"]) > 0, want)


def test_newest_bitmask_region_of_the_task_seeds_the_prior(make_app, disk, predictor):
    app = make_app()
    client = app.test_client()
    path, img = disk
    old, new = np.zeros((2, H, W), bool)
    old[5:15, 5:15] = True
    new[30:54, 20:44] = True

    def region(mask: np.ndarray, label: str = "Object") -> dict:
        return brush_item(mask, brush="mask", image="image", label=label, score=1.0,
                          tag="BitmaskLabels")

    other = np.zeros((H, W), bool)
    other[40:60, 60:80] = True
    the_task = task(path, 41)
    the_task["annotations"] = [{"id": 1, "updated_at": "2026-11-25T10:00:00Z",
                                "result": [region(old)]}]
    the_task["drafts"] = [{"id": 2, "updated_at": "2026-11-25T11:00:00Z",
                           "result": [region(new), region(other, "Background")]}]
    # a click on that region (one on another object would start afresh: test_instances.py)
    body = predict_body(path, [keypoint(33, 58, W, H)], the_task=the_task, project="41.1",
                        config=BITMASK_CONFIG)
    (item,) = _items(client, body)
    want = predictor.session(img, prior_mask=new).add_click(px(33, 58)).mask
    assert np.array_equal(_png_alpha(item["value"]["imageDataURL"]) > 0, want)
    store = app.extensions["clicksmith"].sessions
    rec = store.get(session_key("41.1", 41, "image", "mask", "Object"))
    assert np.array_equal(unpack_mask(rec.base), new)
