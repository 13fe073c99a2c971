"""Dependency checks shared by `clicksmith serve`'s start-up checks, the backend's /health and
`clicksmith doctor`: one home, so that the three say the same thing about the same trouble.

Each answers None (or an empty reason) when all is well, else why not, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from clicksmith.settings import Settings

WHOAMI_PATH = "/api/current-user/whoami"  # Label Studio 1.23: users/urls.py
LEGACY, PERSONAL = "legacy token", "personal access token"


def token_kind(settings: Settings) -> str:
    """Which kind LABEL_STUDIO_API_KEY is (a JWT is a personal access token); "" when unset."""
    from clicksmith.labelstudio.client import is_jwt

    key = settings.label_studio_api_key
    if not key:
        return ""
    return PERSONAL if is_jwt(key) else LEGACY


@dataclass(frozen=True)
class TokenCheck:
    """What Label Studio made of LABEL_STUDIO_API_KEY."""

    reason: str | None  # None: accepted (or LABEL_STUDIO_URL unset)
    kind: str  # LEGACY, PERSONAL or ""
    status: int | None = None  # the HTTP status of the whoami call (or the token exchange)
    user: str = ""  # who the key belongs to, when accepted


def label_studio_token(settings: Settings, timeout: float = 3.0) -> TokenCheck:
    """One authenticated GET /api/current-user/whoami (a personal access token is exchanged
    first, through the one token object the backend and the workers use)."""
    import httpx

    from clicksmith.labelstudio.client import LabelStudioError, settings_token

    kind = token_kind(settings)
    base = settings.label_studio_url.rstrip("/")
    if not base:
        return TokenCheck(None, kind)
    if not settings.label_studio_api_key:
        return TokenCheck(f"LABEL_STUDIO_API_KEY is not set: Label Studio at {base} refuses "
                          "the backend's API calls and image downloads", kind)
    try:
        header = settings_token(settings).header()  # a personal access token is exchanged
    except LabelStudioError as exc:
        return TokenCheck(f"Label Studio at {base}: {exc}", kind)
    try:
        response = httpx.get(base + WHOAMI_PATH, headers={"Authorization": header},
                             timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return TokenCheck(f"Label Studio at {base} unreachable: {exc or type(exc).__name__}",
                          kind)
    status = response.status_code
    if status in (401, 403):
        return TokenCheck(f"Label Studio at {base} rejected LABEL_STUDIO_API_KEY (HTTP "
                          f"{status} on {WHOAMI_PATH}): use a valid access token", kind, status)
    if status != 200:
        return TokenCheck(f"Label Studio at {base} answered HTTP {status} on {WHOAMI_PATH}",
                          kind, status)
    try:
        me = response.json()
        user = str(me.get("email") or me.get("username") or me.get("id") or "")
    except (ValueError, AttributeError):
        user = ""
    return TokenCheck(None, kind, status, user)


def check_label_studio(settings: Settings, timeout: float = 3.0) -> str | None:
    """None when LABEL_STUDIO_URL is unset or Label Studio accepts LABEL_STUDIO_API_KEY on an
    authenticated GET; else why not (unreachable, key missing or rejected)."""
    return label_studio_token(settings, timeout).reason


def check_redis(settings: Settings, timeout: float = 2.0) -> str | None:
    """None when REDIS_URL is unset or its Redis answers PING; else why not."""
    from clicksmith.cli import redact
    from clicksmith.queue import ping

    if not settings.redis_url:
        return None
    return ping(settings, timeout, what=f"Redis at {redact(settings.redis_url)}")


def workers_listening(settings: Settings, timeout: float = 2.0) -> tuple[list[str], str | None]:
    """(the RQ workers registered on QUEUE_NAME, None) or ([], why they cannot be listed).
    RQ forgets a worker whose heartbeat stopped, so a listed worker is alive."""
    import redis

    from clicksmith.queue import QueueUnavailable, job_queue, redis_conn

    try:
        conn = redis_conn(settings, timeout)
    except QueueUnavailable as exc:
        return [], str(exc)
    try:
        from rq import Worker

        workers = Worker.all(queue=job_queue(settings, conn))
        states = {w.name: str(w.get_state()) for w in workers}
        return sorted(f"{n} ({st})" if st not in ("", "?", "None") else n
                      for n, st in states.items()), None
    except redis.RedisError as exc:
        return [], f"Redis unreachable: {exc}"
    finally:
        conn.close()
