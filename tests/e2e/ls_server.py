"""A real Label Studio 1.23 server for end-to-end tests: installed once, started per test session.

Why a virtual environment of its own: Label Studio pins its own Django, SDK and friends, which
must not leak into (or be broken by) the project's environment. It lives in the user's cache
folder (`~/.cache/clicksmith/ls-venv-1.23`, or under $CLICKSMITH_CACHE) and is reused by every
run and every clone on the machine (a marker file records the requirement it was built for), so
only the first run pays the install (a few minutes).

Why these settings: `ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false` let Label Studio talk
to a backend on 127.0.0.1 (without them it refuses the backend and silently skips its webhook);
`--user-token` + `--enable-legacy-api-token` give a fixed token the SDK and backend can use.

Every process started here runs in its own process group and is killed by that group's id, even
when startup fails half-way.

    python -m tests.e2e.ls_server install           # build/refresh the cached venv
    python -m tests.e2e.ls_server start [--port N]  # run a throw-away server in the foreground
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _cache_root() -> Path:
    """CLICKSMITH_CACHE, else the user's cache folder: shared by every clone on the machine, so
    CI (a fresh clone each run) does not reinstall Label Studio every time."""
    if os.environ.get("CLICKSMITH_CACHE"):
        return Path(os.environ["CLICKSMITH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clicksmith"


VENV = _cache_root() / "ls-venv-1.23"
REQUIREMENT = "label-studio==1.23.*"
USERNAME = "e2e@clicksmith.test"
PASSWORD = "clicksmith-e2e-pass"
TOKEN = "clicksmith-e2e-token-0123456789"
TEMPLATE_DB = "clicksmith-template.sqlite3"  # inside the venv: rebuilt with it

# pip output meaning "the registry could not be reached" (as opposed to a broken install)
_OFFLINE_HINTS = (
    "Could not find a version that satisfies",
    "No matching distribution found",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectionError",
    "ReadTimeoutError",
)


class InstallUnavailable(RuntimeError):
    """Label Studio could not be installed because no package registry was reachable."""


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ls_executable(venv: Path = VENV) -> Path:
    return venv / "bin" / "label-studio"


def ensure_installed(venv: Path = VENV, requirement: str = REQUIREMENT,
                     timeout: float = 1800) -> Path:
    """Build (or reuse) the venv holding Label Studio; returns the `label-studio` executable.

    A file lock keeps two concurrent test runs from building the same venv at once.
    Raises InstallUnavailable when pip could not reach a registry, RuntimeError otherwise.
    """
    venv.parent.mkdir(parents=True, exist_ok=True)
    marker = venv / ".clicksmith-requirement"
    with open(venv.parent / "ls-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        exe = ls_executable(venv)
        if exe.exists() and marker.exists() and marker.read_text() == requirement:
            return exe
        if venv.exists():
            shutil.rmtree(venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
               "--disable-pip-version-check", requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not exe.exists():
            out = (proc.stdout + proc.stderr)[-3000:]
            shutil.rmtree(venv, ignore_errors=True)
            if any(h in out for h in _OFFLINE_HINTS):
                raise InstallUnavailable(f"pip could not install {requirement}: {out[-600:]}")
            raise RuntimeError(f"installing {requirement} failed (rc {proc.returncode}):\n{out}")
        marker.write_text(requirement)
        return exe


@dataclass
class LabelStudioServer:
    """One Label Studio process on 127.0.0.1 with a fresh data directory."""

    exe: Path
    port: int = 0
    data_dir: Path | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    startup_seconds: float = 0.0
    _own_dir: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    token = TOKEN
    username = USERNAME
    password = PASSWORD

    def start(self, timeout: float = 240) -> LabelStudioServer:
        """Start the server and wait until /health answers; stops it again on any failure."""
        if not self.port:
            self.port = free_port()
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="clicksmith-ls-"))
            self._own_dir = True
        self.log_path = self.data_dir / "label-studio.log"
        template = self.exe.parent.parent / TEMPLATE_DB
        db = self.data_dir / "label_studio.sqlite3"
        from_template = template.is_file() and not db.exists()
        if from_template:
            shutil.copyfile(template, db)
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            # uploaded files served back to the backend through /data/upload/
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "PYTHONUNBUFFERED": "1",
        }
        for key in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV"):
            env.pop(key, None)
        cmd = [str(self.exe), "start", "--host", "127.0.0.1", "--port", str(self.port),
               "--no-browser", "--username", self.username, "--password", self.password,
               "--user-token", self.token, "--enable-legacy-api-token"]
        t0 = time.monotonic()
        log = open(self.log_path, "w")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         cwd=self.data_dir, start_new_session=True)
        finally:
            log.close()
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        if not from_template and not template.exists():
            _snapshot(db, template)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=3) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise TimeoutError(f"Label Studio not healthy after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Kill the server's whole process group (by its id) and remove its data directory."""
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _snapshot(db: Path, template: Path) -> None:
    """Keep a consistent copy of a freshly migrated database (sqlite's online backup).

    Why: on a busy 2-core machine most of Label Studio's start-up is applying its ~300
    migrations to an empty database; a copy of that database (the user, token and organisation,
    no projects) lets later sessions start from a fresh, already-migrated data directory.
    """
    tmp = template.with_suffix(".tmp")
    src = sqlite3.connect(db)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    os.replace(tmp, template)


def stop_process_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the group led by proc (started with start_new_session), SIGKILL after grace."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:  # children may outlive the leader: kill what is left of the group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["install", "start"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        exe = ensure_installed()
    except InstallUnavailable as exc:
        print(f"ls_server: {exc}", file=sys.stderr)
        return 2
    print(f"label-studio ready at {exe} ({time.monotonic() - t0:.0f}s)", flush=True)
    if args.action == "install":
        return 0
    server = LabelStudioServer(exe, port=args.port)
    try:
        server.start()
        print(f"Label Studio at {server.url} (user {USERNAME} / {PASSWORD}, token {TOKEN}); "
              f"started in {server.startup_seconds:.0f}s; Ctrl-C stops it", flush=True)
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
