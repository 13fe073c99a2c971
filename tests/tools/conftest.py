"""GrabCut images for the tool tests (skipped with the reason when ../shared is absent)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

GRABCUT = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "grabcut"


def load_grabcut(stem: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, bool ground-truth mask) of one GrabCut image."""
    if not (GRABCUT / "images").is_dir():
        pytest.skip(f"GrabCut dataset not found at {GRABCUT} (needs ../shared/datasets/grabcut)")
    image_path = next((GRABCUT / "images").glob(f"{stem}.*"))
    rgb = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
    gt = cv2.imread(str(GRABCUT / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
    return rgb, gt


def grabcut_stems() -> list[str]:
    if not (GRABCUT / "masks").is_dir():
        return []
    return sorted(p.stem for p in (GRABCUT / "masks").iterdir())


def coarse_mask(gt: np.ndarray, factor: int = 16) -> np.ndarray:
    """A fuzzy version of `gt`, as a low-resolution decoder would give: down `factor` times,
    bilinear back up (rounded corners, missed thin parts, edges a few pixels off)."""
    h, w = gt.shape
    small = cv2.resize(gt.astype(np.float32), (w // factor, h // factor),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5


def edge_band(mask: np.ndarray, radius: int = 6) -> np.ndarray:
    """What an annotator paints over the mask's edge: its boundary grown by `radius`."""
    m = mask.astype(np.uint8)
    edge = m - cv2.erode(m, np.ones((3, 3), np.uint8))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(edge, k) > 0
