"""The package layers: cdnet/ is the model only and starts cheap; dependencies point down."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from cdnet.inference import defaults

REPO = Path(__file__).resolve().parents[2]
APP_PACKAGES = ("clicksmith", "backend", "review")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_cdnet_imports_nothing_from_the_application():
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "cdnet").rglob("*.py"))
        for name in _imported_modules(path)
        if name.split(".")[0] in APP_PACKAGES
    ]
    assert offenders == []


def test_import_cdnet_loads_neither_torch_nor_opencv():
    code = ("import sys, cdnet, clicksmith.cli, clicksmith.settings; "
            "print(sorted(m for m in ('torch', 'cv2', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
    # and the lazy names still resolve to the real objects
    code = "import cdnet; print(cdnet.Predictor.__module__, cdnet.Click.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.split() == ["cdnet.inference.predictor", "Click"]


def test_served_defaults_repeat_the_models_own():
    with open(REPO / "config" / "defaults.toml", "rb") as f:
        toml = tomllib.load(f)
    assert (toml["base_size"], toml["zoom_size"], toml["score_size"], toml["progressive_join"],
            toml["flip_average"], toml["drop_far"]) == (
        defaults.BASE_SIZE, defaults.ZOOM_SIZE, defaults.SCORE_SIZE, defaults.PROGRESSIVE_JOIN,
        defaults.FLIP_AVERAGE, defaults.DROP_FAR)


def test_inside_cdnet_the_model_and_inference_import_no_tool_above_them():
    """model/ and inference/ are the bottom layers: eval, train, tools and the ONNX exporter
    build on them, never the reverse."""
    below = ("cdnet.clicks", "cdnet.fileio", "cdnet.model", "cdnet.inference")
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for layer in ("model", "inference")
        for path in sorted((REPO / "cdnet" / layer).rglob("*.py"))
        for name in _imported_modules(path)
        if name.startswith("cdnet") and not name.startswith(below)
    ]
    assert offenders == []


def test_backend_and_review_meet_only_in_the_application_layer():
    """backend/ (HTTP) and review/ (jobs) share code only through clicksmith/ and cdnet/; the
    application layer imports neither (its CLI names their commands as strings)."""
    rules = {"backend": ("review",), "review": ("backend",), "clicksmith": ("backend", "review")}
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for package, forbidden in rules.items()
        for path in sorted((REPO / package).rglob("*.py"))
        for name in _imported_modules(path)
        if name.split(".")[0] in forbidden
    ]
    assert offenders == []
