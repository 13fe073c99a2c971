"""clicksmith.labelstudio.results: brush RLE both ways, the strict decoder's refusals, and the
exact shape of the result items the backend answers and the pre-label job writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from clicksmith.labelstudio.results import (
    brush_item,
    decode_brush,
    mask_to_rle,
    result_items,
    rle_to_mask,
)


def _mask() -> np.ndarray:
    mask = np.zeros((40, 60), bool)
    mask[5:30, 10:50] = True
    mask[12:18, 20:30] = False  # a hole
    mask[35:37, 2:4] = True  # a speck
    return mask


PATH = np.array([[3, 4], [5, 9], [6, 14], [10, 20], [11, 21]], np.int32)


def test_rle_round_trip_and_the_sdk_reads_it():
    mask = np.random.default_rng(1).random((37, 53)) > 0.6
    rle = mask_to_rle(mask)
    assert all(type(v) is int for v in rle)
    assert np.array_equal(decode_rle(rle).reshape(37, 53, 4)[:, :, 3] == 255, mask)
    assert np.array_equal(rle_to_mask(rle, 37, 53), mask)
    assert np.array_equal(rle_to_mask(mask_to_rle(mask.astype(np.uint8)), 37, 53), mask)
    empty = np.zeros((3, 4), bool)
    assert not rle_to_mask(mask_to_rle(empty), 3, 4).any()


def test_the_encoder_refuses_a_non_2d_mask():
    with pytest.raises(ValueError, match="2-D"):
        mask_to_rle(np.zeros((2, 3, 4), bool))


@pytest.mark.parametrize("rle,message", [
    (None, "non-empty list"),
    ([], "non-empty list"),
    ("abc", "non-empty list"),
    ((1, 2), "non-empty list"),
    ([1, 2, "3"], "integers 0..255"),
    ([1, 2, 256], "integers 0..255"),
    ([1, -1], "integers 0..255"),
    ([1.0, 2], "integers 0..255"),
    ([True, 2], "integers 0..255"),
])
def test_the_strict_decoder_refuses_malformed_rle(rle, message):
    with pytest.raises(ValueError, match=message):
        rle_to_mask(rle, 4, 5)


def test_the_strict_decoder_refuses_another_size_and_truncation():
    rle = mask_to_rle(np.ones((6, 7), bool))
    with pytest.raises(ValueError, match="holds 42 pixels, the image has 6x8"):
        rle_to_mask(rle, 6, 8)
    with pytest.raises(ValueError):
        rle_to_mask(rle[: len(rle) // 2], 6, 7)


def test_decode_brush_reads_a_result_item():
    mask = _mask()
    item = brush_item(mask, brush="mask", image="image", label="Object", score=0.5)
    assert np.array_equal(decode_brush(item), mask)
    item["original_width"], item["original_height"] = 60.0, 40.0  # JSON may give floats
    assert np.array_equal(decode_brush(item), mask)


@pytest.mark.parametrize("change,message", [
    (lambda i: i.pop("value"), "lacks value.rle"),
    (lambda i: i["value"].pop("rle"), "lacks value.rle"),
    (lambda i: i.update(value="x"), "lacks value.rle"),
    (lambda i: i["value"].update(format="polygon"), "format 'polygon' is not rle"),
    (lambda i: i.pop("original_width"), "no numeric original_width"),
    (lambda i: i.update(original_height=True), "no numeric original_height"),
    (lambda i: i.update(original_height="40"), "no numeric original_height"),
    (lambda i: i.update(original_height=0), "not a positive whole number"),
    (lambda i: i.update(original_width=59.5), "not a positive whole number"),
    (lambda i: i.update(original_width=61), "holds 2400 pixels, the image has 40x61"),
    (lambda i: i["value"].update(rle=[1, 2, 3]), "cannot be decoded|pixels"),
])
def test_decode_brush_refusals(change, message):
    item = brush_item(_mask(), brush="mask", image="image", label="Object", score=0.5)
    change(item)
    with pytest.raises(ValueError, match=message):
        decode_brush(item)


def test_decode_brush_refuses_a_non_object():
    with pytest.raises(ValueError, match="must be an object"):
        decode_brush([1, 2])


def test_result_items_exact_shape():
    mask = _mask()
    brush, *rest = result_items(mask, brush="tag", image="img", label="obj", score=0.75,
                                polygon="poly", path=PATH)
    assert list(brush) == ["id", "from_name", "type", "value", "to_name", "original_width",
                           "original_height", "image_rotation", "score", "readonly"]
    assert {k: v for k, v in brush.items() if k not in ("id", "value")} == {
        "from_name": "tag", "type": "brushlabels", "to_name": "img", "original_width": 60,
        "original_height": 40, "image_rotation": 0, "score": 0.75, "readonly": False}
    assert list(brush["value"]) == ["format", "rle", "brushlabels"]
    assert brush["value"]["format"] == "rle" and brush["value"]["brushlabels"] == ["obj"]
    lasso, *polygons = rest
    assert list(lasso) == ["id", "from_name", "type", "value", "meta", "to_name",
                           "original_width", "original_height", "image_rotation", "score",
                           "readonly"]
    assert lasso["value"]["closed"] is False and lasso["meta"] == {"text": ["lasso path"]}
    assert lasso["value"]["points"][0] == [4 * 100.0 / 60, 3 * 100.0 / 40]
    assert len(polygons) == 1  # the speck is left out, the hole is keyholed into the outline
    (poly,) = polygons
    assert poly["value"]["closed"] is True and poly["value"]["polygonlabels"] == ["obj"]
    assert all(0.0 <= x <= 100.0 and 0.0 <= y <= 100.0 for x, y in poly["value"]["points"])


def test_brush_item_is_the_builders_brush_region():
    mask = _mask()
    item = brush_item(mask, brush="mask", image="image", label="B", score=np.float32(0.5))
    assert type(item["score"]) is float and item["score"] == 0.5
    (same,) = result_items(mask, brush="mask", image="image", label="B", score=0.5)
    assert {**item, "id": ""} == {**same, "id": ""} and item["id"] != same["id"]
    assert json.dumps(item)  # plain JSON types only
