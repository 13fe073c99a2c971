"""The classical baseline: OpenCV GrabCut driven by the same simulated clicks as our model.

Why wrap it as a predictor with sessions: the evaluation loop is then one piece of code for both
methods, so the baseline sees exactly the same clicks, priors and ignore bands, and a report's
side-by-side numbers differ only by the segmenter.

Initialisation from the clicks (recomputed from scratch at every click, 5 iterations):
- a rectangle around the positive clicks (and the prior mask, when one is given), expanded by
  40 % of its size and at least 10 % of the image's longer side: outside it is GC_BGD, inside
  GC_PR_FGD (or, with a prior, GC_PR_FGD on the prior and GC_PR_BGD elsewhere);
- a disk of radius 5 px around each click: GC_FGD for positive, GC_BGD for negative clicks;
- GrabCut runs on the box plus a ring of background around it (25 % of the box side, >= 16 px)
  only, not the whole image: pixels farther out are background either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cdnet.clicks import Click

ITERATIONS = 5
DISK_RADIUS = 5
EXPAND = 0.4
MIN_MARGIN = 0.10  # chosen over 0.25 on 8 COCO-MVal objects (training data), never on GrabCut
RING = 0.25  # background ring around the box given to GrabCut, as a fraction of the box side
RING_MIN = 16


@dataclass(frozen=True)
class GrabCutResult:
    """The same fields the evaluation reads from the model's `Result`."""

    mask: np.ndarray
    probs: np.ndarray


def _box(points: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Expanded, clamped (y0, x0, y1, x1) box, end-exclusive, around (y, x) points."""
    h, w = shape
    y0, x0 = points.min(axis=0)
    y1, x1 = points.max(axis=0) + 1
    my = max(EXPAND * (y1 - y0), MIN_MARGIN * max(h, w))
    mx = max(EXPAND * (x1 - x0), MIN_MARGIN * max(h, w))
    return (max(0, int(y0 - my)), max(0, int(x0 - mx)),
            min(h, int(np.ceil(y1 + my))), min(w, int(np.ceil(x1 + mx))))


class GrabCutSession:
    """Session-like wrapper: `add_click(click) -> result`, `result`, `clicks`."""

    def __init__(self, image: np.ndarray, prior_mask: np.ndarray | None = None) -> None:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"GrabCut needs an HxWx3 uint8 RGB image, got {image.shape} "
                             f"{image.dtype}")
        self._bgr = np.ascontiguousarray(image[..., ::-1])
        self._shape = image.shape[:2]
        if prior_mask is not None:
            prior_mask = np.asarray(prior_mask).astype(bool)
            if prior_mask.shape != self._shape:
                raise ValueError(f"prior mask {prior_mask.shape} != image {self._shape}")
        self._prior = prior_mask
        self._clicks: list[Click] = []
        empty = np.zeros(self._shape, bool) if prior_mask is None else prior_mask.copy()
        self._result = GrabCutResult(empty, empty.astype(np.float32))

    @property
    def clicks(self) -> tuple[Click, ...]:
        return tuple(self._clicks)

    @property
    def result(self) -> GrabCutResult:
        return self._result

    def add_click(self, click: Click) -> GrabCutResult:
        h, w = self._shape
        if not (0 <= click.y < h and 0 <= click.x < w):
            raise ValueError(f"click ({click.y}, {click.x}) is outside the {h}x{w} image")
        self._clicks.append(click)
        mask = self._segment()
        self._result = GrabCutResult(mask, mask.astype(np.float32))
        return self._result

    def _segment(self) -> np.ndarray:
        pos = np.array([(c.y, c.x) for c in self._clicks if c.positive], dtype=float)
        pts = [pos] if len(pos) else []
        if self._prior is not None and self._prior.any():
            ys, xs = np.nonzero(self._prior)
            pts.append(np.array([[ys.min(), xs.min()], [ys.max(), xs.max()]], dtype=float))
        if not pts:  # nothing marked as object yet: nothing to segment
            return np.zeros(self._shape, bool)
        y0, x0, y1, x1 = _box(np.concatenate(pts), self._shape)
        gc = np.full(self._shape, cv2.GC_BGD, np.uint8)
        if self._prior is None:
            gc[y0:y1, x0:x1] = cv2.GC_PR_FGD
        else:
            inside = np.zeros(self._shape, bool)
            inside[y0:y1, x0:x1] = True
            gc[inside] = cv2.GC_PR_BGD
            gc[inside & self._prior] = cv2.GC_PR_FGD
        if not np.isin(gc, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
            # the box covers the whole image: let the frame be probable background so the
            # background colour model has samples
            gc[[0, -1], :] = cv2.GC_PR_BGD
            gc[:, [0, -1]] = cv2.GC_PR_BGD
        for c in self._clicks:
            cv2.circle(gc, (int(round(c.x)), int(round(c.y))), DISK_RADIUS,
                       int(cv2.GC_FGD if c.positive else cv2.GC_BGD), -1)
        if not np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)).any():
            return np.zeros(self._shape, bool)
        # Only the box and a ring of definite background around it can change; running on
        # that crop gives the same kind of result several times faster (the background colour
        # model is then learned from the ring, i.e. locally).
        h, w = self._shape
        ring = max(RING_MIN, int(RING * max(y1 - y0, x1 - x0)))
        cy0, cx0 = max(0, y0 - ring), max(0, x0 - ring)
        cy1, cx1 = min(h, y1 + ring), min(w, x1 + ring)
        crop = np.ascontiguousarray(gc[cy0:cy1, cx0:cx1])
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's k-means init draws from OpenCV's global RNG
        cv2.grabCut(np.ascontiguousarray(self._bgr[cy0:cy1, cx0:cx1]), crop, None, bgd, fgd,
                    ITERATIONS, cv2.GC_INIT_WITH_MASK)
        out = np.zeros(self._shape, bool)
        out[cy0:cy1, cx0:cx1] = np.isin(crop, (cv2.GC_FGD, cv2.GC_PR_FGD))
        return out


class GrabCutPredictor:
    """Predictor-like factory of GrabCut sessions, for the shared evaluation loop."""

    model_version = "opencv-grabcut"
    progressive = None  # not applicable: every click re-segments the whole box

    def session(self, image: np.ndarray, prior_mask: np.ndarray | None = None) -> GrabCutSession:
        return GrabCutSession(image, prior_mask)
