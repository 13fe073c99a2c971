"""Label Studio 1.20+ BitmaskLabels: the config gives its masks to a BitmaskLabels control, the
mask travels as Label Studio writes and reads it (a PNG data URL, black on transparent, alpha > 0
is the region), and a task's bitmask regions are refined like brush regions.

The shape checked here is the one in Label Studio's source (see the docstring of
clicksmith.labelstudio.results): web/libs/editor/src/regions/BitmaskRegion.jsx (serialize,
getImageSnapshotCanvas, restoreFromImageDataURL), tags/control/BitmaskLabels.jsx, and
label_studio_sdk/label_interface/control_tags.py (BitmaskLabelsTag)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image

from clicksmith.labelstudio.config import ConfigError, parse_config
from clicksmith.labelstudio.regions import (
    merge_brush_regions,
    newest_mask,
    newest_region_mask,
    task_regions,
)
from clicksmith.labelstudio.results import (
    brush_item,
    data_url_to_mask,
    decode_bitmask,
    decode_mask,
    mask_to_data_url,
    result_items,
)

REPO = Path(__file__).resolve().parents[2]
BITMASK_XML = (REPO / "config" / "labeling-bitmask.xml").read_text()

IMAGE = '<Image name="image" value="$image"/>'
BITMASK = ('<BitmaskLabels name="bm" toName="image"><Label value="A"/><Label value="B"/>'
           '</BitmaskLabels>')
BRUSH = '<BrushLabels name="br" toName="image"><Label value="B"/><Label value="C"/></BrushLabels>'
CLICK = ('<KeyPointLabels name="kp" toName="image" smart="true"><Label value="A"/>'
         '<Label value="B"/><Label value="C"/></KeyPointLabels>')


def view(*tags: str) -> str:
    return "<View>" + "".join(tags) + "</View>"


def _mask(h: int = 40, w: int = 60) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[5:30, 10:50] = True
    mask[12:18, 20:30] = False  # a hole
    mask[35:37, 2:4] = True  # a speck
    return mask


def _png(url: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return base64.b64decode(url[len(prefix):])


# --- config ------------------------------------------------------------------------------

def test_the_shipped_bitmask_config():
    config = parse_config(BITMASK_XML)
    target = config.targets["image"]
    assert [(b.name, b.tag) for b in target.brushes] == [("mask", "BitmaskLabels")]
    assert target.brush_for("Background").tag == "BitmaskLabels"
    assert [p.name for p in target.prompts] == ["click", "box"]
    assert (config.brush_name, config.brush.tag, config.image_key) == (
        "mask", "BitmaskLabels", "image")


def test_only_bitmask_and_a_smart_keypoint_is_usable():
    config = parse_config(view(IMAGE, BITMASK, CLICK))
    assert config.targets["image"].brush_for("A").name == "bm"
    assert config.target_of("kp", "image")[1].name == "image"
    # and the workers' first mask control (no prompt needed)
    assert parse_config(view(IMAGE, BITMASK), interactive=False).brush.tag == "BitmaskLabels"


def test_without_any_mask_control_the_message_names_both():
    with pytest.raises(ConfigError, match="BrushLabels> or <BitmaskLabels"):
        parse_config(view(IMAGE, CLICK))


def test_beside_brush_labels_the_first_control_listing_the_label_gets_the_mask():
    config = parse_config(view(IMAGE, BITMASK, BRUSH, CLICK))
    target = config.targets["image"]
    assert [b.name for b in target.brushes] == ["bm", "br"]  # document order, either tag
    assert target.brush_for("A").name == "bm"
    assert target.brush_for("B").name == "bm"  # both list B: the first in the document
    assert target.brush_for("C").name == "br"  # only the brush lists C
    flipped = parse_config(view(IMAGE, BRUSH, BITMASK, CLICK)).targets["image"]
    assert flipped.brush_for("B").name == "br"
    assert parse_config(view(IMAGE, BRUSH, BITMASK, CLICK)).brush_name == "br"


def test_a_bitmask_named_refine_is_not_a_tool():
    xml = view(IMAGE, BITMASK.replace('name="bm"', 'name="refine_bm"'), CLICK)
    target = parse_config(xml).targets["image"]
    assert [(b.name, b.tool) for b in target.brushes] == [("refine_bm", None)]


# --- encoding ------------------------------------------------------------------------------

def test_data_url_round_trip_of_real_masks():
    rng = np.random.default_rng(3)
    masks = [_mask(), rng.random((37, 53)) > 0.6, np.zeros((3, 4), bool),
             np.ones((5, 7), bool), _mask().astype(np.uint8)]
    for mask in masks:
        h, w = mask.shape
        back = data_url_to_mask(mask_to_data_url(mask), h, w)
        assert back.dtype == bool and np.array_equal(back, mask.astype(bool))


def test_the_png_is_black_on_transparent_at_the_image_size():
    """What getImageSnapshotCanvas writes: (0,0,0,255) inside, (0,0,0,0) outside; read by an
    independent decoder (Pillow)."""
    mask = _mask()
    png = Image.open(io.BytesIO(_png(mask_to_data_url(mask))))
    assert png.format == "PNG" and png.size == (60, 40)
    rgba = np.asarray(png.convert("RGBA"))
    assert np.array_equal(rgba[:, :, 3] == 255, mask)
    assert set(np.unique(rgba[:, :, 3])) == {0, 255}
    assert not rgba[:, :, :3].any()  # black everywhere, transparent outside


def test_decoding_follows_the_editor_alpha_above_zero_is_the_region():
    """Label Studio's own PNGs are antialiased (arc strokes): any alpha > 0 is the region
    (getCanvasPixelBounds, isHoveringNonTransparentPixel); colour does not matter."""
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[1, 1] = (0, 0, 0, 1)
    rgba[2, 3] = (0, 0, 0, 128)
    rgba[3, 4] = (255, 255, 255, 255)
    rgba[0, 0] = (255, 0, 0, 0)  # coloured but transparent: not the region
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    want = np.zeros((4, 5), bool)
    want[1, 1] = want[2, 3] = want[3, 4] = True
    assert np.array_equal(data_url_to_mask(url, 4, 5), want)
    # a palette PNG with a transparent entry (another valid encoder's choice) reads the same
    pal = Image.fromarray(want.astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 0, 0, 0])
    buf = io.BytesIO()
    pal.save(buf, "PNG", transparency=0)
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    assert np.array_equal(data_url_to_mask(url, 4, 5), want)


@pytest.mark.parametrize("url, message", [
    (None, "data: URL"),
    ([1, 2], "data: URL"),
    ("http://example.com/m.png", "data: URL"),
    ("data:image/jpeg;base64,AAAA", "not data:image/png;base64"),
    ("data:image/png,rawbytes", "not data:image/png;base64"),
    ("data:image/png;base64,@@@not base64", "not valid base64"),
    ("data:image/png;base64," + base64.b64encode(b"GIF89a....").decode(), "does not hold a PNG"),
])
def test_malformed_data_urls_are_refused(url, message):
    with pytest.raises(ValueError, match=message):
        data_url_to_mask(url, 40, 60)


def test_a_png_of_another_size_is_refused_before_it_is_decoded():
    url = mask_to_data_url(_mask())
    with pytest.raises(ValueError, match="60x40, the image has 61x40"):
        data_url_to_mask(url, 40, 61)
    # a tiny PNG whose header claims 100000x100000 is refused by its header, never inflated
    png = bytearray(_png(mask_to_data_url(np.zeros((1, 1), bool))))
    png[16:24] = (100000).to_bytes(4, "big") * 2
    url = "data:image/png;base64," + base64.b64encode(bytes(png)).decode()
    with pytest.raises(ValueError, match="100000x100000"):
        data_url_to_mask(url, 40, 60)
    with pytest.raises(ValueError, match="cannot be decoded"):  # right size, broken body
        data_url_to_mask(url, 100000, 100000)


# --- result items -------------------------------------------------------------------------

def test_the_bitmask_item_has_label_studios_exact_shape():
    mask = _mask()
    item = brush_item(mask, brush="bm", image="img", label="A", score=0.5, tag="BitmaskLabels")
    assert list(item) == ["id", "from_name", "type", "value", "to_name", "original_width",
                          "original_height", "image_rotation", "score", "readonly"]
    assert isinstance(item["id"], str) and len(item["id"]) == 10
    assert {k: v for k, v in item.items() if k not in ("id", "value")} == {
        "from_name": "bm", "type": "bitmasklabels", "to_name": "img", "original_width": 60,
        "original_height": 40, "image_rotation": 0, "score": 0.5, "readonly": False}
    # BitmaskRegion.serialize: {imageDataURL}; Result.serialize adds value[valueType]
    assert list(item["value"]) == ["imageDataURL", "bitmasklabels"]
    assert item["value"]["bitmasklabels"] == ["A"]
    assert item["value"]["imageDataURL"].startswith("data:image/png;base64,")
    assert "rle" not in item["value"] and "format" not in item["value"]
    # the SDK's own BitmaskLabels tag accepts the value (its pydantic model and JSON schema)
    control = LabelInterface(view(IMAGE, BITMASK)).get_control("bm")
    assert control.validate_value(item["value"])
    assert not control.validate_value({"bitmasklabels": ["A"]})
    assert np.array_equal(decode_bitmask(item), mask)
    assert np.array_equal(decode_mask(item), mask)


def test_result_items_with_polygons_keep_the_bitmask_first():
    mask = _mask()
    items = result_items(mask, brush="bm", image="img", label="A", score=0.7, polygon="poly",
                         tag="BitmaskLabels")
    assert items[0]["type"] == "bitmasklabels"
    assert {i["type"] for i in items[1:]} == {"polygonlabels"}
    assert np.array_equal(decode_mask(items[0]), mask)
    # the brush default is unchanged, and decode_mask reads it too
    brush = result_items(mask, brush="br", image="img", label="B", score=0.7)[0]
    assert brush["type"] == "brushlabels" and np.array_equal(decode_mask(brush), mask)
    with pytest.raises(ValueError, match="PolygonLabels control does not receive masks"):
        result_items(mask, brush="p", image="img", label="A", score=0.7, tag="PolygonLabels")


@pytest.mark.parametrize("change, message", [
    (lambda i: i["value"].pop("imageDataURL"), "lacks value.imageDataURL"),
    (lambda i: i.pop("original_width"), "original_width"),
    (lambda i: i.__setitem__("original_height", 41), "the image has 60x41"),
])
def test_decode_bitmask_refusals(change, message):
    item = brush_item(_mask(), brush="bm", image="img", label="A", score=1.0, tag="BitmaskLabels")
    change(item)
    with pytest.raises(ValueError, match=message):
        decode_bitmask(item)


# --- regions: refined like brush regions --------------------------------------------------

def _bitmask(mask: np.ndarray, label: str = "A", control: str = "bm") -> dict:
    return brush_item(mask, brush=control, image="image", label=label, score=1.0,
                      tag="BitmaskLabels")


def test_the_newest_bitmask_region_of_the_label_is_the_prior():
    old, new, other = np.zeros((3, 40, 60), bool)
    old[0:10, 0:10] = True
    new[20:30, 20:30] = True
    other[5:6, 5:6] = True
    task = {
        "annotations": [{"id": 1, "created_at": "2025-01-01T00:00:00Z",
                         "result": [_bitmask(old)]}],
        "drafts": [{"id": 2, "created_at": "2025-01-02T00:00:00Z",
                    "result": [_bitmask(new), _bitmask(other, label="B"),
                               _bitmask(other, control="elsewhere")]}],
    }
    assert len(task_regions(task, "bm", "image", "A", 40, 60)) == 2
    assert np.array_equal(newest_region_mask(task, "bm", "image", "A", 40, 60), new)
    assert np.array_equal(newest_region_mask(task, "bm", "image", "B", 40, 60), other)
    assert newest_region_mask(task, "bm", "image", "A", 41, 60) is None  # another size
    # a corrupt newest region is passed over for the next one
    broken = _bitmask(new)
    broken["value"]["imageDataURL"] = "data:image/png;base64,AAAA"
    task["drafts"][0]["result"].append(broken)
    assert np.array_equal(newest_region_mask(task, "bm", "image", "A", 40, 60), new)


def test_the_workers_merge_bitmask_regions_of_a_label():
    a, b = np.zeros((2, 40, 60), bool)
    a[0:5, 0:5] = True
    b[10:15, 10:15] = True
    result = [_bitmask(a), _bitmask(b)]
    ((label, merged),) = merge_brush_regions(result)
    assert label == "A" and np.array_equal(merged, a | b)
    found = newest_mask({"annotations": [{"id": 9, "result": result}]}, control="bm")
    assert found.label == "A" and np.array_equal(found.mask, a | b)
    assert found.origin == "annotation:9"


def test_a_real_opencv_mask_survives_the_trip_through_a_task():
    """A mask drawn with OpenCV (curved edges), written as a prediction, read back as the
    refinement prior of the same control."""
    mask = np.zeros((120, 160), np.uint8)
    cv2.ellipse(mask, (80, 60), (50, 30), 25, 0, 360, 1, -1)
    cv2.circle(mask, (80, 60), 10, 0, -1)
    mask = mask.astype(bool)
    task = {"predictions": [{"id": 3, "result": [_bitmask(mask, control="mask")]}]}
    got = newest_region_mask(task, "mask", "image", "A", 120, 160)
    assert np.array_equal(got, mask)
