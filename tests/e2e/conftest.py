"""Fixtures for end-to-end tests: a real Label Studio 1.23, our backend, RQ workers, real Redis.

Everything here is started inside the test session and killed (by process group id) when the
session ends, pass or fail. Redis: database 13 of the server at 127.0.0.1:6379 (14 and 15 are
the review and backend tests'), flushed at the end. Label Studio runs from its own cached venv
(tests/e2e/ls_server.py); if it cannot be installed because no registry is reachable the tests
skip, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.ls_server import (
    InstallUnavailable,
    LabelStudioServer,
    ensure_installed,
    free_port,
    stop_process_group,
)

REPO = Path(__file__).resolve().parents[2]
# the images shipped with the tests (tests/fixtures/make_fixtures.py draws them): one object
# each, exact masks; PNG, so this process sees the very pixels the backend decodes (JPEG
# decoders may differ by one level, which flips pixels where the model is unsure)
FIXTURES = REPO / "tests" / "fixtures"
REDIS_DB = 13
IMAGES = ("figure", "bowl", "animal", "crescent")
TIMINGS: dict[str, float] = {}


def wait_until(predicate, timeout: float, what: str, step: float = 0.5):
    """Poll predicate() until it returns something truthy; AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="session")
def ls_exe() -> Path:
    t0 = time.monotonic()
    try:
        exe = ensure_installed()
    except InstallUnavailable as exc:
        pytest.skip(f"Label Studio could not be installed (no package registry reachable): {exc}")
    TIMINGS["ls_install_s"] = time.monotonic() - t0
    return exe


@pytest.fixture(scope="session")
def ls_server(ls_exe):
    server = LabelStudioServer(ls_exe)
    try:
        server.start()
        TIMINGS["ls_startup_s"] = server.startup_seconds
        yield server
    finally:
        server.stop()
        _report_timings()


def _report_timings() -> None:
    if TIMINGS:
        line = ", ".join(f"{k}={v:.1f}" for k, v in TIMINGS.items())
        sys.stderr.write(f"\n[e2e timings] {line}\n")


def pytest_terminal_summary(terminalreporter):
    """Label Studio install / start-up and backend load times, in the run's summary (CI logs)."""
    if TIMINGS:
        line = ", ".join(f"{k}={v:.1f}s" for k, v in TIMINGS.items())
        terminalreporter.write_line(f"e2e timings: {line}")


@pytest.fixture(scope="session")
def ls(ls_server):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=ls_server.url, api_key=ls_server.token)


@pytest.fixture(scope="session")
def redis_url():
    from redis import Redis

    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    conn = Redis.from_url(url)
    try:
        conn.ping()
    except Exception as exc:
        pytest.fail(f"the real Redis at 127.0.0.1:6379 is needed: {exc}")
    conn.flushdb()
    yield url
    conn.flushdb()
    conn.close()


@pytest.fixture(scope="session")
def e2e_env(ls_server, redis_url, tmp_path_factory) -> dict[str, str]:
    """The environment shared by `clicksmith serve`, the workers, the CLI and this process."""
    root = tmp_path_factory.mktemp("e2e")
    return {
        "LABEL_STUDIO_URL": ls_server.url,
        "LABEL_STUDIO_API_KEY": ls_server.token,
        "REDIS_URL": redis_url,
        "QUEUE_NAME": f"e2e-{uuid.uuid4().hex[:8]}",
        "MODEL_REGISTRY": str(root / "models"),  # empty: the bundled weights serve
        "CORRECTIONS_ROOT": str(root / "corrections"),
        "TORCH_THREADS": "1",
        "JOB_RETRIES": "0",
    }


def _settings(env: dict[str, str]):
    from clicksmith.settings import load_settings

    return load_settings(env={k: v for k, v in env.items()})


