"""Benchmarks and scripts are not a package: tests import one by its path."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_script(path: str) -> ModuleType:
    """The module of the script at `path` (relative to the repository), executed once per call."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO_ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str) -> ModuleType:
    """The module of `benchmarks/<name>.py`."""
    return load_script(f"benchmarks/{name}.py")
