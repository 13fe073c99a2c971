"""Talking to the Label Studio API: the token, the SDK client, tasks as plain dicts, errors.

Why one token object per (URL, key) and process: the HTTP backend, the RQ workers and the image
fetcher all send the same credentials; deciding here, once, whether LABEL_STUDIO_API_KEY is a
legacy token or a personal access token (and exchanging the latter) keeps them from disagreeing
(the backend used to decide itself, the workers let the SDK decide). The SDK client is handed
our token through an httpx `Auth`, so the SDK's own token handling never runs.
Why plain dicts: the SDK's typed models differ between LS roles and versions; everything is
turned into JSON-like dicts here, so no caller touches SDK types. Task listing pages by `total`
instead of the SDK's "until an empty page" iterator, which would request one page past the end.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Generator
from typing import Any

import httpx

from clicksmith.settings import Settings

REFRESH_PATH = "/api/token/refresh/"
# Statuses that mean "try again later": the server is overloaded, restarting or throttling.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class LabelStudioError(Exception):
    """A Label Studio (or task image) failure, with what a caller needs to act on it.

    `transient`: the same request may well succeed later (connection refused, timeout, 5xx,
    429): an RQ job should fail so that RQ retries it. Otherwise the task or the configuration
    is at fault (an image on a refused host, a missing file, a refused token), and retrying
    cannot help: a job reports it and moves on.
    `status`: the HTTP status the backend answers Label Studio with (400: the task's data,
    413: too large, 502: Label Studio or the image host failed or refused us).
    """

    def __init__(self, message: str, *, status: int = 400, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


def is_jwt(token: str) -> bool:
    """Whether `token` looks like a JWT (three non-empty base64url parts)."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts)


class LabelStudioToken:
    """The Authorization header for Label Studio: a legacy token as is, a personal access token
    exchanged.

    Personal access tokens (Label Studio >= 1.15) are JWT refresh tokens: Label Studio only
    accepts the short-lived access token obtained from `POST /api/token/refresh/`, so it is
    fetched here, cached until 30 s before it expires, and renewed. Anything that is not a JWT is
    a legacy token, sent as `Token <key>`.
    """

    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._access = ""
        self._expires = 0.0
        self._lock = threading.Lock()

    @property
    def personal(self) -> bool:
        return bool(self.api_key) and is_jwt(self.api_key)

    def header(self) -> str:
        """The Authorization header value ("" when no key is configured)."""
        if not self.api_key:
            return ""
        if not self.personal:
            return f"Token {self.api_key}"
        return f"Bearer {self._access_token()}"

    def _access_token(self) -> str:
        with self._lock:
            if self._access and time.time() < self._expires - 30:
                return self._access
            url = self.base_url + REFRESH_PATH
            try:
                response = httpx.post(url, json={"refresh": self.api_key},
                                      timeout=self.timeout, follow_redirects=False)
            except httpx.HTTPError as exc:
                raise LabelStudioError(f"cannot reach Label Studio at {url}: {exc}",
                                       status=502, transient=True) from None
            if response.status_code != 200:
                raise LabelStudioError(
                    f"Label Studio refused LABEL_STUDIO_API_KEY ({response.status_code}); "
                    "check that the personal access token is valid",
                    status=502, transient=response.status_code in TRANSIENT_STATUSES,
                )
            try:
                access = str(response.json()["access"])
            except (ValueError, KeyError, TypeError):
                raise LabelStudioError(f"{url} answered without an access token",
                                       status=502) from None
            self._access = access
            self._expires = _expiry(access)
            return access


def _expiry(access: str) -> float:
    """The access token's expiry (its `exp` claim; one minute from now when it has none)."""
    import jwt

    try:
        claims = jwt.decode(access, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        claims = {}
    return float(claims.get("exp") or time.time() + 60)


@functools.lru_cache(maxsize=16)
def token_for(base_url: str, api_key: str) -> LabelStudioToken:
    """The process's one token object for this Label Studio and key (one exchange, shared)."""
    return LabelStudioToken(base_url, api_key)


def settings_token(settings: Settings) -> LabelStudioToken:
    return token_for(settings.label_studio_url.rstrip("/"), settings.label_studio_api_key)


class _TokenAuth(httpx.Auth):
    """Sets our Authorization header on every SDK request (overriding the SDK's own)."""

    def __init__(self, token: LabelStudioToken) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.token.header()
        yield request


# Handed to the SDK instead of the real key: not a JWT, so the SDK takes it for a legacy token
# and never tries to exchange it; _TokenAuth replaces the header it builds from it.
_SDK_PLACEHOLDER_KEY = "set-by-clicksmith"


def client_for(settings: Settings, timeout: float = 60.0):
    """A `label_studio_sdk.LabelStudio` client for LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY.

    ValueError when either is unset. API calls follow no redirect: Label Studio answers its API
    itself, and a redirect would point our calls (with the key) somewhere else."""
    if not settings.label_studio_url:
        raise ValueError("LABEL_STUDIO_URL is not set: needed to read tasks and write results")
    if not settings.label_studio_api_key:
        raise ValueError("LABEL_STUDIO_API_KEY is not set: Label Studio refuses anonymous calls")
    from label_studio_sdk import LabelStudio

    http = httpx.Client(auth=_TokenAuth(settings_token(settings)), timeout=timeout,
                        follow_redirects=False)
    return LabelStudio(base_url=settings.label_studio_url.rstrip("/"),
                       api_key=_SDK_PLACEHOLDER_KEY, httpx_client=http, timeout=timeout)


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


def describe_error(exc: Exception) -> str:
    """A one-line reason for the CLI: SDK ApiErrors otherwise print every response header."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        return f"Label Studio answered HTTP {status}: {getattr(exc, 'body', '')}"
    return str(exc)
