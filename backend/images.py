"""Task images: where they may come from, how they are read, and the per-process cache.

Why a host allow-list: task data is written by whoever imports tasks, and a backend that fetches
any URL it is handed is a server-side request forgery tool. Only the configured Label Studio host
(which also gets the API key) and hosts the operator lists explicitly are ever contacted.
Why cache prepared images: an annotator clicks 3-10 times on the same image; decoding a 12 MP
JPEG and the predictor's per-image work are paid once, not per click.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
from PIL import Image

from backend.errors import ApiError

_CLOUD_SCHEMES = ("s3:", "gs:", "azure-blob:")
_LS_RELATIVE = ("/data/", "data/", "/upload", "upload/", "/storage-data/", "storage-data/")


@dataclass
class CachedImage:
    """A decoded task image after the predictor's per-image preparation."""

    prepared: Any  # cdnet.PreparedImage
    height: int
    width: int
    tools: dict = field(default_factory=dict)  # per-image tool work (superpixels), backend.tools


def _is_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and all(parts)


class LabelStudioToken:
    """The token to send to Label Studio: a legacy token as is, a personal access token exchanged.

    Personal access tokens are JWT refresh tokens; Label Studio only accepts the short-lived
    access token obtained from `POST /api/token/refresh/`, so it is fetched and renewed here.
    """

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._access = ""
        self._expires = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        if not self.api_key or not _is_jwt(self.api_key):
            return self.api_key
        with self._lock:
            if self._access and time.time() < self._expires - 30:
                return self._access
            import jwt
            import requests

            response = requests.post(
                f"{self.base_url}/api/token/refresh/", json={"refresh": self.api_key}, timeout=10
            )
            if response.status_code != 200:
                raise ApiError(
                    502,
                    f"Label Studio refused LABEL_STUDIO_API_KEY ({response.status_code}); "
                    "check that the personal access token is valid",
                )
            self._access = response.json()["access"]
            claims = jwt.decode(self._access, options={"verify_signature": False})
            self._expires = float(claims.get("exp", time.time() + 60))
            return self._access


class ImageFetcher:
    """Turns a task's image reference into a decoded RGB array, refusing untrusted hosts."""

    def __init__(
        self,
        label_studio_url: str,
        api_key: str,
        allowed_hosts: str,
        max_pixels: int,
        cache_dir: str,
    ) -> None:
        self.label_studio_url = label_studio_url.rstrip("/")
        self.token = LabelStudioToken(self.label_studio_url, api_key)
        self.allowed = {h.strip().lower() for h in allowed_hosts.split(",") if h.strip()}
        if self.label_studio_url:
            self.allowed.add(urlparse(self.label_studio_url).netloc.lower())
        self.max_pixels = max_pixels
        self.cache_dir = cache_dir

    def host_allowed(self, url: str) -> bool:
        parsed = urlparse(url)
        netloc = parsed.netloc.lower()
        return netloc in self.allowed or (parsed.hostname or "").lower() in self.allowed

    def local_path(self, url: str, task_id: int | None) -> tuple[str, bool]:
        """A file holding the image and whether it is a download to delete after reading."""
        from label_studio_sdk._extensions.label_studio_tools.core.utils.io import get_local_path

        scheme = urlparse(url).scheme.lower()
        if scheme in ("http", "https"):
            if not self.host_allowed(url):
                raise ApiError(
                    400,
                    f"refusing to fetch the image from host {urlparse(url).netloc!r}: only the "
                    "LABEL_STUDIO_URL host and ALLOWED_IMAGE_HOSTS are contacted",
                )
        elif url.startswith(_LS_RELATIVE) or url.startswith(_CLOUD_SCHEMES):
            if not self.label_studio_url:
                raise ApiError(
                    400,
                    f"image {url!r} is stored in Label Studio: set LABEL_STUDIO_URL and "
                    "LABEL_STUDIO_API_KEY so the backend can download it",
                )
            if url.startswith(_CLOUD_SCHEMES) and task_id is None:
                raise ApiError(400, f"cloud image {url!r} needs the task id to be presigned")
        else:
            path = unquote(urlparse(url).path) if scheme == "file" else url
            if not os.path.isfile(path):
                raise ApiError(400, f"image {url!r} is neither a reachable URL nor a local file")
            return path, False
        try:
            path = get_local_path(
                url,
                cache_dir=self.cache_dir,
                hostname=self.label_studio_url or None,
                access_token=self.token.get() or None,
                task_id=task_id,
            )
        except ApiError:
            raise
        except Exception as exc:  # requests errors, FileNotFoundError, SDK ValueErrors
            raise ApiError(400, f"cannot download image {url!r}: {exc}") from None
        inside_cache = Path(path).resolve().is_relative_to(Path(self.cache_dir).resolve())
        return path, inside_cache

    def load(self, url: str, task_id: int | None = None) -> np.ndarray:
        """The image at `url` as HxWx3 uint8 RGB; ApiError 400/413 when it cannot be used."""
        if not isinstance(url, str) or not url:
            raise ApiError(400, "the task has no image URL in its data")
        path, temporary = self.local_path(url, task_id)
        try:
            return self._decode(path, url)
        finally:
            if temporary:
                try:
                    os.remove(path)
                except OSError:
                    pass

    def _decode(self, path: str, url: str) -> np.ndarray:
        try:
            with Image.open(path) as im:  # reads the header only: size before decoding
                width, height = im.size
        except Image.DecompressionBombError:
            raise ApiError(413, f"image {url!r} is larger than the pixel limit") from None
        except Exception:
            raise ApiError(400, f"image {url!r} is not a readable image file") from None
        if width * height > self.max_pixels:
            raise ApiError(
                413,
                f"image {url!r} has {width}x{height} = {width * height} pixels, over the "
                f"limit of {self.max_pixels} (MAX_IMAGE_PIXELS)",
            )
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ApiError(400, f"image {url!r} cannot be decoded")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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