class Proc:
    """A subprocess in its own process group, with its output in a log file."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "w") as out:
            self.p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        stop_process_group(self.p)


def _child_env(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path):
    """`clicksmith serve` with `env` on a free port (gunicorn, one worker) for a block, ready
    when its model is (also when /health answers 503 for another reason: a test may start a
    backend that is misconfigured on purpose); killed by process group after."""
    port = free_port()
    env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
    proc = Proc([sys.executable, "-m", "clicksmith.cli", "serve", "--workers", "1",
                 "--threads", "4", "--timeout", "300"], _child_env(env), log)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready():
            if proc.p.poll() is not None:
                raise AssertionError(f"clicksmith serve exited:\n{proc.tail()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    body = json.loads(r.read())
            except urllib.error.HTTPError as exc:  # degraded: the body still tells the model
                try:
                    body = json.loads(exc.read())
                except ValueError:
                    return None
            except (urllib.error.URLError, OSError, ValueError):
                return None
            if body.get("model_state") == "error":
                raise AssertionError(f"backend model failed: {body}")
            return body if body.get("model_state") == "ready" else None

        health = wait_until(ready, 300, "clicksmith serve to load its model")
        yield BackendProc(url, port, health["model_version"], proc)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def backend(e2e_env, tmp_path_factory):
    """The backend every test shares."""
    t0 = time.monotonic()
    with serving(e2e_env, tmp_path_factory.mktemp("backend") / "serve.log") as served:
        TIMINGS["backend_ready_s"] = time.monotonic() - t0
        yield served


@dataclass
class BackendProc:
    url: str
    port: int
    model_version: str
    proc: Proc


@pytest.fixture(scope="session")
def reference_predictor(e2e_env):
    """The predictor the server loads (same settings), run in this process for comparison."""
    from clicksmith.registry import load_serving_predictor

    return load_serving_predictor(_settings(e2e_env))


@contextlib.contextmanager
def running_worker(env: dict[str, str], log: Path):
    """A `clicksmith worker` for the duration of a block; killed by process group after."""
    proc = Proc([sys.executable, "-m", "clicksmith.cli", "worker", "--maintenance-interval", "5"],
                _child_env(env), log)
    try:
        yield proc
    finally:
        proc.stop()


# --- Label Studio project ---------------------------------------------------------------------
@dataclass
class Project:
    id: int
    ml_id: int
    tasks: dict[str, int]          # image stem -> task id
    images: dict[str, np.ndarray]  # stem -> RGB uint8
    masks: dict[str, np.ndarray]   # stem -> bool ground truth


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8, decoded as the backend decodes it (OpenCV)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"cannot read {path}"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def raw_api(server: LabelStudioServer, method: str, path: str, body=None, files=None,
            timeout: float = 120):
    """A Label Studio API call with the legacy token; the `requests` response, as it came."""
    import requests

    return requests.request(method, server.url + path, json=body, files=files, timeout=timeout,
                            headers={"Authorization": f"Token {server.token}"})


def api(server: LabelStudioServer, method: str, path: str, body=None, files=None,
        timeout: float = 120):
    """A raw Label Studio API call with the legacy token (for what the SDK does not return)."""
    r = raw_api(server, method, path, body, files, timeout)
    assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text[:500]}"
    return r.json() if r.content else None


def image_path(folder: Path, stem: str) -> Path:
    """`<folder>/images/<stem>.*` (the fixtures' layout, which GrabCut's shares)."""
    found = sorted((folder / "images").glob(f"{stem}.*"))
    assert found, f"no image {stem}.* in {folder / 'images'}"
    return found[0]


def create_project(ls, ls_server, backend, title: str, stems=IMAGES,
                   folder: Path = FIXTURES) -> Project:
    """A project from config/labeling.xml, `folder`'s images uploaded, our backend connected."""
    config = (REPO / "config" / "labeling.xml").read_text()
    project = ls.projects.create(title=title, label_config=config)
    files = []  # one form field per file: Label Studio keeps one upload per field name
    for k, stem in enumerate(stems):
        path = image_path(folder, stem)
        files.append((f"file{k}", (path.name, path.read_bytes())))
    api(ls_server, "POST", f"/api/projects/{project.id}/import", files=files)
    tasks = {}
    for task in ls.tasks.list(project=project.id):
        name = Path(str(task.data["image"])).name
        stem = next(s for s in stems if name.endswith(f"{s}{Path(name).suffix}"))
        tasks[stem] = task.id
    assert set(tasks) == set(stems), f"imported tasks {tasks} do not match {stems}"
    ml = ls.ml.create(project=project.id, url=backend.url, is_interactive=True,
                      title="clicksmith")
    images = {s: read_rgb(image_path(folder, s)) for s in stems}
    masks = {s: read_rgb(folder / "masks" / f"{s}.png")[:, :, 0] > 127 for s in stems}
    return Project(project.id, ml.id, tasks, images, masks)


@pytest.fixture(scope="session")
def project(ls, ls_server, backend) -> Project:
    return create_project(ls, ls_server, backend, "clicksmith e2e")


# --- the browser ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, through Playwright (tests/e2e/browser.py drives the editor);
    skips, naming the fix, where either is missing."""
    from tests.e2e.browser import ARGS, CHROMIUM

    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is in the test extra")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM}: install it with `bash scripts/install_chromium.sh`"
                    " (Debian's package, as root) or point CLICKSMITH_CHROMIUM at one")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()
