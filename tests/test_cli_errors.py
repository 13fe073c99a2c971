"""`clicksmith` against a Redis or a Label Studio that is not there: one line on stderr saying
what could not be reached, where, and the fix; exit status 2; no traceback.

Run as a user runs it (a subprocess of the installed entry point's module), against ports on
127.0.0.1 where nothing listens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from clicksmith.cli import redact, unreachable

REPO = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (the OS picked it free; it is closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clicksmith(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(REPO), "TORCH_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "clicksmith.cli", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=300)


def one_line(out: subprocess.CompletedProcess, command: str, *words: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    line = lines[0]
    assert line.startswith(f"clicksmith {command}: ") and "Traceback" not in out.stderr, line
    for word in words:
        assert word in line, line
    assert "Fix: " in line, line
    return line


@pytest.fixture
def no_redis() -> dict[str, str]:
    return {"REDIS_URL": f"redis://:hunter2@127.0.0.1:{closed_port()}/0"}


@pytest.fixture
def no_label_studio() -> dict[str, str]:
    return {"LABEL_STUDIO_URL": f"http://127.0.0.1:{closed_port()}",
            "LABEL_STUDIO_API_KEY": "some-legacy-token"}


@pytest.mark.parametrize("args", [["status", "some-run"], ["worker", "--burst"],
                                  ["retrain", "--enqueue"]])
def test_redis_down(args, no_redis):
    line = one_line(clicksmith(args, **no_redis), args[0], "cannot reach Redis at",
                    "REDIS_URL", "Connection refused", "start Redis")
    assert "hunter2" not in line and ":***@127.0.0.1" in line  # the password stays secret


@pytest.mark.slow
@pytest.mark.parametrize("args", [["prelabel", "--project", "3"],
                                  ["review", "--project", "3", "--out", "{tmp}"]])
def test_label_studio_down(args, no_redis, no_label_studio, tmp_path):
    args = [a.format(tmp=tmp_path / "report") for a in args]
    one_line(clicksmith(args, **no_redis, **no_label_studio), args[0],
             "cannot reach Label Studio at", no_label_studio["LABEL_STUDIO_URL"],
             "LABEL_STUDIO_URL", "start Label Studio")
    assert not (tmp_path / "report").exists()


@pytest.mark.slow
def test_prelabel_with_label_studio_up_and_redis_down(fake_ls, no_redis):
    fake_ls.add_project(5, 2)
    from tests.review.lsfake import API_KEY

    out = clicksmith(["prelabel", "--project", "5"], **no_redis, LABEL_STUDIO_URL=fake_ls.url,
                     LABEL_STUDIO_API_KEY=API_KEY)
    one_line(out, "prelabel", "cannot reach Redis at", "REDIS_URL")


def test_other_errors_are_not_taken_for_an_unreachable_service():
    assert unreachable(ValueError("a bad value")) is None
    assert unreachable(KeyError("x")) is None


def test_a_cause_is_followed_and_a_url_password_hidden():
    import redis

    try:
        try:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        except redis.ConnectionError as exc:
            raise RuntimeError("job failed") from exc
    except RuntimeError as wrapped:
        line = unreachable(wrapped)
    assert line is not None and "Connection refused. Fix:" in line
    assert redact("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("redis://user:pw@host/0") == "redis://user:***@host/0"
    assert redact("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
