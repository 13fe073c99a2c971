"""Degraded prior masks: the ground truth spoiled to IoU ~= 0.75, to measure "edit a pre-label".

Why these four corruptions: pre-labels from another model or an earlier annotation fail by
being too thin (erode), too fat (dilate), missing a part (drop) or leaking into the background
(add). Each has one continuous strength (a distance), and IoU is monotone in it, so a bisection
reaches the target IoU closely and the result depends only on the mask and the seed.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

from cdnet.eval.metrics import iou

KINDS = ("erode", "dilate", "drop", "add")


def _dist(mask: np.ndarray) -> np.ndarray:
    """Distance of each True pixel to the nearest False pixel (0 on False pixels)."""
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)


def _point_dist(shape: tuple[int, int], y: int, x: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.hypot(yy - y, xx - x).astype(np.float32)


def _candidates(gt: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """A distance map d and whether the prior is gt minus {d < t} (True) or gt plus {d <= t}."""
    if kind == "erode":
        return _dist(gt), True
    if kind == "dilate":
        return _dist(~gt), False
    if kind == "drop":  # remove a disk around a random object pixel
        ys, xs = np.nonzero(gt)
        i = int(rng.integers(len(ys)))
        d = _point_dist(gt.shape, int(ys[i]), int(xs[i]))
        return np.where(gt, d + 1.0, 0.0).astype(np.float32), True
    if kind == "add":  # a blob of background grown from a random point just outside the object
        ring = cv2.dilate(gt.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~gt
        if not ring.any():
            return _dist(~gt), False
        ys, xs = np.nonzero(ring)
        i = int(rng.integers(len(ys)))
        d = _point_dist(gt.shape, int(ys[i]), int(xs[i]))
        return np.where(gt, 0.0, d + 1.0).astype(np.float32), False
    raise ValueError(f"unknown degradation {kind!r}; use one of {KINDS}")


def _apply(gt: np.ndarray, d: np.ndarray, remove: bool, t: float) -> np.ndarray:
    if remove:  # drop object pixels whose depth is below t
        return gt & ~((d > 0) & (d < t))
    return gt | ((d > 0) & (d <= t))


def degrade(
    gt: np.ndarray,
    target_iou: float = 0.75,
    seed: int = 0,
    name: str = "",
    ignore: np.ndarray | None = None,
    kind: str | None = None,
) -> np.ndarray:
    """A prior mask with IoU close to `target_iou` against `gt` (ignore pixels excluded).

    Deterministic: the corruption kind and its random point come from `seed` and `name`
    (the object's name), so every method is evaluated on exactly the same priors.
    """
    gt = np.asarray(gt, dtype=bool)
    if gt.ndim != 2 or not gt.any():
        raise ValueError("degrade needs a 2-D ground-truth mask with at least one object pixel")
    if not 0.0 < target_iou < 1.0:
        raise ValueError(f"target_iou must be in (0, 1), got {target_iou}")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    kinds = [kind] if kind else list(rng.permutation(KINDS))
    best, best_err = gt, 1.0
    for k in kinds:
        d, remove = _candidates(gt, str(k), rng)
        lo, hi = 0.0, float(d.max()) + 1.0
        for _ in range(30):  # IoU falls monotonically as t grows
            t = (lo + hi) / 2
            if iou(_apply(gt, d, remove, t), gt, ignore) > target_iou:
                lo = t
            else:
                hi = t
        for t in (lo, hi):
            m = _apply(gt, d, remove, t)
            err = abs(iou(m, gt, ignore) - target_iou)
            if err < best_err and m.any():
                best, best_err = m, err
        if best_err <= 0.02:
            break  # close enough: keep the first (seeded) kind that reaches the target
    return best
