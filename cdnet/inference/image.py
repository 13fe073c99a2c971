"""Image intake: validate and convert any image once, keep per-image work for later clicks."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


def as_rgb(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 (uint8, or float in [0, 1]) -> contiguous HxWx3 uint8 RGB."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.size == 0 or image.ndim < 2 or min(image.shape[:2]) == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
    image = image[:, :, :3]
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise ValueError("a float image must hold finite values in [0, 1]")
        return np.ascontiguousarray((image * 255 + 0.5).astype(np.uint8))
    raise ValueError(f"image dtype must be uint8 or float, got {image.dtype}")


def as_mask(mask: np.ndarray, shape: tuple[int, int], what: str = "prior_mask") -> np.ndarray:
    """Any 0/non-zero HxW array of the image's size -> bool HxW."""
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(mask).__name__}")
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.shape != shape:
        raise ValueError(f"{what} has shape {mask.shape}, the image is {shape}")
    if mask.dtype != bool and not (np.issubdtype(mask.dtype, np.number)):
        raise ValueError(f"{what} dtype must be bool or numeric, got {mask.dtype}")
    return mask.astype(bool) if mask.dtype != bool else mask


@dataclass
class PreparedImage:
    """An RGB image plus a cache of resized copies, shared by every click on this image."""

    rgb: np.ndarray
    _resized: dict = field(default_factory=dict, repr=False)
    _levels: list = field(default_factory=list, repr=False)

    @classmethod
    def of(cls, image: np.ndarray | PreparedImage) -> PreparedImage:
        return image if isinstance(image, PreparedImage) else cls(as_rgb(image))

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[:2]

    def cached(self, key: tuple, compute):
        """Per-image work (e.g. the whole-image resize) computed once; a few entries at most."""
        if key not in self._resized:
            if len(self._resized) >= 4:
                self._resized.pop(next(iter(self._resized)))
            self._resized[key] = compute()
        return self._resized[key]

    def level(self, k: int) -> np.ndarray:
        """The image halved `k` times by area averaging, each level computed once from the one
        above it: zoomed views of a large photo sample from here instead of the full image."""
        if k == 0:
            return self.rgb
        while len(self._levels) < k:
            above = self._levels[-1] if self._levels else self.rgb
            h, w = above.shape[:2]
            size = (max(1, (w + 1) // 2), max(1, (h + 1) // 2))
            self._levels.append(cv2.resize(above, size, interpolation=cv2.INTER_AREA))
        return self._levels[k - 1]
