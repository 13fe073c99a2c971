"""Fixtures for the review-loop tests: the fake Label Studio, real Redis, real RQ workers.

Redis: these tests use database 14 of the real server at 127.0.0.1:6379 (not used by other
test modules of this repo) and a fresh queue name per test; the database is flushed after each
test. RQ workers run as subprocesses (`python -m clicksmith.cli worker`), exactly as deployed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.review.lsfake import API_KEY

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
REDIS_DB = 14


@pytest.fixture
def redis_url():
    from redis import Redis

    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    conn = Redis.from_url(url)
    try:
        conn.ping()
    except Exception as exc:  # the guide: Redis runs here; say so clearly when it does not
        pytest.fail(f"real Redis at 127.0.0.1:6379 is needed: {exc}")
    yield url
    conn.flushdb()


@pytest.fixture
def env(fake_ls, redis_url, tmp_path, monkeypatch):
    """Environment for the CLI, the jobs in this process, and the worker subprocesses."""
    values = {
        "REDIS_URL": redis_url,
        "QUEUE_NAME": f"test-{uuid.uuid4().hex[:8]}",
        "LABEL_STUDIO_URL": fake_ls.url,
        "LABEL_STUDIO_API_KEY": API_KEY,
        "MODEL_REGISTRY": str(tmp_path / "models"),
        "CORRECTIONS_ROOT": str(tmp_path / "corrections"),
        "JOB_RETRIES": "2",
        "TORCH_THREADS": "1",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    from clicksmith.models import reset_process_service

    reset_process_service()
    return values


class Workers:
    """Worker subprocesses started by a test; all are killed (by pid) at teardown."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
        self.procs: list[subprocess.Popen] = []

    def start(self, burst: bool = True) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "clicksmith.cli", "worker", "--maintenance-interval", "5"]
        if burst:
            cmd.append("--burst")
        # own process group: RQ's scheduler runs in a child process, killed along with it
        proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.procs.append(proc)
        return proc

    def wait(self, proc: subprocess.Popen, timeout: float = 240) -> str:
        out, _ = proc.communicate(timeout=timeout)
        return out

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the worker and its children (a machine dying mid-job)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            self.kill(proc)


@pytest.fixture
def workers(env):
    w = Workers(env)
    yield w
    w.stop_all()


def wait_until(predicate, timeout: float = 120, step: float = 0.2, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
