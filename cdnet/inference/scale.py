"""A project's object scale, and the frames that suit it.

Why: the first click sees the whole image at 320 network px. On a microscopy project a nucleus
12 px wide is about 4% of that view, a scale the network never trained on, and its first answer
is a mask 100-300 times the nucleus; the zoom-in of later clicks is at least 200 image px, so
the nucleus stays a few network pixels wide and its boundary cannot reach IoU 0.90. Measured on
`domain_nuclei` (benchmarks/results/adaptation_scale.md): NoC@90 14.45 -> 8.68 on 60 objects
the simulated project never annotated, with the frames below and the same weights.

The scale is what a project's corrections say about its objects: the median longer side of
their bounding boxes. From it, the first click sees a crop of FIRST_VIEW_FACTOR times that side
around the click, and the zoom-in is the box of the mask and the clicks ZOOM_EXPAND times wide,
at least ZOOM_MIN_FACTOR times the side (never larger than the general ZOOM_MIN_SIZE). The
factors were chosen on the nuclei project's corrections, never on the objects they were then
measured on. On photos of the general kind (objects hundreds of pixels wide) the first view
covers most of the image and the zoom-in's minimum is the general one. A retrain adopts a
project's scale only when its held-out corrections are cheaper with it (review.retrain).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from cdnet.inference.views import ZOOM_MIN_SIZE

FIRST_VIEW_FACTOR = 4.0  # the first click's crop: this many object sides around the click
ZOOM_MIN_FACTOR = 3.0  # the zoom-in's smallest side, in object sides
ZOOM_EXPAND = 2.5  # the zoom-in: the box of the mask and the clicks this many times wide
MIN_VIEW = 32  # image px: no frame smaller than this, however small the objects


def view_sides(side: float, first_factor: float = FIRST_VIEW_FACTOR,
               zoom_factor: float = ZOOM_MIN_FACTOR) -> tuple[int, int]:
    """(first view, zoom-in minimum) in image px for objects `side` px wide: the factors times
    the side, never under MIN_VIEW, the zoom-in never over the general ZOOM_MIN_SIZE."""
    return (max(MIN_VIEW, int(round(first_factor * side))),
            min(ZOOM_MIN_SIZE, max(MIN_VIEW, int(round(zoom_factor * side)))))


@dataclass(frozen=True)
class ObjectScale:
    """The median longer side (image px) of a project's objects' boxes, over `objects`."""

    side: float
    objects: int

    def __post_init__(self) -> None:
        if not (np.isfinite(self.side) and self.side > 0) or self.objects < 1:
            raise ValueError(f"an object scale needs a positive side and at least one object, "
                             f"got side={self.side}, objects={self.objects}")

    @property
    def first_view(self) -> int:
        """Side (image px) of the crop the first click sees."""
        return view_sides(self.side)[0]

    @property
    def zoom_min(self) -> int:
        """Smallest side (image px) of the zoom-in of later clicks."""
        return view_sides(self.side)[1]

    @property
    def zoom_expand(self) -> float:
        """The zoom-in's context: wider than the general 1.4, so that an object larger than
        the project's median is not seen a few pixels from the frame's edge, magnified."""
        return ZOOM_EXPAND

    def to_dict(self) -> dict:
        return {"side": round(float(self.side), 2), "objects": int(self.objects),
                "first_view": self.first_view, "zoom_min": self.zoom_min,
                "zoom_expand": self.zoom_expand}

    @classmethod
    def from_dict(cls, d: dict) -> ObjectScale:
        try:
            return cls(float(d["side"]), int(d["objects"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an object scale: {d!r} ({exc})") from None


def measure_scale(masks: Iterable[np.ndarray]) -> ObjectScale | None:
    """The scale of the objects in `masks` (bool or 0/255 arrays); None when none has a pixel."""
    sides = []
    for m in masks:
        _x, _y, w, h = cv2.boundingRect((np.asarray(m) > 0).view(np.uint8))
        if w and h:
            sides.append(max(w, h))
    if not sides:
        return None
    return ObjectScale(float(np.median(sides)), len(sides))
