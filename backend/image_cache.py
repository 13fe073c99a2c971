"""The backend's task images: the adapter's fetcher with its errors as ApiError, and the
per-process cache of prepared images.

Why cache prepared images: an annotator clicks 3-10 times on the same image; decoding a 12 MP
JPEG and the predictor's per-image work are paid once, not per click. The cache is the
backend's concern only (the workers read each image once), so it lives here, not in the
adapter (clicksmith.labelstudio.images), which decides where images may come from.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.errors import ApiError
from clicksmith.labelstudio.client import LabelStudioError
from clicksmith.labelstudio.images import ImageFetcher
from clicksmith.settings import Settings


@dataclass
class CachedImage:
    """A decoded task image after the predictor's per-image preparation."""

    prepared: Any  # cdnet.PreparedImage
    height: int
    width: int
    tools: dict = field(default_factory=dict)  # per-image tool work (superpixels), backend.tools


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
    """LRU of prepared images by URL, safe to share between request threads."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._items: OrderedDict[str, CachedImage] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, url: str, build: Callable[[], CachedImage]) -> CachedImage:
        with self._lock:
            item = self._items.get(url)
            if item is not None:
                self._items.move_to_end(url)
                self.hits += 1
                return item
            self.misses += 1
        item = build()  # outside the lock: a slow download must not block other images
        with self._lock:
            self._items[url] = item
            self._items.move_to_end(url)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return item
