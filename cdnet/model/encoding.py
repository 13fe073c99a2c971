"""How clicks become network input: disk maps in the network's own (resized) frame.

The radius is fixed in network pixels; because every input is resized to a few hundred pixels,
the disk scales with the image, as CDNet's and RITM's click maps do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cdnet.clicks import Click

CLICK_RADIUS = 5.0


def click_maps(clicks: Sequence[Click], height: int, width: int,
               radius: float = CLICK_RADIUS) -> np.ndarray:
    """(2, H, W) float32: channel 0 positive disks, channel 1 negative disks."""
    maps = np.zeros((2, height, width), np.float32)
    if not clicks:
        return maps
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    for c in clicks:
        cy, cx = int(round(c.y)), int(round(c.x))
        y0, y1 = max(cy - r, 0), min(cy + r + 1, height)
        x0, x1 = max(cx - r, 0), min(cx + r + 1, width)
        if y0 >= y1 or x0 >= x1:
            continue
        full = yy**2 + xx**2 <= radius**2
        disk = full[y0 - cy + r : y1 - cy + r, x0 - cx + r : x1 - cx + r]
        channel = maps[0 if c.positive else 1, y0:y1, x0:x1]
        np.maximum(channel, disk, out=channel)
    return maps
