"""Retraining: fine-tune the serving weights on collected corrections, promote only if not worse.

The run, step by step (each failure leaves the registry's `current` untouched):
1. split the corrections by task (a stable hash) into a training part and a held-out part;
2. fine-tune the serving weights on the training part plus RETRAIN_BASE_DATA (`_finetune`);
3. evaluate candidate and serving model on the held-out corrections and on RETRAIN_EVAL_DATA
   with the standard NoC protocol (`_evaluate`; lower NoC@90 is better);
4. if the candidate is not worse on any set, store it in the registry and move `current` to it;
   otherwise record the rejection. Every run leaves `runs/<run>.json` in the registry.

The training and evaluation code live in cdnet/; they are reached through one adapter each,
imported lazily, so a missing piece fails this job with a clear message instead of a silent
pretend-success. Tests inject `finetune` / `evaluate` to exercise the registry logic.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from clicksmith import registry
from clicksmith.settings import Settings, load_settings
from review.corrections import corrections_root, project_dir, read_manifest

log = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.2
MIN_EXAMPLES = 5
SUMMARY_KEYS = ("dataset", "mode", "noc85", "noc90", "nof85", "nof90", "miou1", "miou3",
                "miou5", "spc", "objects")

FinetuneFn = Callable[[Path, list[Path], Path, int], Path]
EvaluateFn = Callable[[Path | None, Path], dict]


class RetrainError(RuntimeError):
    """The retrain could not run (missing training code, too few corrections, busy)."""


# --- the two adapters -------------------------------------------------------------------------


def _finetune(base_weights: Path, dataset_dirs: list[Path], out_path: Path,
              iterations: int) -> Path:
    """Fine-tune through cdnet.train.finetune (the training harness's entry point)."""
    import importlib

    finetune = None
    for name in ("cdnet.train", "cdnet.train.loop"):
        try:
            finetune = getattr(importlib.import_module(name), "finetune", None)
        except ImportError as exc:
            raise RetrainError(f"the training code is not available: {exc}") from None
        if finetune is not None:
            break
    if finetune is None:
        raise RetrainError("cdnet.train has no finetune() yet: cannot fine-tune")
    out = finetune(base_weights, dataset_dirs, out_path, iterations=iterations,
                   run_dir=out_path.parent / "finetune_run")
    return Path(out)


def _evaluate(weights: Path | None, dataset: Path) -> dict:
    """NoC summary of the model in `weights` (None: bundled) on a dataset folder."""
    try:
        from cdnet.eval.noc import evaluate
        from clicksmith.registry import load_configured_predictor
    except ImportError as exc:
        raise RetrainError(f"the evaluation code is not available: {exc}") from None
    predictor = load_configured_predictor(weights, load_settings(), backend="torch")
    out = evaluate(predictor, dataset, mode="empty", progress=False)
    out["objects"] = len(out.get("per_object", []))
    return {k: out[k] for k in SUMMARY_KEYS if k in out}


# --- helpers -----------------------------------------------------------------------------------


def model_version_of(weights: Path) -> str:
    """The version name the predictor reports for a weights file (cdnet.model.io's rule)."""
    from cdnet.model.io import file_digest

    return f"cdnet-mnv2-{file_digest(weights)}"


def _task_hash(project: str, task_id: int) -> int:
    return zlib.crc32(f"{project}/task-{task_id}".encode()) % 1000


def holdout_tasks(tasks: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """A stable ~20% of (project, task) pairs, chosen by hash; at least one of each side when
    there are two or more tasks, so small projects can still be evaluated."""
    ranked = sorted(set(tasks), key=lambda t: (_task_hash(*t), t))
    held = {t for t in ranked if _task_hash(*t) < HOLDOUT_FRACTION * 1000}
    if len(ranked) >= 2:
        if not held:
            held = {ranked[0]}
        if len(held) == len(ranked):
            held.discard(ranked[-1])
    return held


def split_corrections(folders: list[Path], work: Path) -> tuple[Path, Path, dict]:
    """Hard-link corrections into work/train and work/holdout (split by task, never by mask,
    so one image never sits on both sides). Returns (train dir, holdout dir, counts)."""
    counts = {"train": 0, "holdout": 0, "projects": []}
    for part in ("train", "holdout"):
        (work / part / "images").mkdir(parents=True, exist_ok=True)
        (work / part / "masks").mkdir(parents=True, exist_ok=True)
    manifests = {folder: read_manifest(folder) for folder in folders}
    held = holdout_tasks([(f.name, int(r["task"])) for f, rows in manifests.items()
                          for r in rows.values()])
    for folder, rows in manifests.items():
        if not rows:
            continue
        counts["projects"].append(folder.name)
        for row in rows.values():
            part = "holdout" if (folder.name, int(row["task"])) in held else "train"
            stem = f"p{folder.name}t{row['task']}"  # unique across projects
            image_src = folder / row["image"]
            mask_src = folder / row["mask"]
            if not image_src.is_file() or not mask_src.is_file():
                continue
            image_dst = work / part / "images" / f"{stem}{image_src.suffix}"
            if not image_dst.exists():
                _link(image_src, image_dst)
            region = mask_src.stem.rsplit("_", 1)[1]  # <annotation><kk>
            _link(mask_src, work / part / "masks" / f"{stem}_{region}.png")
            counts[part] += 1
    return work / "train", work / "holdout", counts


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _dataset_list(spec: str) -> list[Path]:
    """Comma-separated folders or names under ../shared/datasets (as `clicksmith eval` does)."""
    from cdnet.eval.datasets import resolve

    out = []
    for item in (s.strip() for s in spec.split(",")):
        if item:
            try:
                out.append(resolve(item))
            except ValueError as exc:
                raise RetrainError(str(exc)) from None
    return out


def _not_worse(candidate: dict, current: dict, tolerance: float) -> bool:
    return float(candidate["noc90"]) <= float(current["noc90"]) + tolerance


def _base_weights(settings: Settings) -> Path:
    path = registry.serving_weights(settings)
    if path is not None:
        return path
    from cdnet.model.io import BUNDLED_WEIGHTS

    if not BUNDLED_WEIGHTS.is_file():
        raise RetrainError(f"no base weights to fine-tune: {BUNDLED_WEIGHTS} is missing and the "
                           "registry has no serving version")
    return BUNDLED_WEIGHTS


# --- the job -----------------------------------------------------------------------------------


def retrain_job(project_id: int | None = None, iterations: int | None = None,
                finetune: FinetuneFn | None = None, evaluate: EvaluateFn | None = None,
                tolerance: float = 0.0) -> dict:
    """RQ job (also START_TRAINING): fine-tune, evaluate, promote if not worse.

    `project_id`: corrections of that project (None: of every project). Returns the run record
    (also written to <registry>/runs/<run>.json). Raises on failure, after recording it."""
    settings = load_settings()
    finetune = finetune or _finetune
    evaluate = evaluate or _evaluate
    iterations = settings.retrain_iterations if iterations is None else int(iterations)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    root = registry.registry_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    record: dict = {"run": run_id, "project": project_id, "started_at": time.time(),
                    "iterations": iterations, "serving_before": registry.current_version(settings)}
    with open(root / ".retrain.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetrainError("another retrain is running on this registry") from None
        work = Path(tempfile.mkdtemp(dir=root, prefix=f".work-{run_id}-"))
        try:
            record.update(_run(settings, project_id, iterations, finetune, evaluate, tolerance,
                               work))
        except Exception as exc:
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            record["finished_at"] = time.time()
            registry.atomic_write_json(root / "runs" / f"{run_id}.json", record)
            shutil.rmtree(work, ignore_errors=True)
    return record


def _run(settings: Settings, project_id: int | None, iterations: int, finetune: FinetuneFn,
         evaluate: EvaluateFn, tolerance: float, work: Path) -> dict:
    if project_id is not None:
        folders = [project_dir(settings, project_id)]
    else:
        base = corrections_root(settings)
        folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    train_dir, holdout_dir, counts = split_corrections(folders, work / "data")
    if counts["train"] + counts["holdout"] < MIN_EXAMPLES or not counts["holdout"] or \
            not counts["train"]:
        raise RetrainError(f"not enough corrections to retrain: {counts['train']} for training "
                           f"and {counts['holdout']} held out (need {MIN_EXAMPLES} in all, "
                           "and at least one on each side)")
    base_weights = _base_weights(settings)
    base_data = _dataset_list(settings.retrain_base_data)
    eval_sets = {"holdout": holdout_dir, **{p.name: p for p in
                                            _dataset_list(settings.retrain_eval_data)}}
    candidate = finetune(base_weights, [train_dir, *base_data], work / "candidate.pt",
                         iterations)
    if not Path(candidate).is_file():
        raise RetrainError(f"fine-tuning reported {candidate} but wrote no file")
    serving = registry.serving_weights(settings)
    metrics: dict = {}
    for name, folder in eval_sets.items():
        metrics[name] = {"candidate": evaluate(Path(candidate), folder),
                         "serving": evaluate(serving, folder)}
    verdicts = {n: _not_worse(m["candidate"], m["serving"], tolerance) for n, m in metrics.items()}
    version = model_version_of(Path(candidate))
    out = {"counts": counts, "base_weights": str(base_weights),
           "base_data": [str(p) for p in base_data], "metrics": metrics, "not_worse": verdicts,
           "candidate_version": version, "tolerance": tolerance}
    if not all(verdicts.values()):
        worse = sorted(n for n, ok in verdicts.items() if not ok)
        log.warning("retrain: candidate %s is worse on %s; serving model unchanged", version,
                    worse)
        return {**out, "status": "rejected", "worse_on": worse}
    if registry.version_dir(settings, version).exists():
        raise RetrainError(f"candidate {version} is already in the registry (same weights)")
    registry.store_version(settings, version, Path(candidate), {
        **{k: out[k] for k in ("counts", "metrics", "not_worse", "base_weights")},
        "promoted_over": registry.current_version(settings), "created_at": time.time()},
        export_onnx=True)
    registry.promote(settings, version)
    return {**out, "status": "promoted", "serving_after": version}


def summary_line(record: dict) -> str:
    status = record.get("status", "?")
    line = f"retrain {record['run']}: {status}"
    if "candidate_version" in record:
        line += f" (candidate {record['candidate_version']})"
    for name, m in (record.get("metrics") or {}).items():
        line += (f"; {name}: NoC@90 {m['candidate']['noc90']:.2f} vs serving "
                 f"{m['serving']['noc90']:.2f}")
    if record.get("error"):
        line += f"; {record['error']}"
    return line


def record_json(record: dict) -> str:
    return json.dumps(record, indent=2, sort_keys=True, default=str)
