"""Pieces of a mask that no positive click explains: measured on first clicks, optionally dropped.

A first click on the skirt of a woman in front of a wooden wall can come back as the skirt plus
patches of the wall that touch neither the click nor the skirt. Such a piece is a connected
component of the mask (8-connected) that holds no positive click (*detached*) and whose nearest
pixel lies farther than `FAR_FRACTION` of the image diagonal from every positive click (*far*).
Detached pieces near a click are often real (a thin part the mask does not bridge, a hand behind
an arm); far ones after a single click rarely are, since the annotator's first click says where
the object is.

`far_pieces` finds them (the held-out benchmark counts them on every first click); the
predictor's `drop_far` setting removes them from answers where the mask had nothing before
(see `Predictor.step`), kept only where held-out NoC@90 and mIoU@1 both say it helps.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from cdnet.clicks import Click

FAR_FRACTION = 0.10  # of the image diagonal


def far_distance(shape: tuple[int, int], fraction: float = FAR_FRACTION) -> float:
    """How far (pixels) a piece must lie from every positive click to count as far."""
    return fraction * float(np.hypot(*shape))


def _positive_pixels(clicks: Sequence[Click], shape: tuple[int, int]) -> list[tuple[int, int]]:
    h, w = shape
    return [(min(h - 1, max(0, int(c.y))), min(w - 1, max(0, int(c.x))))
            for c in clicks if c.positive]


def detached_pieces(mask: np.ndarray, clicks: Sequence[Click]) -> tuple[np.ndarray, np.ndarray]:
    """Component labels of `mask` and the labels of its pieces holding no positive click."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    held = {int(labels[y, x]) for y, x in _positive_pixels(clicks, mask.shape)}
    return labels, np.array([k for k in range(1, count) if k not in held], dtype=np.int32)


def far_pieces(mask: np.ndarray, clicks: Sequence[Click],
               far_px: float | None = None) -> np.ndarray:
    """Pixels of `mask` in detached pieces lying farther than `far_px` from every positive click
    (default `far_distance(mask.shape)`). Empty when there is no positive click: with nothing
    to anchor it, no piece is known to be wrong."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, bool)
    positives = _positive_pixels(clicks, mask.shape)
    if not positives or not mask.any():
        return out
    labels, detached = detached_pieces(mask, clicks)
    if detached.size == 0:
        return out
    seeds = np.ones(mask.shape, np.uint8)
    for y, x in positives:
        seeds[y, x] = 0
    distance = cv2.distanceTransform(seeds, cv2.DIST_L2, 5)  # to the nearest positive click
    far = far_distance(mask.shape) if far_px is None else far_px
    # every detached piece's nearest pixel in one pass over their pixels (not a full-image
    # pass per piece: a 12 MP answer can hold dozens of specks)
    is_detached = np.zeros(int(labels.max()) + 1, bool)
    is_detached[detached] = True
    ys, xs = np.nonzero(is_detached[labels])
    nearest = np.full(is_detached.size, np.inf, np.float32)
    np.minimum.at(nearest, labels[ys, xs], distance[ys, xs])
    is_far = is_detached & (nearest > far)
    out[ys, xs] = is_far[labels[ys, xs]]
    return out


def drop_far_pieces(mask: np.ndarray, clicks: Sequence[Click],
                    far_px: float | None = None) -> np.ndarray:
    """`mask` without its far pieces (a new array; `mask` is untouched)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~far_pieces(mask, clicks, far_px)


def piece_stats(mask: np.ndarray, clicks: Sequence[Click]) -> dict:
    """What the benchmark records for a first-click mask: how many detached and far pieces it
    has and the share of its area the far ones take."""
    mask = np.asarray(mask, dtype=bool)
    _, detached = detached_pieces(mask, clicks) if mask.any() else (None, np.zeros(0))
    far = far_pieces(mask, clicks)
    area = int(mask.sum())
    far_labels = cv2.connectedComponents(far.astype(np.uint8), connectivity=8)[0] - 1
    return {"detached": int(detached.size), "far": int(far_labels),
            "far_area": round(float(far.sum()) / area, 5) if area else 0.0}
