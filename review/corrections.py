"""Corrections: annotated brush masks collected from Label Studio webhooks as training examples.

One folder per project under CORRECTIONS_ROOT, in the same layout as the evaluation datasets so
the fine-tuning and evaluation code read it unchanged:
    <root>/<project>/images/t<task>.png
    <root>/<project>/masks/t<task>_<annotation><kk>.png    (kk: region index, two digits)
    <root>/<project>/manifest.jsonl                         one row per mask, sorted by key

Every file is written atomically (temp + os.replace) and only when its bytes change, under a
per-project file lock, so an update replaces the example, a deletion removes it, and replaying
an event — LS sends no retries, but our queue may run a job twice — changes nothing. An event
older than what is stored (by `updated_at`) is ignored, so an out-of-order replay cannot revert.

Failures: a payload that is malformed, or an annotation whose image cannot be had for a
permanent reason, fails the job once, with the reason (clicksmith.queue.PermanentJobError; the
worker does not retry it). In a bulk event the other annotations are stored first. A transient
failure (Label Studio or the image host down) fails the job after the rest is stored, and RQ
retries it with back-off; the replay rewrites nothing already stored.
"""

from __future__ import annotations

import fcntl
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from cdnet.eval.metrics import iou
from cdnet.fileio import atomic_write_bytes
from clicksmith.labelstudio.client import as_dict, client_for
from clicksmith.labelstudio.config import ProjectConfig, parse_config, project_config
from clicksmith.labelstudio.ids import body_project_id
from clicksmith.labelstudio.images import load_task_image
from clicksmith.labelstudio.regions import merge_brush_regions
from clicksmith.queue import PermanentJobError, is_transient
from clicksmith.settings import REPO_ROOT, Settings, load_settings

log = logging.getLogger(__name__)
HANDLED = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED",
           "ANNOTATIONS_DELETED"}


def corrections_root(settings: Settings) -> Path:
    root = Path(settings.corrections_root)
    return root if root.is_absolute() else REPO_ROOT / root


def project_dir(settings: Settings, project_id: int) -> Path:
    return corrections_root(settings) / str(int(project_id))


# --- manifest -----------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, dict]:
    path = folder / "manifest.jsonl"
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["key"]: row for row in rows}


def _manifest_bytes(rows: dict[str, dict]) -> bytes:
    return "".join(json.dumps(rows[k], sort_keys=True) + "\n" for k in sorted(rows)).encode()


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write_bytes(path, data)
    return True


def _png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("could not encode PNG")
    return buf.tobytes()


