"""Edge lasso: points joined by minimal paths that snap to image edges (intelligent scissors).

Why OpenCV's IntelligentScissorsMB on a crop: its feature extraction and Dijkstra map cover the
whole image it is given (over a second at 1024x1024 on this CPU), while a segment between two
lasso points only needs the rectangle around them plus a margin for detours (a few ms to a few
tens of ms). The crop is the only approximation: a path never leaves the points' bounding box
grown by `margin`.
"""

from __future__ import annotations

import cv2
import numpy as np

Point = tuple[float, float]  # (y, x) pixels


def _pixel(p: Point, shape: tuple[int, int], what: str) -> tuple[int, int]:
    y, x = float(p[0]), float(p[1])
    h, w = shape
    if not (np.isfinite(y) and np.isfinite(x) and 0 <= y < h and 0 <= x < w):
        raise ValueError(f"{what} (y={y}, x={x}) is outside the {h}x{w} image")
    return int(y), int(x)


def snap_path(image: np.ndarray, start: Point, end: Point, margin: int = 24) -> np.ndarray:
    """The edge-following path from `start` to `end` as an (N, 2) int array of (y, x), both ends
    included."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError("image must be an HxWx3 uint8 array")
    shape = image.shape[:2]
    y0, x0 = _pixel(start, shape, "lasso point")
    y1, x1 = _pixel(end, shape, "lasso point")
    if (y0, x0) == (y1, x1):
        return np.array([[y0, x0]], dtype=np.int32)
    top, left = max(0, min(y0, y1) - margin), max(0, min(x0, x1) - margin)
    bottom = min(shape[0], max(y0, y1) + margin + 1)
    right = min(shape[1], max(x0, x1) + margin + 1)
    crop = np.ascontiguousarray(image[top:bottom, left:right])
    scissors = cv2.segmentation.IntelligentScissorsMB()
    scissors.setEdgeFeatureCannyParameters(32, 100)
    scissors.setGradientMagnitudeMaxLimit(200)
    scissors.applyImage(crop)
    scissors.buildMap((x0 - left, y0 - top))
    contour = scissors.getContour((x1 - left, y1 - top)).reshape(-1, 2)[:, ::-1]  # (y, x)
    path = contour.astype(np.int32) + np.array([top, left], dtype=np.int32)
    if len(path) > 1 and tuple(path[0]) == (y1, x1):
        path = path[::-1]
    if tuple(path[0]) != (y0, x0):
        path = np.vstack([[[y0, x0]], path])
    if tuple(path[-1]) != (y1, x1):
        path = np.vstack([path, [[y1, x1]]])
    return path


def lasso_path(image: np.ndarray, points: list[Point], closed: bool = False,
               margin: int = 24) -> np.ndarray:
    """All segments between consecutive points joined (and back to the first when `closed`)."""
    if not points:
        return np.zeros((0, 2), dtype=np.int32)
    stops = list(points) + ([points[0]] if closed and len(points) > 1 else [])
    parts = [snap_path(image, stops[0], stops[0], margin)]
    for a, b in zip(stops[:-1], stops[1:], strict=True):
        parts.append(snap_path(image, a, b, margin)[1:])
    return np.vstack(parts)


def fill_path(path: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The region enclosed by a closed path (the path's own pixels included) as a bool mask."""
    if path.ndim != 2 or path.shape[1] != 2:
        raise ValueError(f"path must be an (N, 2) array of (y, x), got shape {path.shape}")
    out = np.zeros(shape, np.uint8)
    if len(path):
        pts = np.ascontiguousarray(path[:, ::-1], dtype=np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(out, [pts], 1)
        cv2.polylines(out, [pts], True, 1)
    return out.astype(bool)


def is_closing(points: list[Point], new: Point, shape: tuple[int, int],
               radius_frac: float = 0.02, min_radius: float = 6.0) -> bool:
    """Whether `new` lands near enough to the first of at least three points to close the loop.

    The radius is a share of the image diagonal so closing works the same at every zoom level.
    """
    if len(points) < 3:
        return False
    radius = max(min_radius, radius_frac * float(np.hypot(*shape)))
    return float(np.hypot(new[0] - points[0][0], new[1] - points[0][1])) <= radius


def apply_lasso(mask: np.ndarray, region: np.ndarray, positive: bool) -> np.ndarray:
    """`mask` with the lasso's enclosed `region` added (positive) or removed."""
    if mask.shape != region.shape:
        raise ValueError(f"mask {mask.shape} and lasso region {region.shape} differ")
    return (mask | region) if positive else (mask & ~region)
