"""The auxiliary tools (cdnet.tools) behind Label Studio controls, and the edits they lock.

Naming convention (a control's name says which tool it is, so any Label Studio version sends
its regions without custom attributes):
- `KeyPointLabels` named `superpixel…`: a click fills (Alt-click: removes) the superpixel under
  it; `superpixel_<N>` uses superpixels about N pixels across (4..256), a plain name the
  `superpixel_size` setting. Several such controls give the annotator several granularities.
- `KeyPointLabels` named `lasso…`: lasso points, joined by edge-snapping paths; a point near the
  first one (2 % of the image diagonal, at least 6 px) closes the loop and fills (first point
  Alt-clicked: removes) the enclosed region. Until then the answer shows the snapped path as an
  open polygon when the label has a PolygonLabels control.
- `BrushLabels` named `refine…`: paint over a fuzzy edge; inside the painted band only, the edge
  is recomputed from the image. Such a control never receives the mask.
Every tool edits the session's current mask, and the pixels it set are locked: later clicks
(whose network output would otherwise re-predict them) cannot change them, unless a click lands
on a locked pixel with the opposite polarity, which releases that locked patch. The annotator's
own edits of the returned region in Label Studio (its brush eraser or brush, seen in the task's
drafts/annotations) are adopted the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from backend.packing import pack_mask, unpack_mask
from backend.sessions import LassoState
from clicksmith.labelstudio.config import (  # noqa: F401 - the naming convention
    LASSO,
    REFINE,
    SUPERPIXEL,
    superpixel_size,
    tool_of,
)

if TYPE_CHECKING:
    from backend.prompts import PixelToolPoint, Stroke
    from backend.sessions import SessionRecord

SEEN_LIMIT = 64  # digests of answered masks / consumed points remembered per session


def mask_digest(mask: np.ndarray) -> str:
    """A digest of the mask's pixels (not of its RLE: Label Studio may re-encode a region)."""
    return hashlib.sha1(np.packbits(mask.astype(bool)).tobytes() + str(mask.shape).encode()
                        ).hexdigest()[:16]


def remember(items: list, value: object) -> list:
    """`items` with `value` appended once, the oldest dropped past SEEN_LIMIT."""
    out = [v for v in items if v != value] + [value]
    return out[-SEEN_LIMIT:]


@dataclass
class Locks:
    """Pixels tools fixed: `on` stay in the mask, `off` stay out, whatever later clicks say."""

    on: np.ndarray
    off: np.ndarray

    @classmethod
    def load(cls, on: bytes, off: bytes, shape: tuple[int, int]) -> Locks:
        empty = np.zeros(shape, bool)
        a = unpack_mask(on) if on else empty
        b = unpack_mask(off) if off else empty.copy()
        if a.shape != shape or b.shape != shape:
            a, b = empty, empty.copy()
        return cls(a, b)

    def dump(self) -> tuple[bytes, bytes]:
        return (pack_mask(self.on) if self.on.any() else b"",
                pack_mask(self.off) if self.off.any() else b"")

    def fix(self, region: np.ndarray, value: np.ndarray | bool) -> None:
        """Lock `region` to `value` (a mask or a constant)."""
        value = np.broadcast_to(np.asarray(value, bool), region.shape)
        self.on = (self.on & ~region) | (region & value)
        self.off = (self.off & ~region) | (region & ~value)

    def release_at(self, y: float, x: float, positive: bool) -> None:
        """A click on a pixel locked to the opposite value frees that locked patch."""
        yi, xi = int(y), int(x)
        layer = self.off if positive else self.on
        if not layer[yi, xi]:
            return
        _, labels = cv2.connectedComponents(layer.astype(np.uint8), connectivity=4)
        layer &= labels != labels[yi, xi]

    def apply(self, mask: np.ndarray) -> np.ndarray:
        return (mask | self.on) & ~self.off

    def limit(self, inside: np.ndarray) -> None:
        self.on &= inside
        self.off &= inside


@dataclass
class ToolOutcome:
    """The mask after this request's tool actions, their kinds, and an open lasso's path."""

    mask: np.ndarray
    kinds: list[str]
    path: np.ndarray | None  # (N, 2) (y, x) pixels of the open lasso, None when none is open


