"""Talking to Label Studio through `label_studio_sdk` 2.x: tasks, config, images, results.

Why a thin layer of our own: the SDK's typed models differ between LS roles and versions, so
everything is turned into plain dicts right here, and the rest of `review/` never touches SDK
types. Task listing pages by `total` instead of the SDK's "until an empty page" iterator, which
would request one page past the end.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlparse

import numpy as np

from clicksmith.labelstudio.config import ProjectConfig
from clicksmith.settings import Settings


def client_for(settings: Settings):
    """A `LabelStudio` client for LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY (clear error if unset)."""
    if not settings.label_studio_url:
        raise ValueError("LABEL_STUDIO_URL is not set: needed to read tasks and write results")
    if not settings.label_studio_api_key:
        raise ValueError("LABEL_STUDIO_API_KEY is not set: Label Studio refuses anonymous calls")
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=settings.label_studio_url.rstrip("/"),
                       api_key=settings.label_studio_api_key, timeout=60)


def as_dict(obj: Any) -> dict:
    """An SDK model (pydantic, extra fields allowed) or a dict, as a plain JSON-like dict."""
    if isinstance(obj, dict):
        return obj
    return obj.model_dump(mode="json", by_alias=True)


def list_tasks(client, project_id: int, page_size: int = 100, fields: str = "all") -> list[dict]:
    """All tasks of a project (with annotations and predictions when `fields="all"`)."""
    tasks: list[dict] = []
    page = 1
    while True:
        pager = client.tasks.list(project=project_id, page=page, page_size=page_size,
                                  fields=fields)
        items = [as_dict(t) for t in (pager.items or [])]
        tasks.extend(items)
        total = getattr(pager.response, "total", None)
        if not items or (total is not None and len(tasks) >= total):
            return tasks
        page += 1


def get_task(client, task_id: int) -> dict:
    """One task with its annotations and predictions (fetched separately if the server omits)."""
    task = as_dict(client.tasks.get(task_id))
    if task.get("predictions") is None or any(isinstance(p, int) for p in task["predictions"]):
        task["predictions"] = [as_dict(p) for p in client.predictions.list(task=task_id)]
    return task


# --- images ------------------------------------------------------------------------------------


def _host(netloc_url: str) -> str:
    return (urlparse(netloc_url).hostname or "").lower()


def resolve_image_url(url: str, settings: Settings) -> tuple[str, bool]:
    """Absolute URL for a task image and whether it is on the Label Studio host.

    Images are fetched only from LABEL_STUDIO_URL's host (plus ALLOWED_IMAGE_HOSTS), so a task
    cannot make a worker request arbitrary internal addresses; the API key goes only to LS.
    """
    if not isinstance(url, str) or not url:
        raise ValueError("the task has no image URL")
    base = settings.label_studio_url.rstrip("/") + "/"
    full = urljoin(base, url) if url.startswith("/") else url
    parsed = urlparse(full)
    if parsed.scheme not in {"http", "https"}:
        raise ValueError(f"image URL {url!r}: only http(s) URLs and LS paths can be fetched")
    ls_host = _host(base)
    host = (parsed.hostname or "").lower()
    extra = {h.strip().lower() for h in settings.allowed_image_hosts.split(",") if h.strip()}
    on_ls = host == ls_host and parsed.port == urlparse(base).port
    if not on_ls and host not in extra:
        raise ValueError(f"image URL {url!r}: host {host!r} is not the Label Studio host "
                         f"{ls_host!r} (add it to ALLOWED_IMAGE_HOSTS to allow it)")
    return full, on_ls



def fetch_image(url: str, settings: Settings, client) -> np.ndarray:
    """Download and decode a task image as HxWx3 uint8 RGB (ValueError on any failure)."""
    import cv2
    import httpx

    full, on_ls = resolve_image_url(url, settings)
    headers = {}
    if on_ls:
        # The SDK resolves legacy tokens vs personal access tokens (JWT refresh) for us.
        auth = client._client_wrapper.get_headers().get("Authorization")
        if auth:
            headers["Authorization"] = auth
    # Transient trouble (connection, 5xx) raises ConnectionError so the job fails and RQ
    # retries it; a 4xx or an undecodable file is the task's fault: ValueError, no retry.
    try:
        resp = httpx.get(full, headers=headers, timeout=60, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise ConnectionError(f"could not fetch image {full}: {exc}") from None
    if resp.status_code >= 500:
        raise ConnectionError(f"could not fetch image {full}: HTTP {resp.status_code}")
    if resp.status_code != 200:
        raise ValueError(f"could not fetch image {full}: HTTP {resp.status_code}")
    if len(resp.content) > settings.max_request_bytes:
        raise ValueError(f"image {full} is larger than MAX_REQUEST_BYTES")
    arr = cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"image {full} could not be decoded")
    if arr.shape[0] * arr.shape[1] > settings.max_image_pixels:
        raise ValueError(f"image {full} has more than MAX_IMAGE_PIXELS pixels")
    if arr.dtype != np.uint8:
        arr = (arr / max(1, arr.max()) * 255).astype(np.uint8)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def task_image_url(task: dict, cfg: ProjectConfig) -> str:
    url = (task.get("data") or {}).get(cfg.image_key)
    if not url:
        raise ValueError(f"task {task.get('id')} has no data[{cfg.image_key!r}] image")
    return url


def describe_error(exc: Exception) -> str:
    """A one-line reason for the CLI: SDK ApiErrors otherwise print every response header."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        return f"Label Studio answered HTTP {status}: {getattr(exc, 'body', '')}"
    return str(exc)
