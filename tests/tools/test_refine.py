"""Refine brush: inside the band the edge moves to the image's edge, outside nothing changes."""

from __future__ import annotations

import numpy as np
import pytest

from cdnet.tools import boundary_fscore, guided_filter, refine_band
from tests.tools.conftest import coarse_mask, edge_band, load_grabcut

STEMS = ["106024", "124080", "153077", "208001"]


def test_refine_improves_the_boundary_inside_the_band_on_grabcut():
    before, after = [], []
    for stem in STEMS:
        rgb, gt = load_grabcut(stem)
        coarse = coarse_mask(gt, 16)
        band = edge_band(coarse, 6)
        refined = refine_band(rgb, coarse, band)
        assert np.array_equal(refined[~band], coarse[~band])  # bit for bit outside the band
        before.append(boundary_fscore(coarse, gt, band, tol=1)[2])
        after.append(boundary_fscore(refined, gt, band, tol=1)[2])
    assert np.mean(after) > np.mean(before) + 0.05, (before, after)


def test_a_local_stroke_changes_only_its_stretch_of_the_edge():
    rgb, gt = load_grabcut("106024")
    coarse = coarse_mask(gt, 16)
    band = edge_band(coarse, 6)
    local = np.zeros(band.shape, bool)
    local[:, : band.shape[1] // 2] = True
    refined = refine_band(rgb, coarse, band & local)
    assert np.array_equal(refined[~(band & local)], coarse[~(band & local)])
    assert not np.array_equal(refined, coarse)


def test_empty_band_and_constant_guide_change_nothing():
    rgb = np.full((30, 40, 3), 128, np.uint8)
    mask = np.zeros((30, 40), bool)
    mask[5:20, 5:25] = True
    assert np.array_equal(refine_band(rgb, mask, np.zeros_like(mask)), mask)
    flat = guided_filter(rgb.astype(np.float32) / 255, np.full((30, 40), 0.25, np.float32), 3,
                         1e-3)
    assert np.allclose(flat, 0.25, atol=1e-4)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="match"):
        refine_band(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11), bool),
                    np.zeros((10, 10), bool))
