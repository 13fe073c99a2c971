"""Masks as simplified polygons with holes and several parts, and back.

Why search the simplification tolerance instead of a fixed epsilon: a fixed share of the
perimeter is too coarse for small or thin parts and wastefully fine for large smooth ones; the
largest tolerance whose rasterised polygons still overlap the mask with IoU >= `min_iou` keeps
the editor light without visibly changing the mask. Holes are the 4-connected background
components enclosed by the mask, traced as background pixels so that filling them with 0 after
the exteriors with 1 reproduces the mask exactly at tolerance 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

TOLERANCES = (8.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.7, 0.5, 0.0)


@dataclass
class Part:
    """One connected piece of a mask: an exterior ring and its hole rings, (N, 2) (x, y) pixel
    centres. `holes` trace the holes' own (background) pixels, to be filled with 0; `inner`
    traces the part's pixels around each hole, the ring a hole-free format needs."""

    exterior: np.ndarray
    holes: list[np.ndarray] = field(default_factory=list)
    inner: list[np.ndarray] = field(default_factory=list)


def _check(mask: np.ndarray) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or min(mask.shape) == 0:
        raise ValueError(f"mask must be a non-empty 2-D array, got {getattr(mask, 'shape', None)}")
    return mask.astype(bool)


def _trace(mask: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]]:
    """Unsimplified (exterior, holes) contours of each 8-connected foreground component."""
    m = mask.astype(np.uint8)
    n_fg, fg_labels = cv2.connectedComponents(m, connectivity=8)
    exteriors: dict[int, np.ndarray] = {}
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    # islands inside holes are not found by RETR_EXTERNAL: trace each component on its own when
    # there are nested ones (rare), else map outer contours to components by one of their pixels
    for c in contours:
        x, y = c[0, 0]
        exteriors[int(fg_labels[y, x])] = c
    for k in range(1, n_fg):
        if k not in exteriors:
            cs, _ = cv2.findContours((fg_labels == k).astype(np.uint8), cv2.RETR_EXTERNAL,
                                     cv2.CHAIN_APPROX_NONE)
            exteriors[k] = max(cs, key=len)
    holes: dict[int, list[np.ndarray]] = {k: [] for k in exteriors}
    inner: dict[int, list[np.ndarray]] = {k: [] for k in exteriors}
    bg = (~mask).astype(np.uint8)
    n_bg, bg_labels, stats, _ = cv2.connectedComponentsWithStats(bg, connectivity=4)
    h, w = mask.shape
    for k in range(1, n_bg):
        x, y, bw, bh, _ = stats[k]
        if x == 0 or y == 0 or x + bw == w or y + bh == h:
            continue  # touches the image edge: outside, not a hole
        sub = bg_labels[y : y + bh, x : x + bw] == k
        top = int(np.argmax(sub[0]))  # first hole pixel of its top row
        owner = int(fg_labels[y - 1, x + top])  # the pixel above it encloses the hole
        cs, _ = cv2.findContours(sub.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE,
                                 offset=(int(x), int(y)))
        holes.setdefault(owner, []).append(max(cs, key=len))
        grown = cv2.dilate(np.pad(sub, 1).astype(np.uint8), np.ones((3, 3), np.uint8))
        cs, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE,
                                 offset=(int(x) - 1, int(y) - 1))
        inner.setdefault(owner, []).append(max(cs, key=len))
    return [(exteriors[k], holes.get(k, []), inner.get(k, [])) for k in sorted(exteriors)]


def _simplify(contour: np.ndarray, tol: float) -> np.ndarray:
    pts = contour if tol <= 0 else cv2.approxPolyDP(contour, tol, True)
    return pts.reshape(-1, 2).astype(np.float64)


