"""The model registry: promoted model versions on disk, and which one is serving.

Layout under `settings.model_registry`:
    versions/<version>/weights.pt      the fine-tuned weights
    versions/<version>/weights.onnx    their ONNX export (what an install without torch serves)
    versions/<version>/metrics.json    what the retrain measured (candidate vs. previous)
    current                            one line: the serving version's name
    projects/<id>.json                 a project's object scale and whether a retrain adopted
                                       it (cdnet.inference.scale): the frames that project gets

Why a pointer file and not a symlink or env var: replacing one small file with os.replace is
atomic on every filesystem we run on, and the backend and the workers only need to `stat` it
(mtime) to notice a promotion and reload, without a restart. No `current` file means "serve the
bundled weights".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cdnet.fileio import atomic_write_bytes, atomic_write_json
from clicksmith.settings import REPO_ROOT, Settings

if TYPE_CHECKING:  # imported where used: the model service loads no numpy until a model does
    from cdnet.inference.scale import ObjectScale

WEIGHTS_NAME = "weights.pt"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def registry_root(settings: Settings) -> Path:
    root = Path(settings.model_registry)
    return root if root.is_absolute() else REPO_ROOT / root


def check_version(version: str) -> str:
    if not _VERSION_RE.match(version or ""):
        raise ValueError(f"bad model version name {version!r} (letters, digits, . _ - only)")
    return version


def version_dir(settings: Settings, version: str) -> Path:
    return registry_root(settings) / "versions" / check_version(version)


def pointer_path(settings: Settings) -> Path:
    return registry_root(settings) / "current"


def current_version(settings: Settings) -> str | None:
    """The serving version's name, or None (bundled weights)."""
    try:
        name = pointer_path(settings).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def current_weights_path(settings: Settings) -> Path | None:
    """Weights of the serving version, or None for the bundled weights.

    Pollers compare `pointer_mtime()` between calls and reload when it changes."""
    version = current_version(settings)
    if version is None:
        return None
    path = version_dir(settings, version) / WEIGHTS_NAME
    if not path.is_file():
        raise ValueError(f"model registry points to {version!r} but {path} does not exist")
    return path


def pointer_mtime(settings: Settings) -> float | None:
    try:
        return pointer_path(settings).stat().st_mtime_ns / 1e9
    except FileNotFoundError:
        return None


def list_versions(settings: Settings) -> list[dict]:
    """Every stored version with its metrics, oldest first."""
    root = registry_root(settings) / "versions"
    out = []
    for d in sorted(root.iterdir() if root.is_dir() else [], key=lambda p: p.stat().st_mtime):
        metrics_file = d / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        out.append({"version": d.name, "weights": str(d / WEIGHTS_NAME), "metrics": metrics})
    return out


def store_version(settings: Settings, version: str, weights_file: Path, metrics: dict,
                  export_onnx: bool = False) -> Path:
    """Move candidate weights into versions/<version>/ with their metrics (not yet serving).

    `export_onnx`: also write their ONNX export, stamped with the version: the serving image
    has no torch and can serve a promoted version only from that file (elsewhere it is simply
    the faster runner). Needs torch and onnx, which retraining has anyway."""
    target = version_dir(settings, version)
    if target.exists():
        raise ValueError(f"model version {version!r} already exists in the registry")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent.parent, prefix=f".staging-{version}."))
    try:
        shutil.move(str(weights_file), staging / WEIGHTS_NAME)
        if export_onnx:
            from cdnet.onnx_export import export_onnx as export

            export(staging / WEIGHTS_NAME)
        atomic_write_json(staging / "metrics.json", metrics)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def promote(settings: Settings, version: str) -> None:
    """Make `version` the serving one (atomic pointer replace)."""
    if not (version_dir(settings, version) / WEIGHTS_NAME).is_file():
        raise ValueError(f"cannot promote {version!r}: no weights in the registry")
    atomic_write_bytes(pointer_path(settings), (version + "\n").encode())


