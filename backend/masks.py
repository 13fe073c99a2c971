"""Mask encodings: Label Studio brush RLE, polygons, and a compact form for session storage.

Why the SDK's RLE (label_studio_sdk.converter.brush): it is the format the Label Studio editor
decodes, so using its own encoder keeps our masks byte-compatible with what annotators paint.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """A bool/0-1 HxW mask as Label Studio brush RLE (alpha 255 inside the mask)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    alpha = mask.astype(bool, copy=False).view(np.uint8) * np.uint8(255)
    return [int(v) for v in mask2rle(alpha)]


def rle_to_mask(rle: object, height: int, width: int) -> np.ndarray:
    """Decode Label Studio brush RLE of a `height` x `width` image to a bool mask.

    ValueError when the RLE is malformed or encodes a different number of pixels, so a stroke
    from another image size can never be silently reshaped into nonsense.
    """
    if not isinstance(rle, list) or not rle:
        raise ValueError("brush RLE must be a non-empty list of byte values")
    if not all(isinstance(v, int) and 0 <= v <= 255 for v in rle):
        raise ValueError("brush RLE must hold integers 0..255")
    try:
        flat = decode_rle(rle)
    except Exception as exc:  # truncated bit streams raise ValueError/IndexError inside the SDK
        raise ValueError(f"brush RLE cannot be decoded: {exc}") from None
    if flat.size != height * width * 4:
        raise ValueError(
            f"brush RLE holds {flat.size // 4} pixels, the image has {height}x{width}"
        )
    return flat.reshape(height, width, 4)[:, :, 3] > 127


def mask_to_polygons(mask: np.ndarray, min_area: float = 16.0,
                     min_iou: float = 0.98) -> list[list[list[float]]]:
    """The mask's parts as Label Studio polygons: lists of [x%, y%] points, largest first.

    Simplified by cdnet.tools.polygons with the coarsest tolerance that keeps IoU >= `min_iou`
    (few vertices keep the editor responsive); holes are joined to their part's outline through
    a zero-width bridge, since Label Studio polygons have no holes. Parts smaller than
    `min_area` pixels are left out when the rest still meets `min_iou` (specks would each be a
    region to delete).
    """
    from cdnet.tools.polygons import keyhole_ring, mask_to_parts

    mask = mask.astype(bool)
    h, w = mask.shape
    kept = mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    small = stats[1:, cv2.CC_STAT_AREA] < min_area
    if small.any():
        drop = np.concatenate([[False], small])
        lost = int(stats[1:, cv2.CC_STAT_AREA][small].sum())
        if 1.0 - lost / max(int(mask.sum()), 1) >= min_iou:  # IoU of the kept part vs the mask
            kept = mask & ~drop[labels]
    polygons = []
    for part in mask_to_parts(kept, min_iou=min_iou, keyhole=True):
        ring = keyhole_ring(part)
        if len(ring) < 3:
            continue
        polygons.append([[float(x) * 100.0 / w, float(y) * 100.0 / h] for x, y in ring.tolist()])
    return polygons


def path_points(path: np.ndarray, tolerance: float = 1.0) -> list[tuple[float, float]]:
    """An (N, 2) (y, x) pixel path as simplified (x, y) points for an open polygon."""
    pts = np.ascontiguousarray(path[:, ::-1], dtype=np.int32).reshape(-1, 1, 2)
    approx = cv2.approxPolyDP(pts, tolerance, False).reshape(-1, 2)
    return [(float(x), float(y)) for x, y in approx.tolist()]


def pack_mask(mask: np.ndarray) -> bytes:
    """A bool mask as compressed bytes (shape header + packed bits) for Redis or memory."""
    h, w = mask.shape
    header = np.array([h, w], dtype=np.uint32).tobytes()
    return header + zlib.compress(np.packbits(mask.astype(bool), axis=None).tobytes(), 1)


def unpack_mask(data: bytes) -> np.ndarray:
    """Inverse of pack_mask."""
    h, w = (int(v) for v in np.frombuffer(data[:8], dtype=np.uint32))
    bits = np.frombuffer(zlib.decompress(data[8:]), dtype=np.uint8)
    return np.unpackbits(bits, count=h * w).reshape(h, w).astype(bool)
