"""The backend's task images: the adapter's fetcher with its errors as ApiError, and the
per-process cache of prepared images.

Why cache prepared images: an annotator clicks 3-10 times on the same image; decoding a 12 MP
JPEG and the predictor's per-image work are paid once, not per click. The cache is the
backend's concern only (the workers read each image once), so it lives here, not in the
adapter (clicksmith.labelstudio.images), which decides where images may come from.

Why bounded in bytes, not only in images: what an image costs grows with its pixels (a 48 KB
all-black PNG can decode to 49 megapixels), so a count alone lets a few large images take
gigabytes. `CachedImage.nbytes` counts what a cached image holds: the RGB pixels (3 bytes a
pixel), the pyramid the first click on a large image builds (up to a third more: reserved
from the start), the predictor's resized whole-image views and the tools' per-image maps
(superpixel labels: 4 bytes a pixel per granularity, counted while still being computed).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.errors import ApiError
from clicksmith.labelstudio.client import LabelStudioError
from clicksmith.labelstudio.images import ImageFetcher
from clicksmith.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class CachedImage:
    """A decoded task image after the predictor's per-image preparation."""

    prepared: Any  # cdnet.PreparedImage
    height: int
    width: int
    tools: dict = field(default_factory=dict)  # per-image tool work (superpixels), backend.tools

    def nbytes(self) -> int:
        """The bytes this image holds or is about to hold (see the module's docstring)."""
        prepared = self.prepared
        rgb = getattr(prepared, "rgb", None)
        total = _array_bytes(rgb)
        levels = _array_bytes(getattr(prepared, "_levels", ()))
        total += max(levels, _pyramid_bytes(rgb))  # built lazily: reserved in full
        total += _array_bytes(getattr(prepared, "_resized", {}))
        for value in list(self.tools.values()):
            if isinstance(value, Future):
                if not value.done():  # a superpixel map on its way: int32, one per pixel
                    total += self.height * self.width * 4
                    continue
                value = None if value.cancelled() or value.exception() else value.result()
            total += _array_bytes(value)
        return total


def _array_bytes(value: object) -> int:
    """Bytes of the numpy arrays in `value`: an array, or a list, tuple or dict of them."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, list | tuple):
        return sum(_array_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_array_bytes(v) for v in list(value.values()))
    return 0


def _pyramid_bytes(rgb: object) -> int:
    """Bytes of every level `PreparedImage.level` can build below `rgb` (halving each side,
    rounding up, down to one pixel): at most a third of the image's own bytes."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim < 2:
        return 0
    h, w = rgb.shape[:2]
    per_pixel = rgb.itemsize * (rgb.shape[2] if rgb.ndim == 3 else 1)
    total = 0
    while h > 1 or w > 1:
        h, w = max(1, (h + 1) // 2), max(1, (w + 1) // 2)
        total += h * w * per_pixel
    return total


class TaskImages:
    """Task images for /predict: the adapter's rules, failures answered as ApiError.

    The adapter's status is kept (400: the task's image, 413: too large, 502: Label Studio or
    the image host failed); a transient failure gets 502 too, and Label Studio shows the reason.
    """

    def __init__(self, settings: Settings) -> None:
        self.fetcher = ImageFetcher(settings)

    def load(self, url: str, task_id: int | None = None) -> np.ndarray:
        try:
            return self.fetcher.load(url, task_id)
        except LabelStudioError as exc:
            raise ApiError(exc.status, str(exc)) from None


class ImageCache:
    """LRU of prepared images by URL, safe to share between request threads, bounded both in
    images (`size`) and in bytes (`max_bytes`, counted by `CachedImage.nbytes`).

    Images grow after they are cached (the pyramid, superpixels computed in the background), so
    the bytes are counted again on every `get` and `trim`; the least recently used images go
    first. An image that alone is over `max_bytes` is answered but not kept.
    """

    def __init__(self, size: int, max_bytes: int | None = None) -> None:
        self.size = max(1, size)
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, CachedImage] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.uncached = 0  # images answered but not kept: each alone over max_bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        """The bytes the cached images hold now (what `max_bytes` bounds)."""
        with self._lock:
            return sum(item.nbytes() for item in self._items.values())

    def get(self, url: str, build: Callable[[], CachedImage]) -> CachedImage:
        with self._lock:
            item = self._items.get(url)
            if item is not None:
                self._items.move_to_end(url)
                self.hits += 1
                self._trim(keep=url)
                return item
            self.misses += 1
        item = build()  # outside the lock: a slow download must not block other images
        with self._lock:
            if self.max_bytes is not None and item.nbytes() > self.max_bytes:
                self.uncached += 1
                log.warning("image %dx%d needs %d bytes, over the image cache's %d "
                            "(IMAGE_CACHE_BYTES): answered without caching it",
                            item.width, item.height, item.nbytes(), self.max_bytes)
                return item
            self._items[url] = item
            self._items.move_to_end(url)
            self._trim(keep=url)
        return item

    def trim(self) -> None:
        """Count the images' bytes again (they grow after `get`) and evict down to the bounds."""
        with self._lock:
            self._trim()

    def _trim(self, keep: str | None = None) -> None:
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        if self.max_bytes is None:
            return
        costs = {url: item.nbytes() for url, item in self._items.items()}
        total = sum(costs.values())
        for url in list(self._items):  # oldest first
            if total <= self.max_bytes:
                break
            if url == keep:
                continue
            del self._items[url]
            total -= costs[url]
