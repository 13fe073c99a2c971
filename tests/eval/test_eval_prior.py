"""Degraded priors reach IoU ~0.75, deterministically, for every kind of corruption."""

import numpy as np
import pytest

from cdnet.eval.metrics import iou
from cdnet.eval.prior import KINDS, degrade


def blob():
    yy, xx = np.mgrid[:60, :80]
    return ((yy - 30) ** 2 / 18**2 + (xx - 38) ** 2 / 25**2) <= 1


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_reaches_the_target(kind):
    gt = blob()
    prior = degrade(gt, 0.75, seed=1, name="x", kind=kind)
    assert abs(iou(prior, gt) - 0.75) < 0.02
    if kind in ("erode", "drop"):
        assert not (prior & ~gt).any()  # only removes
    else:
        assert not (gt & ~prior).any()  # only adds


def test_degrade_is_deterministic_per_seed_and_name():
    gt = blob()
    a = degrade(gt, seed=3, name="obj")
    assert np.array_equal(a, degrade(gt, seed=3, name="obj"))
    assert abs(iou(a, gt) - 0.75) < 0.02
    priors = {degrade(gt, seed=s, name="obj").tobytes() for s in range(6)}
    assert len(priors) > 1  # the seed changes the corruption


def test_target_respects_the_ignore_band():
    gt = blob()
    ignore = np.zeros_like(gt)
    ignore[:, :10] = True
    prior = degrade(gt, 0.6, seed=0, ignore=ignore, kind="dilate")
    assert abs(iou(prior, gt, ignore) - 0.6) < 0.02


def test_bad_input():
    with pytest.raises(ValueError, match="at least one object pixel"):
        degrade(np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="target_iou"):
        degrade(blob(), 1.0)
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(blob(), kind="blur")
