"""Progressive refinement: a new click changes only the region of change it touches.

The network re-predicts a whole crop; taken as is, that would also flip pixels far from the
click, undoing what earlier clicks, a prior or other tools had fixed. So we keep only the
connected components of (new XOR previous) that contain or touch the click's disk.
"""

from __future__ import annotations

import cv2
import numpy as np

from cdnet.clicks import Click
from cdnet.inference.views import View


def merge_progressive(previous: np.ndarray, proposed: np.ndarray, click: Click,
                      view: View, radius: float) -> np.ndarray:
    """`previous` with the changed regions of `proposed` that touch `click` applied (bool HxW)."""
    y0, x0, y1, x1 = view.y0, view.x0, view.y1, view.x1
    changed = (previous[y0:y1, x0:x1] != proposed[y0:y1, x0:x1]).astype(np.uint8)
    result = previous.copy()
    if not changed.any():
        return result
    _, labels = cv2.connectedComponents(changed, connectivity=8)
    cy, cx = int(round(click.y)) - y0, int(round(click.x)) - x0
    r = max(1, int(np.ceil(radius)))
    ys, xs = np.ogrid[-r : r + 1, -r : r + 1]
    disk = ys**2 + xs**2 <= r * r
    ly0, lx0 = max(cy - r, 0), max(cx - r, 0)
    ly1, lx1 = min(cy + r + 1, labels.shape[0]), min(cx + r + 1, labels.shape[1])
    window = labels[ly0:ly1, lx0:lx1]
    touched = np.unique(window[disk[ly0 - cy + r : ly1 - cy + r, lx0 - cx + r : lx1 - cx + r]])
    touched = touched[touched > 0]
    if touched.size:
        region = np.isin(labels, touched)
        result[y0:y1, x0:x1][region] = proposed[y0:y1, x0:x1][region]
    return result
