"""Task images: where they may come from and how they are read, for the backend and the workers.

Task data is written by whoever imports tasks, so a fetcher that follows any reference it is
handed is a server-side request forgery tool (and a file reader). The rules, one for each
question the two former copies (backend/images.py, review/ls.py) answered differently:

- Hosts: http(s) images are fetched only from the LABEL_STUDIO_URL origin (scheme, host and
  port: another service on the same machine is another origin) and from ALLOWED_IMAGE_HOSTS
  (`host`: any port, `host:port`: that port). Both copies had an allow-list; they differed on
  ports (the backend trusted any port of the LS host).
- Redirects are followed by hand, at most MAX_REDIRECTS, and every hop is checked against the
  same allow-list. The backend used to follow redirects to any host (through the SDK's
  downloader), the workers followed none, so an image behind Label Studio's redirects (cloud
  storage, /data/upload on cloud-backed Label Studio) failed there.
- The API key is sent only to the Label Studio origin, and only while the chain of requests
  started there and has not left it: a foreign host cannot redirect us into Label Studio to
  make us fetch something with our credentials.
- Label Studio paths (`/data/...`, `/upload/...`, `/storage-data/...`) are fetched from
  LABEL_STUDIO_URL. Cloud URIs (s3:, gs:, azure-blob:) go through Label Studio's resolver,
  `GET /tasks/<task id>/presign/?fileuri=<base64url(uri)>` (io_storages/urls.py in Label
  Studio; the route label_studio_sdk's get_local_path uses), which answers 303 to a presigned
  URL or proxies the file; the presigned host must be allowed like any other (add the bucket's
  host to ALLOWED_IMAGE_HOSTS). The workers could not read cloud images at all.
- Local files (absolute paths, file:// URLs) are read only under LOCAL_IMAGE_ROOTS, after
  resolving symlinks and `..`; empty (the default) refuses them. The backend read any file the
  process could, the workers none.
- Size: the pixel limit (MAX_IMAGE_PIXELS) is checked from the image header before decoding
  (the workers decoded first), and downloads stop at a byte bound derived from it (the
  workers capped downloads at MAX_REQUEST_BYTES, a request-body limit that refused large
  photos the pixel limit allows).
- Decoding is OpenCV's IMREAD_COLOR for both (the backend's): EXIF orientation applied as the
  browser shows the image to the annotator, grey and alpha images as RGB, 16-bit scaled to 8.
  The workers' IMREAD_UNCHANGED ignored EXIF orientation and stretched 16-bit images by their
  maximum, so a pre-label mask could be computed on pixels the annotator never saw.
- Errors: one type, LabelStudioError, saying whether a retry may help (connection trouble,
  timeouts, 5xx, 429: `transient`) or not (everything else), and the HTTP status the backend
  answers with. The workers used ConnectionError / ValueError, the backend its ApiError.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import httpx
import numpy as np

from clicksmith.labelstudio.client import (
    TRANSIENT_STATUSES,
    LabelStudioError,
    LabelStudioToken,
    settings_token,
)
from clicksmith.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CLOUD_SCHEMES = ("s3:", "gs:", "azure-blob:")
LS_PREFIXES = ("/data/", "/upload/", "/storage-data/")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ImageLocation:
    """Where an image reference points, once checked: a URL to GET or a file to read."""

    kind: str  # "http" or "file"
    target: str  # the absolute URL, or the resolved file path
    on_label_studio: bool = False  # an http location on the Label Studio origin


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    try:
        port = parsed.port
    except ValueError:
        port = None
    return scheme, (parsed.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def _ls_relative(url: str) -> str | None:
    """The Label Studio path of a task reference such as `/data/upload/1/a.png` or
    `upload/1/a.png` (how LS stores uploads), else None."""
    path = url if url.startswith("/") else "/" + url
    if path.startswith("/upload/"):
        path = "/data" + path
    return path if path.startswith(LS_PREFIXES) else None


def task_image_url(task: dict, cfg) -> str:
    """The image reference of `task` for a parsed config (`cfg.image_key` names the field)."""
    url = (task.get("data") or {}).get(cfg.image_key)
    if not url:
        raise LabelStudioError(f"task {task.get('id')} has no data[{cfg.image_key!r}] image")
    return url


class ImageFetcher:
    """Turns a task's image reference into a decoded RGB array, under the rules above."""

    def __init__(self, settings: Settings, token: LabelStudioToken | None = None,
                 timeout: float = 60.0) -> None:
        self.label_studio_url = settings.label_studio_url.rstrip("/")
        self.token = token if token is not None else settings_token(settings)
        self.ls_origin = _origin(self.label_studio_url) if self.label_studio_url else None
        self.extra_hosts = {h.strip().lower() for h in settings.allowed_image_hosts.split(",")
                            if h.strip()}
        self.roots = [_resolve_root(r) for r in settings.local_image_roots.split(",")
                      if r.strip()]
        self.max_pixels = settings.max_image_pixels
        # A file larger than the raw pixels at the limit (16-bit RGBA) plus 1 MiB of metadata
        # is no image within the limit: stop reading it there instead of holding it in memory.
        self.max_bytes = settings.max_image_pixels * 8 + (1 << 20)
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))

    # --- where -------------------------------------------------------------------------
    def on_label_studio(self, url: str) -> bool:
        return self.ls_origin is not None and _origin(url) == self.ls_origin

    def host_allowed(self, url: str) -> bool:
        if self.on_label_studio(url):
            return True
        _scheme, host, port = _origin(url)
        return host in self.extra_hosts or f"{host}:{port}" in self.extra_hosts

    def _refuse_host(self, url: str, what: str) -> LabelStudioError:
        netloc = urlparse(url).netloc
        ls = self.label_studio_url or "(LABEL_STUDIO_URL is not set)"
        return LabelStudioError(
            f"refusing to {what} {url!r}: host {netloc!r} is not the Label Studio host {ls} "
            "nor in ALLOWED_IMAGE_HOSTS (add it there to allow it)"
        )

    def _need_label_studio(self, url: str) -> None:
        if not self.label_studio_url:
            raise LabelStudioError(
                f"image {url!r} is stored in Label Studio: set LABEL_STUDIO_URL and "
                "LABEL_STUDIO_API_KEY so that it can be downloaded"
            )

    def locate(self, url: str, task_id: int | None = None) -> ImageLocation:
        """Check a task's image reference and say where to read it; LabelStudioError if refused."""
        if not isinstance(url, str) or not url:
            raise LabelStudioError("the task has no image URL in its data")
        scheme = urlparse(url).scheme.lower()
        if scheme in ("http", "https"):
            if not self.host_allowed(url):
                raise self._refuse_host(url, "fetch the image")
            return ImageLocation("http", url, self.on_label_studio(url))
        if url.startswith(CLOUD_SCHEMES):
            self._need_label_studio(url)
            if task_id is None:
                raise LabelStudioError(f"cloud image {url!r} needs the task id to be presigned")
            fileuri = base64.urlsafe_b64encode(url.encode()).decode()
            presign = f"{self.label_studio_url}/tasks/{int(task_id)}/presign/?fileuri={fileuri}"
            return ImageLocation("http", presign, True)
        if scheme == "file":
            parsed = urlparse(url)
            if parsed.netloc not in ("", "localhost"):
                raise LabelStudioError(f"image {url!r}: a file:// URL must name a local file")
            return ImageLocation("file", self._local_file(url, unquote(parsed.path)))
        ls_path = _ls_relative(url)
        if ls_path is not None:
            self._need_label_studio(url)
            return ImageLocation("http", self.label_studio_url + ls_path, True)
        if os.path.isabs(url):
            return ImageLocation("file", self._local_file(url, url))
        raise LabelStudioError(
            f"image {url!r} is neither an http(s) URL, a Label Studio path, a cloud URI nor "
            "an absolute file path"
        )

    def _local_file(self, url: str, path: str) -> str:
        if not self.roots:
            raise LabelStudioError(
                f"refusing to read the local file {url!r}: LOCAL_IMAGE_ROOTS is empty (list "
                "the folders task images may be read from)"
            )
        # resolve symlinks and `..` first: the file actually read must lie under a root
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(root) for root in self.roots):
            raise LabelStudioError(
                f"refusing to read the local file {url!r}: it is not under LOCAL_IMAGE_ROOTS"
            )
        if not real.is_file():
            raise LabelStudioError(f"image {url!r}: no such file")
        return str(real)

    # --- reading -----------------------------------------------------------------------
    def read(self, url: str, task_id: int | None = None) -> bytes:
        """The bytes of the image `url` refers to."""
        try:
            location = self.locate(url, task_id)
        except ValueError:  # urlparse refuses e.g. "http://[127.0.0.1]:80/"
            raise LabelStudioError(f"image reference {url[:80]!r} is not a valid URL") from None
        if location.kind == "file":
            return self._read_file(location.target, url)
        return self._download(location, url)

    def _read_file(self, path: str, url: str) -> bytes:
        try:
            with open(path, "rb") as f:
                data = f.read(self.max_bytes + 1)
        except OSError as exc:
            raise LabelStudioError(f"image {url!r} cannot be read: {exc.strerror}") from None
        if len(data) > self.max_bytes:
            raise self._too_many_bytes(url)
        return data

    def _too_many_bytes(self, url: str) -> LabelStudioError:
        return LabelStudioError(
            f"image {url!r} is over {self.max_bytes} bytes: too large for the pixel limit of "
            f"{self.max_pixels} (MAX_IMAGE_PIXELS)", status=413)

    def _download(self, location: ImageLocation, url: str) -> bytes:
        current = location.target
        with_key = location.on_label_studio  # the chain started on Label Studio
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as http:
            for _hop in range(MAX_REDIRECTS + 1):
                with_key = with_key and self.on_label_studio(current)
                headers = {}
                if with_key:
                    auth = self.token.header()
                    if auth:
                        headers["Authorization"] = auth
                try:
                    with http.stream("GET", current, headers=headers) as response:
                        status = response.status_code
                        if status in _REDIRECTS:
                            current = self._next_hop(current, response, url)
                            continue
                        self._check_status(status, current, url, with_key)
                        return self._body(response, url)
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    # the reason (refused, timed out, reset...) goes to the log only: told to
                    # the client it would map which ports of an allowed host are open
                    log.warning("image %s: fetching %s failed: %s", url, current, exc)
                    raise LabelStudioError(f"could not fetch image {current}: no answer",
                                           status=502, transient=True) from None
        raise LabelStudioError(
            f"image {url!r}: more than {MAX_REDIRECTS} redirects (a redirect loop?)", status=502)

    def _next_hop(self, current: str, response: httpx.Response, url: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise LabelStudioError(
                f"image {url!r}: {current} answered {response.status_code} without a Location",
                status=502)
        try:
            target = urljoin(current, location)
            scheme = urlparse(target).scheme.lower()
        except ValueError:
            scheme, target = "", location[:80]
        if scheme not in ("http", "https"):
            raise LabelStudioError(f"image {url!r}: refusing the redirect to {target!r}")
        if not self.host_allowed(target):
            raise self._refuse_host(target, f"follow the redirect of {current} to")
        return target

    @staticmethod
    def _check_status(status: int, current: str, url: str, with_key: bool) -> None:
        if status == 200:
            return
        if status in TRANSIENT_STATUSES:
            raise LabelStudioError(f"could not fetch image {current}: HTTP {status}",
                                   status=502, transient=True)
        if with_key and status in (401, 403):
            raise LabelStudioError(
                f"Label Studio refused the image {url!r} (HTTP {status}): check that "
                "LABEL_STUDIO_API_KEY is valid and may read this project", status=502)
        raise LabelStudioError(f"could not fetch image {current}: HTTP {status}")

    def _body(self, response: httpx.Response, url: str) -> bytes:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise self._too_many_bytes(url)
        chunks, total = [], 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > self.max_bytes:
                raise self._too_many_bytes(url)
            chunks.append(chunk)
        return b"".join(chunks)

    # --- decoding ----------------------------------------------------------------------
    def decode(self, data: bytes, url: str) -> np.ndarray:
        """HxWx3 uint8 RGB; the pixel limit is checked from the header before decoding."""
        import cv2
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                width, height = im.size
        except Image.DecompressionBombError:  # PIL's own limit (~179 MP) is far over ours
            raise LabelStudioError(f"image {url!r} is larger than the pixel limit",
                                   status=413) from None
        except Exception:
            raise LabelStudioError(f"image {url!r} is not a readable image file") from None
        if width * height > self.max_pixels:
            raise LabelStudioError(
                f"image {url!r} has {width}x{height} = {width * height} pixels, over the "
                f"limit of {self.max_pixels} (MAX_IMAGE_PIXELS)", status=413)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise LabelStudioError(f"image {url!r} cannot be decoded")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def load(self, url: str, task_id: int | None = None) -> np.ndarray:
        """The image `url` refers to as HxWx3 uint8 RGB; LabelStudioError when it cannot be."""
        return self.decode(self.read(url, task_id), url)


def _resolve_root(root: str) -> Path:
    path = Path(root.strip()).expanduser()
    return Path(os.path.realpath(path if path.is_absolute() else REPO_ROOT / path))


def load_task_image(settings: Settings, task: dict, cfg) -> np.ndarray:
    """The image of a Label Studio task (its id lets cloud URIs be presigned)."""
    task_id = task.get("id")
    return ImageFetcher(settings).load(task_image_url(task, cfg),
                                       task_id if isinstance(task_id, int) else None)
