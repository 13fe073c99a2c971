"""Pieces no positive click explains: found exactly, dropped only where the setting says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cdnet import Click
from cdnet.eval.datasets import Sample
from cdnet.eval.noc import evaluate
from cdnet.inference.pieces import drop_far_pieces, far_distance, far_pieces, piece_stats
from cdnet.inference.runner import NetOutput

SIZE = 320


def blobs(*boxes: tuple[int, int, int, int], size: int = SIZE) -> np.ndarray:
    m = np.zeros((size, size), bool)
    for y0, x0, y1, x1 in boxes:
        m[y0:y1, x0:x1] = True
    return m


OBJECT = (100, 100, 160, 160)  # where the click is
NEAR = (100, 170, 160, 190)  # detached, 10 px from the object: 40 px from the click
FAR = (200, 200, 225, 225)  # detached, ~99 px from the click, inside its zoom-in


def test_far_pieces_are_detached_and_far_from_every_positive_click():
    mask = blobs(OBJECT, NEAR, FAR)
    click = [Click(130, 130, True)]
    assert far_distance(mask.shape) == pytest.approx(0.1 * np.hypot(SIZE, SIZE))  # 45 px
    assert np.array_equal(far_pieces(mask, click), blobs(FAR))
    assert np.array_equal(drop_far_pieces(mask, click), blobs(OBJECT, NEAR))
    # a positive click inside the far piece anchors it; a negative one does not
    assert not far_pieces(mask, click + [Click(210, 210, True)]).any()
    assert np.array_equal(far_pieces(mask, click + [Click(210, 210, False)]), blobs(FAR))
    # no positive click: nothing is known to be wrong
    assert not far_pieces(mask, [Click(130, 130, False)]).any()
    # the distance is to the nearest pixel of the piece, not its centre
    assert not far_pieces(mask, click, far_px=200).any()
    assert piece_stats(mask, click) == {"detached": 2, "far": 1,
                                        "far_area": round(625 / mask.sum(), 5)}


def coordinate_image() -> np.ndarray:
    """A photo whose red and green values say each pixel's row and column, so a fake network
    can answer in photo coordinates whatever view (whole image, zoom-in) it is shown."""
    ramp = np.linspace(0, 255, SIZE).round().astype(np.uint8)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[..., 0] = ramp[:, None]
    image[..., 1] = ramp[None, :]
    return image


class TwoBlobRunner:
    """A network that always answers the object and a far blob, wherever its view lies."""

    name = "two-blobs"

    def __call__(self, image, clicks, prior) -> NetOutput:
        y = image[..., 0].astype(np.float32) * (SIZE - 1) / 255
        x = image[..., 1].astype(np.float32) * (SIZE - 1) / 255
        probs = np.zeros(image.shape[:2], np.float32)
        for y0, x0, y1, x1 in (OBJECT, FAR):
            probs[(y >= y0) & (y < y1) & (x >= x0) & (x < x1)] = 1.0
        h, w = image.shape[0] // 4, image.shape[1] // 4
        return NetOutput(probs, np.zeros((4, h, w), np.float32), np.array([0.8, 0.5], np.float32))


@pytest.fixture
def two_blob_predictor(predictor):
    return dataclasses.replace(predictor, runner=TwoBlobRunner(), base_size=SIZE, zoom_size=SIZE,
                               progressive=False, drop_far="off")


def test_drop_far_removes_the_first_clicks_far_piece_only_when_set(two_blob_predictor):
    image = coordinate_image()
    click = Click(130, 130, True)
    plain = two_blob_predictor.predict(image, clicks=[click]).mask
    assert np.array_equal(plain, blobs(OBJECT, FAR))
    first = dataclasses.replace(two_blob_predictor, drop_far="first")
    assert np.array_equal(first.predict(image, clicks=[click]).mask, blobs(OBJECT))
    # "first" leaves later clicks alone; "new" drops far pieces that appear at any click
    second = [click, Click(120, 120, True)]
    assert np.array_equal(first.predict(image, clicks=second).mask, blobs(OBJECT, FAR))
    new = dataclasses.replace(two_blob_predictor, drop_far="new")
    assert np.array_equal(new.predict(image, clicks=second).mask, blobs(OBJECT))
    # a prior's pieces are the annotator's: never dropped
    prior = blobs(FAR)
    kept = new.session(image, prior_mask=prior).add_click(click).mask
    assert np.array_equal(kept, blobs(OBJECT, FAR))
    with pytest.raises(ValueError, match="drop_far"):
        dataclasses.replace(two_blob_predictor, drop_far="always")


def test_the_noc_loop_reports_first_click_pieces(two_blob_predictor):
    image = coordinate_image()
    gt = blobs(OBJECT)
    samples = [Sample("one", image, gt, None)]
    out = evaluate(two_blob_predictor, samples, progress=False)
    assert out["first_click"] == {"objects": 1, "with_detached": 1.0, "with_far": 1.0,
                                  "far_area": round(625 / (3600 + 625), 5)}
    assert out["per_object"][0]["first_pieces"]["far"] == 1
    dropped = evaluate(dataclasses.replace(two_blob_predictor, drop_far="first"), samples,
                       progress=False)
    assert dropped["first_click"]["with_far"] == 0.0 and dropped["miou@1"] == 1.0
    assert out["miou@1"] == pytest.approx(3600 / 4225)
