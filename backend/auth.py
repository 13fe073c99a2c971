"""Optional access control: HTTP basic auth for /setup and /predict, a shared secret for /webhook.

Why two mechanisms: Label Studio can send basic auth to an ML backend (fields on the backend in
its settings) but the webhook it creates for the backend carries no credentials; a webhook
created by hand can carry a custom header, which is what X-Clicksmith-Secret expects.
"""

from __future__ import annotations

import hmac

from flask import request

from backend.errors import ApiError

SECRET_HEADER = "X-Clicksmith-Secret"


def require_basic_auth(user: str, password: str) -> None:
    """ApiError 401 unless the request carries the configured basic credentials (if any)."""
    if not user and not password:
        return
    auth = request.authorization
    if auth is None or auth.type != "basic":
        raise ApiError(401, "this endpoint needs HTTP basic auth (BASIC_AUTH_USER/PASS)")
    ok_user = hmac.compare_digest((auth.username or "").encode(), user.encode())
    ok_pass = hmac.compare_digest((auth.password or "").encode(), password.encode())
    if not (ok_user and ok_pass):
        raise ApiError(401, "wrong basic auth user or password")


def require_webhook_secret(secret: str) -> None:
    """ApiError 401 unless the shared secret header matches (when WEBHOOK_SECRET is set)."""
    if not secret:
        return
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise ApiError(401, f"missing or wrong {SECRET_HEADER} header")
