"""Superpixel fill: the partition, the fill, and edge adherence on real GrabCut photos."""

from __future__ import annotations

import numpy as np
import pytest

from cdnet.tools import boundary_recall, superpixel_fill, superpixels
from tests.tools.conftest import load_grabcut


@pytest.fixture(scope="module")
def photo():
    rgb, gt = load_grabcut("106024")
    return rgb[::2, ::2].copy(), gt[::2, ::2].copy()  # 240x320: keeps SLIC quick here


def test_partition_covers_the_image_at_the_asked_granularity(photo):
    rgb, _ = photo
    fine, coarse = superpixels(rgb, 8), superpixels(rgb, 24)
    assert fine.shape == rgb.shape[:2] and fine.dtype == np.int32 and fine.min() == 0
    n_fine, n_coarse = len(np.unique(fine)), len(np.unique(coarse))
    expected = rgb.shape[0] * rgb.shape[1] / 64
    assert 0.5 * expected < n_fine < 1.5 * expected
    assert n_coarse < n_fine / 4


def test_fill_adds_and_removes_exactly_the_superpixel_under_the_point(photo):
    rgb, _ = photo
    labels = superpixels(rgb, 16)
    empty = np.zeros(labels.shape, bool)
    added, region = superpixel_fill(empty, labels, 100.4, 150.7)
    assert np.array_equal(added, labels == labels[100, 150]) and np.array_equal(region, added)
    full = np.ones(labels.shape, bool)
    removed, region = superpixel_fill(full, labels, 100, 150, positive=False)
    assert np.array_equal(removed, ~region)


def test_superpixels_follow_object_edges(photo):
    rgb, gt = photo
    labels = superpixels(rgb, 16)
    recall = boundary_recall(labels, gt, tol=2)
    square = (np.arange(labels.shape[0])[:, None] // 16) * 100 + np.arange(labels.shape[1]) // 16
    assert recall > 0.7
    assert recall > boundary_recall(square, gt, tol=2) + 0.2  # far better than a plain grid
    # a superpixel picked inside the object lies (almost) all inside it
    import cv2

    dist = cv2.distanceTransform(gt.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    _, region = superpixel_fill(np.zeros(gt.shape, bool), labels, y, x)
    assert (region & gt).sum() / region.sum() > 0.9


def test_a_large_photo_is_partitioned_at_a_bounded_working_size(photo):
    """Over `max_pixels` the partition is computed smaller and scaled back: same size labels,
    about the asked granularity in full-resolution pixels, still on the object's edges."""
    rgb, gt = photo
    big = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)  # 480x640
    big_gt = np.repeat(np.repeat(gt, 2, axis=0), 2, axis=1)
    labels = superpixels(big, 32, max_pixels=rgb.shape[0] * rgb.shape[1])
    assert labels.shape == big.shape[:2]
    expected = big.shape[0] * big.shape[1] / 32**2
    assert 0.5 * expected < len(np.unique(labels)) < 1.5 * expected
    assert boundary_recall(labels, big_gt, tol=4) > 0.7


def test_bad_input_is_refused_with_a_reason():
    img = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="size"):
        superpixels(img, 2)
    with pytest.raises(ValueError, match="method"):
        superpixels(img, 8, method="quickshift")
    with pytest.raises(ValueError, match="HxWx3"):
        superpixels(np.zeros((20, 20), np.uint8), 8)
    with pytest.raises(ValueError, match="outside"):
        superpixel_fill(np.zeros((20, 20), bool), np.zeros((20, 20), np.int32), 25, 3)
