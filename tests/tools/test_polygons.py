"""Polygons: parts, holes, islands in holes; IoU >= 0.98 on every GrabCut mask."""

from __future__ import annotations

import numpy as np
import pytest

from cdnet.tools import keyhole_ring, mask_to_parts, parts_to_mask, rings_to_mask
from cdnet.tools.polygons import iou
from tests.tools.conftest import grabcut_stems, load_grabcut


def nested() -> np.ndarray:
    import cv2

    m = np.zeros((120, 160), np.uint8)
    cv2.circle(m, (60, 60), 45, 1, -1)
    m[40:80, 40:80] = 0  # a hole
    m[52:68, 52:68] = 1  # an island inside the hole
    cv2.ellipse(m, (130, 30), (20, 10), 30, 0, 360, 1, -1)  # a second part
    m[110:113, 5:8] = 1  # a speck
    return m.astype(bool)


def test_parts_holes_and_islands_round_trip():
    m = nested()
    exact = mask_to_parts(m, min_iou=1.0)
    assert len(exact) == 4 and sum(len(p.holes) for p in exact) == 1
    assert np.array_equal(parts_to_mask(exact, m.shape), m)
    simple = mask_to_parts(m)
    assert iou(parts_to_mask(simple, m.shape), m) >= 0.98
    assert sum(len(p.exterior) for p in simple) < sum(len(p.exterior) for p in exact) / 4
    rings = [keyhole_ring(p) for p in mask_to_parts(m, keyhole=True)]
    drawn = rings_to_mask(rings, m.shape)
    assert iou(drawn, m) >= 0.98 and not drawn[45:50, 45:50].any()  # the hole stays empty


def test_every_grabcut_mask_keeps_iou():
    stems = grabcut_stems()
    if not stems:
        load_grabcut("missing")  # skips with the reason
    for stem in stems:
        _, gt = load_grabcut(stem)
        parts = mask_to_parts(gt)
        assert iou(parts_to_mask(parts, gt.shape), gt) >= 0.98, stem
        rings = [keyhole_ring(p) for p in mask_to_parts(gt, keyhole=True)]
        assert iou(rings_to_mask(rings, gt.shape), gt) >= 0.98, stem


def test_empty_and_bad_masks():
    assert mask_to_parts(np.zeros((10, 10), bool)) == []
    with pytest.raises(ValueError, match="2-D"):
        mask_to_parts(np.zeros((10, 10, 3), bool))
    with pytest.raises(ValueError, match="min_iou"):
        mask_to_parts(np.ones((10, 10), bool), min_iou=0)
