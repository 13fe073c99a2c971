"""`clicksmith doctor`: check the whole chain, from Label Studio to the model, and say, per
check, OK or what is wrong and how to fix it.

Why: the most reported trouble with interactive ML backends is the backend failing to fetch
task images (401/403, local files, cloud storage, token kinds), and the next is a backend that
Label Studio never calls (not connected, not interactive, no webhook). Every such failure shows
in Label Studio as "nothing happens"; each check here names the setting that fixes it.

The checks are the ones the backend itself runs (clicksmith/checks.py: Label Studio's token,
Redis, the workers), the image fetcher the backend uses (labelstudio/images.py, with its host
allow-list and LOCAL_IMAGE_ROOTS), the config parser of /predict (parse_config with
interactive=True), Label Studio's own view of the project (GET /api/ml?project=N: `state`
CO/DI/ER/TR/PR and `is_interactive`, ml/serializers.py of Label Studio 1.23; GET
/api/webhooks?project=N: `url`, `is_active`, `send_payload`, `actions`,
`send_for_all_actions`, `headers`, webhooks/models.py) and a running backend's /health?deep=1
(or the model loaded here when no backend answers).

Exit status: 0 when every check passed or was skipped, 1 when one failed, 2 for bad usage.
A check skipped because an earlier one failed says which.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from clicksmith.checks import (
    LEGACY,
    PERSONAL,
    check_redis,
    label_studio_token,
    token_kind,
    workers_listening,
)
from clicksmith.settings import Settings, load_settings

DEFAULT_BACKEND = "http://127.0.0.1:9090"
SECRET_HEADER = "X-Clicksmith-Secret"  # backend/auth.py: what /webhook expects
# the webhook actions that deliver corrections (backend/routes.py CORRECTION_ACTIONS)
CORRECTION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED",
                      "ANNOTATIONS_DELETED")
# Label Studio 1.23 ml/models.py MLBackendState
ML_STATES = {"CO": "Connected", "DI": "Disconnected", "ER": "Error", "TR": "Training",
             "PR": "Predicting"}
CONNECT_FIX = ("Settings > Model > Connect Model: backend URL http://<backend host>:9090 as "
               "Label Studio reaches it, Interactive preannotations on, Validate and Save")


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool | None  # None: skipped (the reason says why)
    detail: str

    @property
    def label(self) -> str:
        return {True: "OK", False: "FAIL", None: "SKIP"}[self.ok]


class LabelStudioCallError(Exception):
    """A Label Studio API call that did not answer 200 with JSON."""


@dataclass
class Doctor:
    """What the checks share: the settings, the arguments, and what earlier checks found."""

    settings: Settings
    project: int | None = None
    backend_url: str = DEFAULT_BACKEND
    timeout: float = 5.0
    ls_reachable: bool = False
    token_ok: bool = False
    label_config: str | None = None
    config: Any = None  # the parsed config (interactive), when usable
    task: dict | None = None
    ml_backends: list[dict] | None = None
    redis_ok: bool = False
    found: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.settings.label_studio_url.rstrip("/")

    def api(self, path: str, **params: Any) -> Any:
        """GET a Label Studio API path with the key (exchanged when a personal access token)."""
        import httpx

        from clicksmith.labelstudio.client import settings_token

        headers = {"Authorization": settings_token(self.settings).header()}
        try:
            response = httpx.get(self.base + path, params=params, headers=headers,
                                 timeout=self.timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise LabelStudioCallError(f"GET {path} failed: {exc or type(exc).__name__}") \
                from None
        if response.status_code != 200:
            raise LabelStudioCallError(f"GET {path} answered HTTP {response.status_code}: "
                                       f"{response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            raise LabelStudioCallError(f"GET {path} answered no JSON") from None

    def needs_project(self, name: str) -> Result | None:
        """A SKIP result when no project was given or Label Studio cannot be asked."""
        if self.project is None:
            return Result(name, None, "give --project N to check a project")
        if not (self.ls_reachable and self.token_ok):
            return Result(name, None, "Label Studio cannot be asked (see above)")
        return None


# --- the checks, in order -------------------------------------------------------------------
def check_reachable(d: Doctor) -> Result:
    import httpx

    name = "label studio"
    if not d.base:
        return Result(name, False, "LABEL_STUDIO_URL is not set: the backend cannot fetch "
                                   "task images stored in Label Studio nor read projects. "
                                   "Fix: export LABEL_STUDIO_URL=http://<label studio host>:8080")
    try:
        response = httpx.get(d.base + "/health", timeout=d.timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return Result(name, False, f"cannot reach Label Studio at {d.base} (LABEL_STUDIO_URL): "
                                   f"{exc or type(exc).__name__}. Fix: start Label Studio "
                                   "there, or set LABEL_STUDIO_URL to the address it runs at "
                                   "as seen from this machine")
    d.ls_reachable = True
    return Result(name, True, f"{d.base} answers (HTTP {response.status_code} on /health)")


def check_token(d: Doctor) -> Result:
    name = "token"
    if not d.ls_reachable:
        return Result(name, None, "Label Studio is not reachable (see above)")
    kind = token_kind(d.settings)
    check = label_studio_token(d.settings, timeout=d.timeout)
    if check.reason is None:
        d.token_ok = True
        who = f", user {check.user}" if check.user else ""
        return Result(name, True, f"LABEL_STUDIO_API_KEY accepted: {kind}{who}")
    if kind == PERSONAL:
        fix = ("Fix: create a new personal access token (Label Studio: Account & Settings > "
               "Personal Access Token; they can expire or be revoked) and set "
               "LABEL_STUDIO_API_KEY to it")
    elif kind == LEGACY:
        fix = ("Fix: copy the token from Account & Settings > Legacy Token into "
               "LABEL_STUDIO_API_KEY; if the organization disabled legacy tokens (Organization "
               "> API Tokens Settings), use a personal access token instead")
    else:
        fix = "Fix: export LABEL_STUDIO_API_KEY=<token> (Account & Settings in Label Studio)"
    return Result(name, False, f"{check.reason} [{kind or 'no key'}]. {fix}")


def check_config(d: Doctor) -> Result:
    from clicksmith.labelstudio.config import ConfigError, parse_config

    name = "labeling config"
    skip = d.needs_project(name)
    if skip:
        return skip
    try:
        project = d.api(f"/api/projects/{d.project}/")
    except LabelStudioCallError as exc:
        return Result(name, False, f"project {d.project}: {exc}. Fix: check the project id "
                                   "and that the key's user is a member of the project")
    d.label_config = str(project.get("label_config") or "")
    try:
        d.config = parse_config(d.label_config, interactive=True)
    except ConfigError as exc:
        return Result(name, False, f"project {d.project}: {exc}. Fix: Settings > Labeling "
                                   "Interface > Code, e.g. paste config/labeling.xml")
    images = ", ".join(f"{t.name} (${t.value_key})" for t in d.config.targets.values())
    return Result(name, True, f"project {d.project}: usable for clicks, Image {images}")


def _image_key(d: Doctor) -> str | None:
    from clicksmith.labelstudio.config import ConfigError, parse_config

    if d.config is not None:
        return d.config.image_key
    try:  # a config without prompts still names the image field
        return parse_config(d.label_config or "", interactive=False).image_key
    except ConfigError:
        return None


def image_fix(message: str, url: str) -> str:
    """The setting that lifts a refusal of the image fetcher (its message, the image URL)."""
    if "LOCAL_IMAGE_ROOTS" in message:
        path = urlparse(url).path if url.startswith("file:") else url
        folder = os.path.dirname(path) or path
        return (f"Fix: LOCAL_IMAGE_ROOTS={folder} (or add {folder} to its comma-separated "
                "list)")
    host = re.search(r"host '([^']+)' is not the Label Studio host", message)
    if host:
        return (f"Fix: add {host.group(1)} to ALLOWED_IMAGE_HOSTS (for cloud storage: the "
                "bucket's host the presigned URL points to); if it is Label Studio itself, "
                "set LABEL_STUDIO_URL to the address the task URLs use")
    if "refused the image" in message or "LABEL_STUDIO_API_KEY" in message:
        return ("Fix: LABEL_STUDIO_API_KEY must belong to a user who may read this project "
                "(see the token check)")
    if "no answer" in message or "HTTP 5" in message:
        return "Fix: the image host did not answer: check it runs and this machine reaches it"
    return ""


def check_image(d: Doctor) -> Result:
    from clicksmith.labelstudio.client import LabelStudioError
    from clicksmith.labelstudio.images import ImageFetcher

    name = "task image"
    skip = d.needs_project(name)
    if skip:
        return skip
    key = _image_key(d)
    if key is None:
        return Result(name, None, "the labeling config names no image field (see above)")
    try:
        page = d.api("/api/tasks/", project=d.project, page=1, page_size=1)
    except LabelStudioCallError as exc:
        return Result(name, False, f"project {d.project}: listing tasks: {exc}")
    tasks = page.get("tasks", []) if isinstance(page, dict) else page
    if not tasks:
        return Result(name, None, f"project {d.project} has no tasks: import some to check "
                                  "that their images can be fetched")
    d.task = task = tasks[0]
    url = (task.get("data") or {}).get(key)
    tid = task.get("id")
    if not isinstance(url, str) or not url:
        return Result(name, False, f"task {tid} has no data[{key!r}] image URL. Fix: import "
                                   f"tasks with the image URL in the field ${key}")
    try:
        image = ImageFetcher(d.settings, timeout=d.timeout).load(
            url, tid if isinstance(tid, int) else None)
    except LabelStudioError as exc:
        fix = image_fix(str(exc), url)
        return Result(name, False, f"task {tid}: {exc}" + (f". {fix}" if fix else ""))
    return Result(name, True, f"task {tid}: {url} fetched ({image.shape[1]}x{image.shape[0]})")


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlparse(url)
    return p.scheme, (p.hostname or "").lower(), p.port


def check_ml_backend(d: Doctor) -> Result:
    name = "ML backend"
    skip = d.needs_project(name)
    if skip:
        return skip
    try:
        backends = d.api("/api/ml", project=d.project)
    except LabelStudioCallError as exc:
        return Result(name, False, f"project {d.project}: {exc}")
    d.ml_backends = backends = [b for b in backends if isinstance(b, dict)]
    if not backends:
        return Result(name, False, f"no ML backend is connected to project {d.project}. "
                                   f"Fix: {CONNECT_FIX}")
    connected = [b for b in backends if b.get("state") in ("CO", "TR", "PR")]
    if not connected:
        described = "; ".join(
            f"{b.get('url')} is {ML_STATES.get(b.get('state'), b.get('state'))}"
            + (f" ({b['error_message']})" if b.get("error_message") else "")
            for b in backends)
        return Result(name, False, f"project {d.project}: {described}: Label Studio cannot use "
                                   "it. Fix: start `clicksmith serve` where Label Studio "
                                   "reaches that URL (a backend on a local address needs Label "
                                   "Studio started with ML_BLOCK_LOCAL_IP=false), then "
                                   "Settings > Model > edit > Validate and Save")
    interactive = [b for b in connected if b.get("is_interactive")]
    if not interactive:
        urls = ", ".join(str(b.get("url")) for b in connected)
        return Result(name, False, f"project {d.project}: {urls} is connected but not "
                                   "interactive: clicks are never sent to it. Fix: Settings > "
                                   "Model > edit the model, turn on Interactive "
                                   "preannotations")
    b = interactive[0]
    return Result(name, True, f"{b.get('url')}: {ML_STATES.get(b.get('state'))}, interactive"
                              + (f", model {b['model_version']}" if b.get("model_version")
                                 else ""))


def check_webhook(d: Doctor) -> Result:
    name = "webhook"
    skip = d.needs_project(name)
    if skip:
        return skip
    try:
        hooks = d.api("/api/webhooks", project=d.project)
    except LabelStudioCallError as exc:
        return Result(name, False, f"project {d.project}: {exc}")
    ours = [h for h in hooks if isinstance(h, dict)
            and urlparse(str(h.get("url", ""))).path.rstrip("/").endswith("/webhook")]
    if not ours:
        return Result(name, False, f"project {d.project} has no webhook to the backend's "
                                   "/webhook: corrections are not collected and Start "
                                   "Training does nothing. Fix: Label Studio creates it when "
                                   "the model is connected (with SSRF_PROTECTION_ENABLED=false "
                                   "for a backend on a local address); or add one under "
                                   "Settings > Webhooks: URL http://<backend host>:9090/webhook"
                                   ", Send payload on, ANNOTATION_CREATED and "
                                   "ANNOTATION_UPDATED")
    problems = []
    hook = ours[0]
    url = hook.get("url")
    if hook.get("is_active") is False:
        problems.append("it is disabled (turn it on)")
    if hook.get("send_payload") is False:
        problems.append("it sends no payload (turn Send payload on: corrections need the "
                        "annotation)")
    actions = hook.get("actions") or []
    if not hook.get("send_for_all_actions") and actions and \
            not set(actions) & set(CORRECTION_ACTIONS):
        problems.append(f"it sends none of {', '.join(CORRECTION_ACTIONS[:2])} (add them)")
    secret = d.settings.webhook_secret
    if secret and (hook.get("headers") or {}).get(SECRET_HEADER) != secret:
        problems.append(f"WEBHOOK_SECRET is set but the webhook lacks the header "
                        f"{SECRET_HEADER}: <WEBHOOK_SECRET> (add it under Headers)")
    failures = hook.get("consecutive_failures")
    if isinstance(failures, int) and failures > 0:
        problems.append(f"Label Studio's last {failures} deliveries failed: it cannot reach "
                        f"{url} (check the address as Label Studio sees it, and that "
                        "`clicksmith serve` runs)")
    if problems:
        return Result(name, False, f"{url}: " + "; ".join(problems))
    same = [b for b in d.ml_backends or []
            if b.get("state") in ("CO", "TR", "PR")
            and _origin(str(b.get("url", ""))) == _origin(str(url))]
    reach = ("reachable from Label Studio (the ML backend at that address is connected)"
             if same else "reachability from Label Studio not confirmed (no connected ML "
                          "backend at that address)")
    return Result(name, True, f"{url}: active, {reach}")


def check_redis_reachable(d: Doctor) -> Result:
    from clicksmith.cli import redact

    name = "redis"
    if not d.settings.redis_url:
        return Result(name, False, "REDIS_URL is not set: sessions live in one process and "
                                   "webhooks are acknowledged but not queued (no corrections, "
                                   "no retraining). Fix: export "
                                   "REDIS_URL=redis://127.0.0.1:6379/0")
    reason = check_redis(d.settings, timeout=min(d.timeout, 2.0))
    if reason:
        return Result(name, False, f"{reason}. Fix: start Redis there, or set REDIS_URL to a "
                                   "running one")
    d.redis_ok = True
    return Result(name, True, f"{redact(d.settings.redis_url)} answers PING")


def check_workers(d: Doctor) -> Result:
    name = "workers"
    if not d.redis_ok:
        return Result(name, None, "Redis is not available (see above)")
    queue = d.settings.queue_name
    names, reason = workers_listening(d.settings, timeout=min(d.timeout, 2.0))
    if reason:
        return Result(name, False, f"cannot list the workers: {reason}")
    if not names:
        return Result(name, False, f"no worker listens on the queue {queue!r} (QUEUE_NAME): "
                                   "webhooks and pre-labelling jobs wait forever. Fix: "
                                   "clicksmith worker --preload (with the same REDIS_URL and "
                                   "QUEUE_NAME)")
    return Result(name, True, f"{len(names)} on {queue!r}: {', '.join(names)}")


def _backend_health(d: Doctor) -> tuple[dict | None, str]:
    """(a running backend's /health?deep=1 JSON, "") or (None, why none answered)."""
    import httpx

    try:
        response = httpx.get(d.backend_url.rstrip("/") + "/health", params={"deep": "1"},
                             timeout=min(d.timeout, 3.0), follow_redirects=False)
        return response.json(), ""
    except httpx.HTTPError as exc:
        return None, f"no backend answers at {d.backend_url} ({exc or type(exc).__name__})"
    except ValueError:
        return None, f"{d.backend_url}/health answered no JSON: is it clicksmith's backend?"


def check_model(d: Doctor) -> Result:
    name = "model"
    health, why = _backend_health(d)
    if health is not None:
        model = (health.get("checks") or {}).get("model") or {}
        state = model.get("state") or health.get("model_state")
        version = model.get("version") or health.get("model_version")
        where = f"backend at {d.backend_url}"
        if model.get("ok") is False or state == "error":
            error = model.get("error") or health.get("model_error") or "failed to load"
            return Result(name, False, f"{where}: {error}. Fix: check MODEL_PATH / "
                                       "MODEL_REGISTRY and the backend's log, then restart it")
        others = [r for r in health.get("reasons") or [] if not r.startswith("model")]
        detail = f"{where}: {state}, version {version}"
        if others:
            return Result(name, False, f"{detail}, but it reports DEGRADED: "
                                       + "; ".join(others))
        return Result(name, True, detail)
    from clicksmith.models import process_model

    try:
        model = process_model(d.settings)
    except Exception as exc:  # noqa: BLE001 - any load failure is the answer
        return Result(name, False, f"{why}; loading the model here failed: "
                                   f"{type(exc).__name__}: {exc}. Fix: check MODEL_PATH / "
                                   "MODEL_REGISTRY")
    return Result(name, True, f"{why}; loaded here: version {model.model_version} (start the "
                              "backend: clicksmith serve, or pass --backend URL)")


CHECKS: tuple[Callable[[Doctor], Result], ...] = (
    check_reachable, check_token, check_config, check_image, check_ml_backend, check_webhook,
    check_redis_reachable, check_workers, check_model,
)


def diagnose(d: Doctor) -> list[Result]:
    results = []
    for check in CHECKS:
        try:
            results.append(check(d))
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            name = check.__name__.removeprefix("check_").replace("_", " ")
            results.append(Result(name, False, f"the check itself failed: "
                                               f"{type(exc).__name__}: {exc}"))
    return results


def render(results: list[Result]) -> str:
    width = max(len(r.name) for r in results)
    lines = [f"{r.label:<4}  {r.name:<{width}}  {r.detail}" for r in results]
    failed = sum(r.ok is False for r in results)
    lines.append(f"{failed} of {len(results)} checks failed" if failed
                 else "all checks passed" + (" (some skipped)" if any(r.ok is None
                                                                      for r in results)
                                             else ""))
    return "\n".join(lines)


# --- the command ----------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", type=int, help="a Label Studio project id: check its "
                        "labeling config, one task's image, its ML backend and webhook")
    parser.add_argument("--backend", default=DEFAULT_BACKEND,
                        help=f"a running backend's URL (default {DEFAULT_BACKEND}); when none "
                             "answers, the model is loaded here")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for each answer (default 5)")


def run(args: argparse.Namespace) -> int:
    if args.project is not None and args.project < 1:
        print(f"clicksmith doctor: --project must be a positive id, got {args.project}",
              file=sys.stderr)
        return 2
    if not args.timeout > 0:
        print("clicksmith doctor: --timeout must be > 0", file=sys.stderr)
        return 2
    parsed = urlparse(args.backend)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        print(f"clicksmith doctor: --backend {args.backend!r} is not an http(s) URL",
              file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except (ValueError, TypeError) as exc:
        print(f"clicksmith doctor: {exc}", file=sys.stderr)
        return 2
    results = diagnose(Doctor(settings, args.project, args.backend, args.timeout))
    print(render(results))
    return 1 if any(r.ok is False for r in results) else 0
