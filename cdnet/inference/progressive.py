"""Progressive refinement: a new click changes only the region of change it touches.

The network re-predicts a whole crop; taken as is, that would also flip pixels far from the
click, undoing what earlier clicks, a prior or other tools had fixed. So we keep only the
connected regions of (new XOR previous) that contain or touch the click's disk.

A boundary correction often comes out as a chain of thin slivers broken by a pixel or two;
taking only the sliver under the click would throw the rest of that one correction away (and
measurably costs clicks). `join` bridges such gaps: changes closer than `join` pixels to each
other (within a square neighbourhood) count as one region. Pixels that did not change are
never touched either way.

The predictor decides the regions in the network frame (a few hundred pixels a side, whatever
the photo) and applies them at full resolution only where they are, so a click costs the size
of its correction, not the size of the photo.
"""

from __future__ import annotations

import cv2
import numpy as np


def regions_of_change(previous: np.ndarray, proposed: np.ndarray, click_yx: tuple[float, float],
                      radius: float, join: float = 0.0) -> np.ndarray:
    """Bool mask of the changed pixels (previous != proposed) in the regions that meet the
    click's disk. Both masks are bool arrays of one shape; `click_yx` is in their frame;
    `radius` is the click disk's and `join` the gap bridged between changes, both in pixels."""
    changed = np.not_equal(previous, proposed)
    taken = np.zeros_like(changed)
    if not changed.any():
        return taken
    k = int(round(join))
    connect = changed.astype(np.uint8)
    if k > 0:
        connect = cv2.dilate(connect, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    cy, cx = int(round(click_yx[0])), int(round(click_yx[1]))
    r = max(1, int(np.ceil(radius)))
    ly0, lx0 = max(cy - r, 0), max(cx - r, 0)
    ly1, lx1 = min(cy + r + 1, changed.shape[0]), min(cx + r + 1, changed.shape[1])
    ys, xs = np.ogrid[ly0 - cy : ly1 - cy, lx0 - cx : lx1 - cx]
    seeds = np.nonzero(changed[ly0:ly1, lx0:lx1] & (ys**2 + xs**2 <= r * r))
    # flood-fill each touched region; filled pixels become 2, so a seed inside an
    # already-filled region is skipped
    for y, x in zip(seeds[0] + ly0, seeds[1] + lx0, strict=True):
        if connect[y, x] == 1:
            cv2.floodFill(connect, None, (int(x), int(y)), 2, 0, 0,
                          8 | cv2.FLOODFILL_FIXED_RANGE)
    np.logical_and(connect == 2, changed, out=taken)
    return taken