def project_scale_path(settings: Settings, project_id: int) -> Path:
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id < 1:
        raise ValueError(f"a project id is a positive integer, got {project_id!r}")
    return registry_root(settings) / "projects" / f"{project_id}.json"


def store_project_scale(settings: Settings, project_id: int, decision: dict) -> None:
    """Record a retrain's decision on a project's object scale (atomic). `decision` holds
    "adopted" (bool) and, when adopted, "scale" (ObjectScale.to_dict())."""
    from cdnet.inference.scale import ObjectScale

    if decision.get("adopted"):
        ObjectScale.from_dict(decision.get("scale") or {})  # never store one that cannot load
    atomic_write_json(project_scale_path(settings, project_id), decision)


def project_scale_record(settings: Settings, project_id: int) -> dict | None:
    """The stored decision for a project, or None when no retrain has decided one."""
    try:
        return json.loads(project_scale_path(settings, project_id).read_text())
    except FileNotFoundError:
        return None


def project_scale(settings: Settings, project_id: int) -> ObjectScale | None:
    """The object scale a project's clicks are framed for, or None (the general frames): only
    a scale a retrain adopted. An unreadable record raises ValueError: a damaged registry is
    reported, not silently served with other frames."""
    try:
        record = project_scale_record(settings, project_id)
    except (OSError, ValueError) as exc:
        raise ValueError(f"project {project_id}: unreadable object-scale record: {exc}") from exc
    if record is not None and not isinstance(record, dict):
        raise ValueError(f"project {project_id}: the object-scale record is not an object")
    if not record or not record.get("adopted"):
        return None
    from cdnet.inference.scale import ObjectScale

    return ObjectScale.from_dict(record.get("scale") or {})


class ProjectScales:
    """Projects' adopted scales for a serving process: a record is read again only when its
    file changes (one stat per click). Bounded: forgets everything past MAX_PROJECTS."""

    MAX_PROJECTS = 10_000

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._seen: dict[int, tuple[int | None, ObjectScale | None]] = {}
        self._lock = threading.Lock()

    def get(self, project_id: int) -> ObjectScale | None:
        path = project_scale_path(self.settings, project_id)
        try:
            stamp: int | None = path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        with self._lock:
            hit = self._seen.get(project_id)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        scale = None if stamp is None else project_scale(self.settings, project_id)
        with self._lock:
            if len(self._seen) >= self.MAX_PROJECTS:
                self._seen.clear()
            self._seen[project_id] = (stamp, scale)
        return scale


def serving_weights(settings: Settings) -> Path | None:
    """MODEL_PATH when set, else the registry's serving version, else None (bundled)."""
    if settings.model_path:
        return Path(settings.model_path)
    return current_weights_path(settings)


def serving_key(settings: Settings) -> tuple:
    """Changes whenever the weights that should serve change: pollers reload on a new key."""
    path = serving_weights(settings)
    return (str(path) if path else None, pointer_mtime(settings),
            path.stat().st_mtime_ns if path and path.exists() else None)


def load_serving_predictor(settings: Settings):
    """The predictor for the weights that should serve now, configured from settings."""
    return load_configured_predictor(serving_weights(settings), settings)


def load_configured_predictor(weights: Path | None, settings: Settings,
                              backend: str | None = None):
    """The predictor for `weights` (None: bundled) exactly as settings make it serve, so a
    candidate is judged in the configuration it would be promoted into."""
    from cdnet import load_predictor

    return load_predictor(
        weights, progressive=settings.progressive,
        progressive_join=settings.progressive_join, flip=settings.flip_average,
        backend=backend or settings.inference_backend, base_size=settings.base_size,
        zoom_size=settings.zoom_size, score_size=settings.score_size, drop_far=settings.drop_far,
        threads=settings.torch_threads)


def bundled_version() -> str:
    """The version the bundled weights report when they serve, read without loading torch
    ("cdnet-mnv2-untrained" when the file is missing, as the loader reports then)."""
    from cdnet.model.files import version_of

    return version_of(None)
