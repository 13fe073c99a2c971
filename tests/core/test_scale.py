"""A project's object scale and its frames: measured from masks, carried by the predictor into
the first click's crop and the zoom-in's smallest side, undone by `for_scale(None)`."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cdnet import Click
from cdnet.inference.scale import (
    FIRST_VIEW_FACTOR,
    MIN_VIEW,
    ZOOM_MIN_FACTOR,
    ObjectScale,
    measure_scale,
)
from cdnet.inference.views import ZOOM_MIN_SIZE


def _box_mask(h: int, w: int) -> np.ndarray:
    m = np.zeros((300, 300), np.uint8)
    m[10 : 10 + h, 20 : 20 + w] = 255
    return m


def test_scale_is_the_median_longer_side_of_the_objects_boxes():
    masks = [_box_mask(10, 4), _box_mask(6, 30), _box_mask(20, 20), np.zeros((50, 50), bool)]
    scale = measure_scale(masks)
    assert scale == ObjectScale(20.0, 3)  # sides 10, 30, 20; the empty mask does not count
    assert measure_scale([np.zeros((8, 8), bool)]) is None
    assert measure_scale([]) is None


def test_frames_follow_the_scale_within_their_bounds():
    small = ObjectScale(25.0, 10)
    assert small.first_view == round(FIRST_VIEW_FACTOR * 25)
    assert small.zoom_min == round(ZOOM_MIN_FACTOR * 25)
    tiny = ObjectScale(2.0, 3)
    assert tiny.first_view == tiny.zoom_min == MIN_VIEW
    large = ObjectScale(400.0, 3)  # photos of the general kind: the zoom-in is the general one
    assert large.zoom_min == ZOOM_MIN_SIZE and large.first_view == round(FIRST_VIEW_FACTOR * 400)
    assert ObjectScale.from_dict(small.to_dict()) == small
    for bad in ({}, {"side": "x", "objects": 3}, {"side": -1, "objects": 3},
                {"side": 5, "objects": 0}, {"side": float("nan"), "objects": 2}):
        with pytest.raises(ValueError):
            ObjectScale.from_dict(bad)


@pytest.fixture(scope="module")
def predictor():
    from cdnet import load_predictor

    return load_predictor(threads=1)


@pytest.fixture(scope="module")
def cells() -> tuple[np.ndarray, np.ndarray]:
    """A 400x400 dark image with bright 12 px discs; the ground truth is the one at (200, 200)."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 30, (400, 400, 3), dtype=np.uint8)
    for cy in range(40, 400, 60):
        for cx in range(40, 400, 60):
            cv2.circle(img, (cx, cy), 6, (200, 210, 220), -1)
    gt = np.zeros((400, 400), np.uint8)
    cv2.circle(gt, (220, 220), 6, 1, -1)
    return img, gt.astype(bool)


def test_the_first_click_sees_a_crop_around_it_and_later_clicks_a_smaller_zoom(predictor, cells):
    img, gt = cells
    scale = ObjectScale(12.0, 20)
    framed = predictor.for_scale(scale)
    assert (framed.first_view, framed.zoom_min) == (scale.first_view, scale.zoom_min)
    assert framed.runner is predictor.runner  # a copy of the settings, not of the model
    click = Click(220, 220)
    first = framed.framing.for_click(np.zeros(gt.shape, bool), (click,), None).view
    assert (first.y1 - first.y0, first.x1 - first.x0) == (scale.first_view,) * 2
    assert first.y0 <= click.y < first.y1 and first.x0 <= click.x < first.x1
    general = predictor.framing.for_click(np.zeros(gt.shape, bool), (click,), None).view
    assert general.covers(gt.shape)
    # a later click: the zoom-in around a 12 px mask is zoom_min wide, not ZOOM_MIN_SIZE
    later = framed.framing.for_click(gt, (click, Click(215, 222)), None).view
    assert later.y1 - later.y0 == scale.zoom_min < ZOOM_MIN_SIZE
    # ... and around a mask larger than the project's objects, wider context than in general
    big = np.zeros(gt.shape, bool)
    big[180:220, 180:220] = True  # 40 px: 2.5 x 40 = 100 px, where the general zoom-in is 200
    wide = framed.framing.for_click(big, (click, Click(200, 200)), None).view
    assert abs((wide.y1 - wide.y0) - scale.zoom_expand * 40) <= 3  # (+ the clicks' pixels)
    # a box still frames itself, whatever the scale
    boxed = framed.framing.for_click(np.zeros(gt.shape, bool), (click,), (150, 150, 290, 290))
    assert boxed.view.y1 - boxed.view.y0 > scale.first_view
    # the answer: nothing outside the crop, and the cell far better found than at 400 px
    mask = framed.predict(img, [click]).mask
    outside = np.ones(gt.shape, bool)
    outside[first.y0 : first.y1, first.x0 : first.x1] = False
    assert not (mask & outside).any()
    whole = predictor.predict(img, [click]).mask

    def iou(a):
        return (a & gt).sum() / max(1, (a | gt).sum())

    assert iou(mask) > 0.5 and iou(mask) > iou(whole) + 0.2
    assert predictor.for_scale(scale).for_scale(None).framing == predictor.framing
    with pytest.raises(ValueError, match="first_view"):
        predictor.__class__(predictor.runner, "v", first_view=8)