@contextmanager
def _locked(folder: Path):
    """One writer per project folder at a time (workers on one host or a shared filesystem)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- the job ------------------------------------------------------------------------------------


def handle_event(payload: dict) -> dict:
    """RQ job for a Label Studio webhook payload; returns what changed (for logs and tests).

    PermanentJobError when the payload or an annotation is at fault (the job is not retried);
    a transient error is raised as is, once every other annotation is stored."""
    if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
        raise PermanentJobError("webhook payload must be a JSON object with an 'action'")
    action = payload["action"]
    if action not in HANDLED:
        return {"action": action, "ignored": True}
    settings = load_settings()
    project = _project_id(payload)
    if action == "ANNOTATIONS_DELETED":
        listed = payload.get("annotations") or payload.get("annotation") or []
        try:
            ids = [int(a["id"] if isinstance(a, dict) else a) for a in listed]
        except (KeyError, TypeError, ValueError):
            raise PermanentJobError(f"{action}: 'annotations' must list annotation ids, "
                                    f"got {str(listed)[:200]}") from None
        return {"action": action, "removed": remove_annotations(settings, ids, project)}
    annotations = payload.get("annotation")
    tasks = payload.get("task")
    if isinstance(annotations, dict):
        annotations, tasks = [annotations], [tasks] if isinstance(tasks, dict) else []
    if not isinstance(annotations, list):
        raise PermanentJobError(f"{action}: the payload holds no 'annotation'")
    by_id = {}
    for t in tasks if isinstance(tasks, list) else []:
        if isinstance(t, dict) and str(t.get("id")).isdigit():
            by_id[int(t["id"])] = t
    changed = stored = 0
    failed: list[str] = []
    transient: Exception | None = None
    for ann in annotations:
        try:
            ann_id, task_id = annotation_ids(ann)
            task = by_id.get(task_id)
            where = project or ann.get("project") or (task or {}).get("project")
            if where is None:
                raise PermanentJobError(f"annotation {ann_id}: the payload names no project")
            n, c = store_annotation(settings, _int(where, "project"), ann, task,
                                    payload.get("project"))
        except Exception as exc:
            if is_transient(exc):
                transient = transient or exc
                log.warning("%s: %s (the job will be retried)", action, exc)
            else:
                failed.append(_reason(ann, exc))
            continue
        stored += n
        changed += c
    if transient is not None:
        raise transient
    if failed:
        raise PermanentJobError(f"{action}: {len(failed)} of {len(annotations)} annotation(s) "
                                f"not stored ({stored} mask(s) stored): " + "; ".join(failed))
    return {"action": action, "stored": stored, "files_changed": changed}


def annotation_ids(ann: object) -> tuple[int, int]:
    """(annotation id, task id) of a payload's annotation; PermanentJobError if it has none."""
    try:
        return int(ann["id"]), int(ann["task"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        shown = ann.get("id") if isinstance(ann, dict) else str(ann)[:100]
        raise PermanentJobError(f"annotation {shown!r}: an annotation needs an integer 'id' "
                                "and 'task'") from None


def _reason(ann: object, exc: Exception) -> str:
    if isinstance(exc, PermanentJobError):
        return str(exc)
    shown = ann.get("id") if isinstance(ann, dict) else "?"
    return f"annotation {shown}: {type(exc).__name__}: {exc}"


def _int(value: object, what: str) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PermanentJobError(f"the payload's {what} id {value!r} is not a number") from None


def _project_id(payload: dict) -> int | None:
    try:
        return body_project_id(payload)
    except ValueError as exc:
        raise PermanentJobError(f"the payload's {exc}") from None


def store_annotation(settings: Settings, project_id: int, ann: dict, task: dict | None,
                     project: dict | None = None, client=None) -> tuple[int, int]:
    """Store (or replace, or drop) the brush masks of one annotation. -> (masks, files changed)."""
    ann_id, task_id = annotation_ids(ann)
    folder = project_dir(settings, project_id)
    regions = [] if ann.get("was_cancelled") else merge_brush_regions(ann.get("result"))
    stamp = str(ann.get("updated_at") or ann.get("created_at") or "")
    with _locked(folder):
        rows = read_manifest(folder)
        mine = {k: r for k, r in rows.items() if r["annotation"] == ann_id}
        if mine and stamp and any(r.get("updated_at", "") > stamp for r in mine.values()):
            log.info("annotation %s: ignoring an event older than the stored one", ann_id)
            return len(mine), 0
        changed = 0
        new_rows: dict[str, dict] = {}
        if regions:
            client = client or client_for(settings)
            cfg = _config(client, project_id, project)
            image_path = folder / "images" / f"t{task_id}.png"
            if not image_path.is_file():
                task = task if task and task.get("data") else as_dict(client.tasks.get(task_id))
                image = load_task_image(settings, task, cfg)
                changed += _write_if_changed(image_path, _png(image[:, :, ::-1]))
            prediction = _prelabel_prediction(client, ann, task_id)
            pred_regions = dict(merge_brush_regions(prediction.get("result"))) if prediction else {}
            for k, (label, mask) in enumerate(regions):
                key = f"t{task_id}_{ann_id}{k:02d}"
                pmask = pred_regions.get(label)
                if pmask is None and len(pred_regions) == 1:
                    pmask = next(iter(pred_regions.values()))
                new_rows[key] = {
                    "key": key, "task": task_id, "annotation": ann_id, "label": label,
                    "image": f"images/t{task_id}.png", "mask": f"masks/{key}.png",
                    "model_version": (prediction or {}).get("model_version"),
                    "prediction": (prediction or {}).get("id"),
                    "iou": None if pmask is None or pmask.shape != mask.shape
                    else round(iou(pmask, mask), 6),
                    "updated_at": stamp,
                }
                changed += _write_if_changed(folder / "masks" / f"{key}.png",
                                             _png(np.where(mask, 255, 0).astype(np.uint8)))
        for key in set(mine) - set(new_rows):
            (folder / mine[key]["mask"]).unlink(missing_ok=True)
            changed += 1
        rows = {k: r for k, r in rows.items() if k not in mine} | new_rows
        changed += _drop_orphan_images(folder, rows, task_id)
        changed += _write_if_changed(folder / "manifest.jsonl", _manifest_bytes(rows))
        return len(new_rows), changed


def remove_annotations(settings: Settings, ann_ids: list[int], project_id: int | None) -> int:
    """Drop every stored mask of these annotations (all projects when the project is unknown)."""
    root = corrections_root(settings)
    folders = [project_dir(settings, project_id)] if project_id is not None else (
        [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else [])
    wanted = set(ann_ids)
    removed = 0
    for folder in folders:
        if not (folder / "manifest.jsonl").is_file():
            continue
        with _locked(folder):
            rows = read_manifest(folder)
            gone = {k: r for k, r in rows.items() if r["annotation"] in wanted}
            if not gone:
                continue
            for row in gone.values():
                (folder / row["mask"]).unlink(missing_ok=True)
            rows = {k: r for k, r in rows.items() if k not in gone}
            for task_id in {r["task"] for r in gone.values()}:
                _drop_orphan_images(folder, rows, task_id)
            _write_if_changed(folder / "manifest.jsonl", _manifest_bytes(rows))
            removed += len(gone)
    return removed


def _drop_orphan_images(folder: Path, rows: dict[str, dict], task_id: int) -> int:
    if any(r["task"] == task_id for r in rows.values()):
        return 0
    path = folder / "images" / f"t{task_id}.png"
    if path.is_file():
        path.unlink()
        return 1
    return 0


def _config(client, project_id: int, project: dict | None) -> ProjectConfig:
    if isinstance(project, dict) and project.get("label_config"):
        return parse_config(project["label_config"], interactive=False)
    return project_config(client, project_id)


def _prelabel_prediction(client, ann: dict, task_id: int) -> dict | None:
    """The prediction the annotator started from: the annotation's parent, else the newest
    prediction on the task holding a brush mask."""
    preds = [as_dict(p) for p in client.predictions.list(task=task_id)]
    parent = ann.get("parent_prediction")
    for p in preds:
        if parent is not None and p.get("id") == parent:
            return p
    with_brush = [p for p in preds
                  if any(r.get("type") == "brushlabels" for r in p.get("result") or [])]
    with_brush.sort(key=lambda p: str(p.get("updated_at") or p.get("created_at") or ""))
    return with_brush[-1] if with_brush else None
