"""Progressive refinement: a new click changes only the region of change it touches.

The network re-predicts a whole crop; taken as is, that would also flip pixels far from the
click, undoing what earlier clicks, a prior or other tools had fixed. So we keep only the
connected regions of (new XOR previous) that contain or touch the click's disk.

A boundary correction often comes out as a chain of thin slivers broken by a pixel or two;
taking only the sliver under the click would throw the rest of that one correction away (and
measurably costs clicks). `join` bridges such gaps: changes closer than `join` pixels to each
other (within a square neighbourhood) count as one region. Pixels that did not change are
never touched either way.
"""

from __future__ import annotations

import cv2
import numpy as np


def merge_progressive(previous: np.ndarray, proposed: np.ndarray, click_yx: tuple[float, float],
                      radius: float, join: float = 0.0) -> np.ndarray:
    """`previous` with the changed regions of `proposed` that touch the click applied.

    Both masks are bool arrays of one shape (the view's crop); `click_yx` is in their frame;
    `radius` is the click disk's and `join` the gap bridged between changes, both in pixels.
    """
    changed = np.not_equal(previous, proposed)
    result = previous.copy()
    if not changed.any():
        return result
    k = int(round(join))
    connect = changed.astype(np.uint8)
    if k > 0:  # dilate only around the changes: on a large crop most of it is unchanged
        bx, by, bw, bh = cv2.boundingRect(connect)
        y0, x0 = max(by - k, 0), max(bx - k, 0)
        y1, x1 = min(by + bh + k, connect.shape[0]), min(bx + bw + k, connect.shape[1])
        connect[y0:y1, x0:x1] = _bridge(connect[y0:y1, x0:x1], k)
    cy, cx = int(round(click_yx[0])), int(round(click_yx[1]))
    r = max(1, int(np.ceil(radius)))
    ly0, lx0 = max(cy - r, 0), max(cx - r, 0)
    ly1, lx1 = min(cy + r + 1, changed.shape[0]), min(cx + r + 1, changed.shape[1])
    ys, xs = np.ogrid[ly0 - cy : ly1 - cy, lx0 - cx : lx1 - cx]
    seeds = np.nonzero(changed[ly0:ly1, lx0:lx1] & (ys**2 + xs**2 <= r * r))
    # flood-fill each touched region (cost grows with the region, not with the crop);
    # filled pixels become 2, so a seed inside an already-filled region is skipped
    for y, x in zip(seeds[0] + ly0, seeds[1] + lx0, strict=True):
        if connect[y, x] != 1:
            continue
        _, _, _, (rx, ry, rw, rh) = cv2.floodFill(connect, None, (int(x), int(y)), 2, 0, 0,
                                                  8 | cv2.FLOODFILL_FIXED_RANGE)
        box = (slice(ry, ry + rh), slice(rx, rx + rw))
        take = (connect[box] == 2) & changed[box]
        result[box][take] = proposed[box][take]
    return result


def _bridge(changed: np.ndarray, k: int) -> np.ndarray:
    """`changed` (uint8 0/1) dilated by a (2k+1)-square. For a large k (a zoomed-out view of a
    big photo) this runs on a grid of k/4-pixel cells (max-pooled, dilated, scaled back): the
    bridged gap is k to k + 2 cells (at most 1.5 k) pixels and the cost no longer grows with
    the photo."""
    cell = max(1, k // 4)
    if cell == 1:
        return cv2.dilate(changed, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    h, w = changed.shape
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), np.uint8)
    padded[:h, :w] = changed
    pooled = padded.reshape(gh, cell, gw, cell).max(axis=(1, 3))
    kg = -(-k // cell)
    grown = cv2.dilate(pooled, np.ones((2 * kg + 1, 2 * kg + 1), np.uint8))
    up = cv2.resize(grown, (gw * cell, gh * cell), interpolation=cv2.INTER_NEAREST)
    return up[:h, :w]
