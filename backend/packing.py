"""A compact form of masks for session storage (Redis or memory): not a Label Studio format."""

from __future__ import annotations

import zlib

import numpy as np


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
