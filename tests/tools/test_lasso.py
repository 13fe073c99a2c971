"""Edge lasso: snapped paths, closing, and the enclosed region on real GrabCut photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cdnet.tools import fill_path, is_closing, lasso_path, snap_path
from cdnet.tools.polygons import iou
from tests.tools.conftest import load_grabcut


def outline_points(gt: np.ndarray, n: int) -> list[tuple[int, int]]:
    cs, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(cs, key=len).reshape(-1, 2)
    return [(int(y), int(x)) for x, y in c[np.linspace(0, len(c), n, endpoint=False).astype(int)]]


def test_path_runs_from_start_to_end_in_connected_steps():
    img = np.full((60, 80, 3), 30, np.uint8)
    cv2.circle(img, (40, 30), 20, (220, 220, 220), -1)
    path = snap_path(img, (10, 40), (30, 60))
    assert tuple(path[0]) == (10, 40) and tuple(path[-1]) == (30, 60)
    steps = np.abs(np.diff(path, axis=0)).max(axis=1)
    assert steps.max() <= 1
    # it follows the disk's rim rather than the chord: pixels on the path are near radius 20
    radius = np.hypot(path[:, 0] - 30, path[:, 1] - 40)
    assert np.median(np.abs(radius - 20)) <= 1.5


@pytest.mark.parametrize("stem", ["106024", "124080", "208001"])
def test_snapped_lasso_beats_the_straight_polygon_on_grabcut(stem):
    rgb, gt = load_grabcut(stem)
    points = outline_points(gt, 20)
    snapped = fill_path(lasso_path(rgb, points, closed=True), gt.shape)
    straight = fill_path(np.array(points), gt.shape)
    assert iou(snapped, gt) > iou(straight, gt)
    assert iou(snapped, gt) > 0.9


def test_closing_needs_three_points_and_a_near_start():
    pts = [(10.0, 10.0), (10.0, 50.0), (50.0, 50.0)]
    assert is_closing(pts, (12.0, 12.0), (100, 100))
    assert not is_closing(pts, (40.0, 10.0), (100, 100))
    assert not is_closing(pts[:2], (10.0, 10.0), (100, 100))


def test_points_outside_the_image_are_refused():
    with pytest.raises(ValueError, match="outside"):
        snap_path(np.zeros((20, 20, 3), np.uint8), (5, 5), (5, 25))
