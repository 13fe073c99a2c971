"""Decoded task regions kept between clicks: a region is decoded once, not once per request.

Why: every interactive /predict carries the task's regions again (drafts, annotations,
predictions), and the newest brush region of the label is the session's prior or the edit to
adopt, so each click read it. Decoding one Label Studio brush RLE at 1024x1024 costs about
10-25 ms (the SDK's decoder is pure Python), paid on every click of a task holding a region,
more than the click's own network run. A click after the first finds the same region (same
bytes) here.

The key is the region's content, not its id: the RLE bytes (or the bitmask's data URL), its
type, format and size, so an edited region (new RLE, same id) is decoded afresh and two
copies of one mask (a draft of an annotation) share one entry. A region that does not decode
is never kept: its ValueError is raised again by the next request, as the adapter expects
(clicksmith/labelstudio/regions.py skips it). Bounded by entries and bytes (the masks are
kept as bool arrays, one byte a pixel: 1 MB at 1024x1024, 12 MB at 4000x3000), least
recently used first out; a mask over the whole byte budget is decoded but not kept.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from clicksmith.labelstudio.results import RleText, decode_mask

MAX_ENTRIES = 32
MAX_BYTES = 32 << 20


def region_key(item: object) -> tuple | None:
    """The content key of a brush or bitmask result item; None when it cannot be keyed (then
    it is decoded every time, and its own errors are raised by the decoder)."""
    if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
        return None
    value = item["value"]
    kind = str(item.get("type", "")).lower()
    data = value.get("imageDataURL") if kind == "bitmasklabels" else value.get("rle")
    if isinstance(data, RleText):  # not parsed yet (backend/lazy_rle.py): keyed by its text
        raw = b"text:" + data.text
    elif isinstance(data, str):
        raw = data.encode("utf-8", "surrogatepass")
    elif isinstance(data, list) and all(type(v) is int for v in data):
        try:
            raw = bytes(data)  # raises unless every value is 0..255
        except ValueError:
            return None
    else:
        return None
    size = (item.get("original_height"), item.get("original_width"))
    if not all(type(v) is int for v in size):
        return None  # floats holding whole numbers decode, but are not worth keying
    return (kind, value.get("format"), *size, hashlib.blake2b(raw, digest_size=16).digest())


class RegionMasks:
    """`decode(item)`: the region's mask, from memory when the same region was decoded
    before (a fresh array each time: callers may change it). Thread safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.decoded = 0  # regions decoded (misses), for tests and curiosity
        self.hits = 0

    def decode(self, item: object) -> np.ndarray:
        key = region_key(item)
        if key is not None:
            with self._lock:
                mask = self._masks.get(key)
                if mask is not None:
                    self._masks.move_to_end(key)
                    self.hits += 1
                    return mask.copy()
        mask = decode_mask(item)  # ValueError for a region that does not decode: not kept
        with self._lock:
            self.decoded += 1
            if key is not None and mask.nbytes <= self.max_bytes and key not in self._masks:
                kept = mask.copy()
                kept.flags.writeable = False
                self._masks[key] = kept
                self._bytes += kept.nbytes
                while len(self._masks) > self.max_entries or self._bytes > self.max_bytes:
                    _, old = self._masks.popitem(last=False)
                    self._bytes -= old.nbytes
        return mask

    def __len__(self) -> int:
        return len(self._masks)

    @property
    def nbytes(self) -> int:
        return self._bytes