def parts_to_mask(parts: list[Part], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise parts: each exterior filled with 1 (edges included) minus its own holes, so an
    island inside another part's hole survives."""
    out = np.zeros(shape, bool)
    for p in parts:
        x0, y0 = np.floor(p.exterior.min(axis=0)).astype(int)
        x1, y1 = np.ceil(p.exterior.max(axis=0)).astype(int) + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        layer = np.zeros((max(y1 - y0, 1), max(x1 - x0, 1)), np.uint8)
        ring = (np.round(p.exterior) - (x0, y0)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(layer, [ring], 1)
        cv2.polylines(layer, [ring], True, 1)
        for hole in p.holes:
            ring = (np.round(hole) - (x0, y0)).astype(np.int32).reshape(-1, 1, 2)
            cv2.fillPoly(layer, [ring], 0)
            cv2.polylines(layer, [ring], True, 0)
        view = out[y0:y1, x0:x1]
        view |= layer[: view.shape[0], : view.shape[1]].astype(bool)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def mask_to_parts(mask: np.ndarray, min_iou: float = 0.98,
                  tolerances: tuple[float, ...] = TOLERANCES, keyhole: bool = False) -> list[Part]:
    """The mask's parts (largest first), simplified with the largest tolerance in `tolerances`
    that keeps IoU(rasterised parts, mask) >= `min_iou`; an empty mask gives no parts.

    `keyhole`: judge the IoU on the parts' keyhole rings (what a hole-free format will show).
    """
    mask = _check(mask)
    if not 0.0 < min_iou <= 1.0:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
    if not mask.any():
        return []
    # work on the mask's tight bounding box padded by one pixel: the cost follows the object
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = np.pad(mask[y0:y1, x0:x1], 1)
    shift = np.array([x0 - 1, y0 - 1], dtype=np.float64)
    parts = _parts(crop, min_iou, tolerances, keyhole)
    for p in parts:
        p.exterior = p.exterior + shift
        p.holes = [hh + shift for hh in p.holes]
        p.inner = [hh + shift for hh in p.inner]
    return parts


def _parts(mask: np.ndarray, min_iou: float, tolerances: tuple[float, ...],
           keyhole: bool) -> list[Part]:
    traced = _trace(mask)
    if not traced:
        return []
    traced.sort(key=lambda t: -cv2.contourArea(t[0]) - len(t[0]))
    best: list[Part] = []
    for tol in sorted(tolerances, reverse=True):
        parts = []
        for ext, holes, inner in traced:
            e = _simplify(ext, tol)
            if len(e) < 3 and tol > 0:
                e = _simplify(ext, 0)
            simple = [_simplify(hh, tol) for hh in holes]
            around = [_simplify(hh, tol) for hh in inner]
            parts.append(Part(e, [hh for hh in simple if len(hh) >= 3 or tol == 0],
                              [hh for hh in around if len(hh) >= 3 or tol == 0]))
        best = parts
        drawn = (rings_to_mask([keyhole_ring(p) for p in parts], mask.shape) if keyhole
                 else parts_to_mask(parts, mask.shape))
        if iou(drawn, mask) >= min_iou:
            return parts
    return best


def keyhole_ring(part: Part) -> np.ndarray:
    """One ring for a part with holes, for formats without holes (Label Studio polygons).

    Each hole is spliced in through a zero-width bridge from its nearest exterior vertex and
    walked in the opposite direction, so nonzero and even-odd fill both leave it empty.
    """
    ring = part.exterior
    outer_sign = np.sign(_signed_area(ring)) or 1.0
    for hole in sorted(part.inner, key=lambda hh: -abs(_signed_area(hh))):
        if np.sign(_signed_area(hole)) == outer_sign:
            hole = hole[::-1]
        d = ((ring[:, None, :] - hole[None, :, :]) ** 2).sum(axis=2)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        loop = np.vstack([hole[j:], hole[: j + 1]])
        ring = np.vstack([ring[: i + 1], loop, ring[i:]])
    return ring


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def rings_to_mask(rings: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise hole-free rings (e.g. keyhole rings) with nonzero filling, edges included."""
    out = np.zeros(shape, np.uint8)
    for ring in rings:
        pts = np.round(ring).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(out, [pts], 1)
    return out.astype(bool)