def point_key(control: str, y: float, x: float, positive: bool) -> str:
    return f"{control}:{y:.3f}:{x:.3f}:{int(positive)}"


def superpixel_labels(rgb: np.ndarray, size: int, cache: dict | None) -> np.ndarray:
    """The image's superpixels at `size`, computed once per image while it is cached (or
    waited for, when `precompute_superpixels` started them when the image was loaded)."""
    from cdnet.tools import superpixels

    if cache is None:
        return superpixels(rgb, size)
    key = ("superpixels", size)
    if key not in cache:
        cache[key] = superpixels(rgb, size)
    value = cache[key]
    if isinstance(value, Future):
        value = value.result()  # re-raises what the background computation raised
        cache[key] = value
    return value


def precompute_superpixels(rgb: np.ndarray, sizes: Iterable[int], cache: dict,
                           executor: Executor) -> None:
    """Start the superpixels of a freshly loaded image in the background.

    Why: SLIC takes about a second per megapixel, which the first fill would otherwise wait
    for; the annotator usually clicks for a while first, and the fill then finds them ready.
    """
    from cdnet.tools import superpixels

    for size in sizes:
        key = ("superpixels", size)
        if key not in cache:  # a race only computes twice; setdefault keeps one
            cache.setdefault(key, executor.submit(superpixels, rgb, size))


def run_tools(rgb: np.ndarray, current: np.ndarray, points: Sequence[PixelToolPoint],
              refines: Sequence[Stroke], memory: SessionRecord, locks: Locks,
              cache: dict | None, default_size: int) -> ToolOutcome:
    """Apply the superpixel points, lasso points and refine bands not seen before.

    `memory` (the session record) remembers consumed points and bands, so a context that still
    holds them (auto-accept off) does not apply them twice, and the open lasso; it is updated
    here. Every changed region is locked in `locks`.
    """
    from cdnet.tools import apply_lasso, fill_path, is_closing, refine_band, snap_path
    from cdnet.tools.superpixels import superpixel_fill

    h, w = current.shape
    mask = current.copy()
    kinds: list[str] = []
    done = list(memory.points_done)
    lasso = memory.lasso
    for tp in points:
        y, x = tp.y, tp.x
        key = point_key(tp.control, y, x, tp.positive)
        if key in done:
            continue
        done = remember(done, key)
        if tp.tool == SUPERPIXEL:
            labels = superpixel_labels(rgb, superpixel_size(tp.control, default_size), cache)
            mask, region = superpixel_fill(mask, labels, y, x, tp.positive)
            locks.fix(region, tp.positive)
            kinds.append(SUPERPIXEL)
            continue
        points_so_far = [tuple(p) for p in lasso.points]
        if is_closing(points_so_far, (y, x), (h, w)):
            back = snap_path(rgb, points_so_far[-1], points_so_far[0])
            ring = np.vstack([np.asarray(lasso.path, np.int32).reshape(-1, 2), back[1:]])
            region = fill_path(ring, (h, w))
            mask = apply_lasso(mask, region, lasso.positive)
            locks.fix(region, lasso.positive)
            lasso = LassoState()
            kinds.append(LASSO)
            continue
        if not points_so_far:
            lasso = LassoState([[y, x]], [[int(y), int(x)]], tp.positive)
        else:
            seg = snap_path(rgb, points_so_far[-1], (y, x))
            lasso = LassoState(lasso.points + [[y, x]], lasso.path + seg[1:].tolist(),
                               lasso.positive)
        kinds.append("lasso_point")
    applied = list(memory.refined)
    for stroke in refines:
        if stroke.digest in applied:
            continue
        applied = remember(applied, stroke.digest)
        band = stroke.mask(h, w)
        mask = refine_band(rgb, mask, band)
        locks.fix(band, mask)
        kinds.append(REFINE)
    memory.points_done = done
    memory.refined = applied
    memory.lasso = lasso
    path = np.asarray(lasso.path, np.int32).reshape(-1, 2) if lasso.points else None
    return ToolOutcome(mask, kinds, path)
