"""The standard next-click rule of interactive-segmentation benchmarks (RITM / ClickSEG / CDNet).

Why reimplement it exactly: published NoC numbers are only comparable when the simulated
annotator clicks where theirs does. The rule: take the false negatives and false positives
(ignored pixels excluded), pad each by 1 px with zeros so the image border counts as a boundary,
take the L2 distance transform (`cv2.DIST_L2`, exact mask size 0), crop the padding, zero the
pixels already clicked, and click the deepest error pixel. The click is positive only if the
false-negative maximum is strictly larger (ties go negative); among equal maxima the first pixel
in row-major order wins.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from cdnet.clicks import Click


def _as_bool(name: str, a: np.ndarray | None, shape: tuple[int, int] | None) -> np.ndarray | None:
    """Validate a 2-D mask and return it as bool (None passes through)."""
    if a is None:
        return None
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape} like the ground truth")
    return a.astype(bool, copy=False)


def error_distance(error: np.ndarray) -> np.ndarray:
    """L2 distance of each error pixel to the nearest non-error pixel, image border included.

    Padding with a 1-px zero frame makes the border act as boundary, so a click is not drawn to
    an error region just because it touches the image edge.
    """
    padded = np.pad(error.astype(np.uint8), 1, mode="constant", constant_values=0)
    dt = cv2.distanceTransform(padded, cv2.DIST_L2, 0)
    return dt[1:-1, 1:-1]


def clicked_map(shape: tuple[int, int], clicks: Iterable[Click]) -> np.ndarray:
    """True where no click has been placed yet (clicks rounded to the nearest pixel)."""
    free = np.ones(shape, dtype=bool)
    h, w = shape
    for c in clicks:
        y, x = int(round(c.y)), int(round(c.x))
        if 0 <= y < h and 0 <= x < w:
            free[y, x] = False
    return free


def next_click(
    gt: np.ndarray,
    pred: np.ndarray,
    ignore: np.ndarray | None = None,
    clicks: Iterable[Click] = (),
) -> Click | None:
    """The simulated annotator's next click for prediction `pred` against ground truth `gt`.

    `ignore` marks pixels that are neither object nor background (GrabCut's boundary band);
    `clicks` are the clicks already given, whose pixels cannot be clicked again. Returns None
    when no clickable error pixel is left (the prediction is perfect outside ignore/clicked
    pixels), so callers never receive a click on a correct pixel.
    """
    gt_b = _as_bool("gt", gt, None)
    pred_b = _as_bool("pred", pred, gt_b.shape)
    ign = _as_bool("ignore", ignore, gt_b.shape)
    fn = gt_b & ~pred_b
    fp = ~gt_b & pred_b
    if ign is not None:
        fn &= ~ign
        fp &= ~ign
    free = clicked_map(gt_b.shape, clicks)
    fn_dt = error_distance(fn) * free
    fp_dt = error_distance(fp) * free
    fn_max = float(fn_dt.max())
    fp_max = float(fp_dt.max())
    if fn_max <= 0.0 and fp_max <= 0.0:
        return None
    positive = fn_max > fp_max
    dt, best = (fn_dt, fn_max) if positive else (fp_dt, fp_max)
    flat = int(np.flatnonzero(dt == best)[0])  # row-major order: first pixel at the maximum
    y, x = divmod(flat, dt.shape[1])
    return Click(y, x, positive)
