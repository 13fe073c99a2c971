"""Simulated annotators for training (RITM-style iterative sampling).

First clicks are random (inside the object, a few negatives near it); later clicks come from
the model's own errors via the benchmark's clicker, with the model's previous mask fed back as
the prior channel. Some samples start from a degraded ground truth instead of an empty mask, so
editing a pre-label is learned, not hoped for.
"""

from __future__ import annotations

import cv2
import numpy as np

from cdnet.clicks import Click
from cdnet.eval.clicker import next_click
from cdnet.eval.prior import KINDS, degrade


def random_first_clicks(gt: np.ndarray, rng: np.random.Generator) -> list[Click]:
    """1-3 positive clicks away from the object's border, 0-2 negatives in a band around it."""
    clicks: list[Click] = []
    dist = cv2.distanceTransform(np.pad(gt, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    inner = dist >= max(1.0, 0.3 * dist.max())
    ys, xs = np.nonzero(inner if inner.any() else gt)
    for _ in range(1 + int(rng.random() < 0.25) + int(rng.random() < 0.1)):
        i = int(rng.integers(len(ys)))
        clicks.append(Click(float(ys[i]), float(xs[i]), True))
    n_neg = int(rng.choice([0, 0, 1, 2]))
    if n_neg:
        band = cv2.dilate(gt.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool) & ~gt
        ys, xs = np.nonzero(band)
        for _ in range(min(n_neg, len(ys))):
            i = int(rng.integers(len(ys)))
            clicks.append(Click(float(ys[i]), float(xs[i]), False))
    return clicks


def random_prior(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ground truth spoiled to a random IoU in [0.5, 0.92] by one random corruption."""
    kind = KINDS[int(rng.integers(len(KINDS)))]
    try:
        return degrade(gt, float(rng.uniform(0.5, 0.92)), int(rng.integers(1 << 30)), kind=kind)
    except ValueError:
        return np.zeros_like(gt)


def error_click(gt: np.ndarray, pred: np.ndarray, clicks: list[Click]) -> Click | None:
    return next_click(gt, pred, None, clicks)
