"""Retraining: fine-tune the serving weights on collected corrections, promote only if better.

The run, step by step (each failure leaves the registry's `current` untouched):
1. take the registry's lock (`.retrain.lock`: holder pid, host, run and a heartbeat), taking
   over a stale one, and clean up what an interrupted run left (`.work-*`, `.staging-*`, a run
   record still saying "running");
2. split the corrections by task (a stable hash) into a training part and a held-out part;
   with fewer than RETRAIN_MIN_HOLDOUT held-out objects the run stops here, "not enough
   evidence" (see MIN_HOLDOUT_WHY), without fine-tuning for nothing;
3. fine-tune the serving weights on the training part, with RETRAIN_REPLAY of every batch's
   objects drawn from RETRAIN_BASE_DATA (the base model's training folders) against
   forgetting (`_finetune`);
4. for one project: measure its object scale on the training part (cdnet.inference.scale)
   and adopt it (`registry.store_project_scale`: that project's clicks get the scale's frames)
   when the serving model needs fewer clicks with it on the held-out corrections, by the same
   rule as a candidate (`decide`);
5. evaluate candidate and serving model with the standard NoC protocol (`_evaluate`; lower
   NoC@90 is better) on the held-out corrections (with the project's frames as just decided),
   on the general set (RETRAIN_GENERAL_DATA: fixed held-out objects of the base training
   folders, skipped with a note when they are not on this machine) and on RETRAIN_EVAL_DATA
   (general frames: they stand for the other projects);
6. promote (store in the registry, move `current`) only when the candidate is better on the
   held-out corrections and not worse than RETRAIN_GENERAL_TOLERANCE on every other set (a
   candidate the held-out corrections refuse is not evaluated on the other sets).
Every run leaves `runs/<run>.json` in the registry, written at the start ("running", with its
progress: phase, iteration, ETA, updated every few seconds) and at the end.

The training and evaluation code live in cdnet/; they are reached through one adapter each,
imported lazily, so a missing piece fails this job with a clear message instead of a silent
pretend-success. Tests inject `finetune` / `evaluate` to exercise the registry logic.
"""

from __future__ import annotations

import errno
import fcntl
import inspect
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from cdnet.inference.scale import ObjectScale, measure_scale
from cdnet.model.files import version_of
from clicksmith import registry
from clicksmith.settings import Settings, load_settings
from review.corrections import corrections_root, project_dir, read_manifest

log = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.2
LOCK_NAME = ".retrain.lock"
SUMMARY_KEYS = ("dataset", "mode", "noc85", "noc90", "nof85", "nof90", "miou@1", "miou@3",
                "miou@5", "spc", "objects", "clicks90", "reused", "runner")
# Why a minimum of held-out objects (RETRAIN_MIN_HOLDOUT, default 20): benchmarks/adaptation.py
# on domain_nuclei (results/adaptation_reduced.json, batch 2's gate): per-object NoC@90
# differences between a candidate and the serving model on the same 24 held-out objects had
# SD 1.15 clicks for a mean gain of 0.88. The standard error of the mean difference is then
# 1.15 on 1 object, 0.52 on 5, 0.26 on 20: only from about 20 objects is a gain of half a
# click (2 SE) distinguishable from noise; "3.00 vs 3.00 on 1 object" decided nothing.
MIN_HOLDOUT_WHY = ("per-object click differences between two models spread by ~1.15 clicks "
                   "(benchmarks/adaptation.py), so a mean over fewer objects cannot show a gain "
                   "of half a click")
GENERAL_SHARE_FOLDERS = "train_"  # the base training folders under ../shared/datasets

FinetuneFn = Callable[..., Path]
EvaluateFn = Callable[..., dict]
ProgressFn = Callable[[dict], None]


class RetrainError(RuntimeError):
    """The retrain could not run (missing training code, too few corrections, busy)."""


# --- the two adapters -------------------------------------------------------------------------


def _finetune(base_weights: Path, dataset_dirs: list[Path], out_path: Path, iterations: int,
              **options) -> Path:
    """Fine-tune through cdnet.train.loop.finetune (the training harness's entry point).

    `options`: lr, crop, layers, source_weights, threads, freeze_bn, on_iteration (see
    finetune)."""
    try:
        from cdnet.train.loop import finetune
    except ImportError as exc:
        raise RetrainError(f"the training code is not available: {exc}") from None
    out = finetune(base_weights, dataset_dirs, out_path, iterations=iterations,
                   run_dir=out_path.parent / "finetune_run", **options)
    return Path(out)


def _evaluate(weights: Path | None, dataset: Path,
              on_object: Callable[[dict], None] | None = None,
              scale: ObjectScale | None = None, backend: str | None = None) -> dict:
    """NoC summary of the model in `weights` (None: bundled) on a dataset folder, in the
    configuration it serves in (flip, view sizes, progressive), on `backend` (None:
    INFERENCE_BACKEND; see judging_backend), with the frames for `scale` (None: the general
    frames). Objects this model already ran on under the same settings, runner, frames and
    code are taken from review.eval_cache, not rerun."""
    try:
        from cdnet.eval.datasets import Dataset
        from cdnet.eval.noc import MAX_CLICKS, evaluate
        from clicksmith.registry import load_configured_predictor
        from review.eval_cache import EvalCache, fingerprint, object_digests
    except ImportError as exc:
        raise RetrainError(f"the evaluation code is not available: {exc}") from None
    from cdnet.eval.metrics import noc

    settings = load_settings()
    predictor = load_configured_predictor(weights, settings, backend=backend)
    runner = predictor.runner.name
    protocol: dict = {"mode": "empty", "max_clicks": MAX_CLICKS, "stop_iou": 0.90}
    if not runner.startswith("torch"):  # torch results keep the key they always had
        protocol["runner"] = runner
    if scale is not None:  # the general frames keep the key they always had
        predictor = predictor.for_scale(scale)
        protocol["frames"] = [scale.first_view, scale.zoom_min, scale.zoom_expand]
    ds = Dataset(dataset)
    digests = object_digests(ds)
    cache = EvalCache(eval_cache_root(settings), version_of(weights),
                      fingerprint(settings, protocol))
    done = cache.reusable(digests)
    for entry in done.values():  # progress counts every object, computed or reused
        if on_object is not None:
            on_object(entry)

    def computed(entry: dict) -> None:
        cache.add(entry["name"], digests[entry["name"]], entry)
        if on_object is not None:
            on_object(entry)

    try:
        out = evaluate(predictor, ds, mode="empty", progress=False, done=done,
                       on_object=computed)
    finally:  # what was computed before a failure is kept for the next run
        cache.save()
    out["reused"] = len(done)
    out["runner"] = runner
    out["objects"] = len(out.get("per_object", []))
    out["clicks90"] = [noc(o["ious"], 0.90, out.get("max_clicks", 20))
                       for o in out.get("per_object", [])]
    return {k: out[k] for k in SUMMARY_KEYS if k in out}


def judging_backend(settings: Settings, serving: Path | None, candidate: Path) -> str:
    """The one runner both models are judged on in this run: "onnx" when ONNX Runtime is
    installed and the serving weights carry an export made from them (bundled and promoted
    versions do), after writing the candidate's export beside it; "torch" otherwise, and
    always when INFERENCE_BACKEND is torch. Why: the evaluation is most of a retrain's time,
    and on ONNX Runtime it took half as long on 2 cores (benchmarks/results/
    adaptation_scale.md, "Retrain time"); one runner for both, so that no float difference
    between runners ever decides a promotion."""
    from clicksmith.registry import load_configured_predictor

    if settings.inference_backend == "torch":
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.info("retrain: ONNX Runtime is not installed; both models are judged on torch")
        return "torch"
    if not load_configured_predictor(serving, settings).runner.name.startswith("onnx"):
        log.info("retrain: the serving weights have no ONNX export made from them; both "
                 "models are judged on torch")
        return "torch"
    from cdnet.onnx_export import export_onnx

    export_onnx(candidate)
    return "onnx"


def eval_cache_root(settings: Settings) -> Path:
    """Where review.eval_cache keeps per-object results, one file per model version."""
    return registry.registry_root(settings) / "eval_cache"


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


# --- helpers -----------------------------------------------------------------------------------


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


def _shared_datasets() -> Path:
    from cdnet.eval.datasets import SHARED_DATASETS

    return SHARED_DATASETS


def dataset_list(spec: str) -> list[Path]:
    """Comma-separated folders or names under ../shared/datasets (as `clicksmith eval` does);
    "auto": every train_* folder there (none when ../shared is absent)."""
    from cdnet.eval.datasets import resolve

    if spec.strip() == "auto":
        root = _shared_datasets()
        return sorted(p for p in root.glob(f"{GENERAL_SHARE_FOLDERS}*")
                      if (p / "images").is_dir() and (p / "masks").is_dir()) \
            if root.is_dir() else []
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if item:
            try:
                out.append(resolve(item))
            except ValueError as exc:
                raise RetrainError(str(exc)) from None
    return out


def replay_folders(base: list[Path], work: Path) -> list[Path]:
    """The base training folders without their held-out images (the 5% by name hash that
    training validated on and the general set is drawn from): symlinked per file into
    work/replay/<folder>, so nothing is copied and the general check stays unseen."""
    from cdnet.train.data import VAL_FRACTION, scan, split

    out = []
    for folder in base:
        train, _held = split(scan(folder), VAL_FRACTION)
        dst = work / "replay" / folder.name
        (dst / "images").mkdir(parents=True, exist_ok=True)
        (dst / "masks").mkdir(parents=True, exist_ok=True)
        for e in train:
            os.symlink(e.image.resolve(), dst / "images" / e.image.name)
            for m in e.masks:
                os.symlink(m.resolve(), dst / "masks" / m.name)
        if train:
            out.append(dst)
    return out


def general_set(spec: str, n_objects: int, work: Path) -> tuple[Path | None, str]:
    """The general check's folder and a note. "auto": `n_objects` fixed held-out objects of the
    base training folders (their 5% held-out split, first mask of each image, spread over the
    folders by name hash), linked into work/general; "" : no general check; else a folder."""
    spec = spec.strip()
    if not spec:
        return None, "general check off (RETRAIN_GENERAL_DATA is empty)"
    if spec != "auto":
        folders = dataset_list(spec)
        if len(folders) != 1:
            raise RetrainError(f"RETRAIN_GENERAL_DATA names one folder, got {spec!r}")
        return folders[0], f"general check on {folders[0]}"
    folders = dataset_list("auto")
    if not folders:
        return None, (f"general check skipped: no train_* folders under {_shared_datasets()} "
                      "(a clone without ../shared); only the project's held-out corrections "
                      "were checked")
    from cdnet.train.data import VAL_FRACTION, scan, split

    held = [e for f in folders for e in split(scan(f), VAL_FRACTION)[1]]
    held.sort(key=lambda e: zlib.crc32(f"{e.image.parent.parent.name}/{e.image.name}".encode()))
    dst = work / "general"
    (dst / "images").mkdir(parents=True, exist_ok=True)
    (dst / "masks").mkdir(parents=True, exist_ok=True)
    for e in held[:n_objects]:
        stem = f"{e.image.parent.parent.name}__{e.image.stem}"
        os.symlink(e.image.resolve(), dst / "images" / f"{stem}{e.image.suffix}")
        os.symlink(e.masks[0].resolve(), dst / "masks" / f"{stem}.png")
    n = min(n_objects, len(held))
    return dst, f"general check on {n} held-out objects of {len(folders)} base training folders"


def _count_images(folder: Path) -> int:
    return sum(1 for p in (folder / "images").iterdir()) if (folder / "images").is_dir() else 0


def source_weights(train_dir: Path, replay: list[Path], share: float) -> dict[str, float]:
    """Per-folder image weights so that `share` of the sampled objects come from the replay
    folders (spread by image) and the rest from the corrections."""
    if not replay or share <= 0:
        return {}
    n_corr = max(1, _count_images(train_dir))
    n_base = max(1, sum(_count_images(f) for f in replay))
    out = {train_dir.name: (1.0 - share) / n_corr}
    out.update({f.name: share / n_base for f in replay})
    return out


def _base_weights(settings: Settings) -> Path:
    path = registry.serving_weights(settings)
    if path is not None:
        return path
    from cdnet.model.io import BUNDLED_WEIGHTS

    if not BUNDLED_WEIGHTS.is_file():
        raise RetrainError(f"no base weights to fine-tune: {BUNDLED_WEIGHTS} is missing and the "
                           "registry has no serving version")
    return BUNDLED_WEIGHTS


# --- the lock ----------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class RetrainLock:
    """One retrain per registry. `.retrain.lock` is flock'ed while held and holds the holder's
    pid, host, run and a heartbeat (rewritten every few seconds by a thread).

    Taking over: a lock file whose flock is free was left by a process that ended (flock dies
    with its process) — unless its holder runs on another host of a shared filesystem, where
    flock may not reach: then it counts as held while its heartbeat is younger than
    `stale_s`. A holder on this host whose pid is gone is stale at once. Released by removing
    the file while still holding the flock (the next holder checks it locked the file that is
    still at the path)."""

    def __init__(self, root: Path, run_id: str, stale_s: float):
        self.path = root / LOCK_NAME
        self.run_id, self.stale_s = run_id, float(stale_s)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.fd: int | None = None
        self.taken_over: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def read(path: Path) -> dict:
        try:
            data = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def describe(self, holder: dict) -> str:
        age = time.time() - float(holder.get("heartbeat") or 0)
        return (f"run {holder.get('run', '?')}, pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, last heartbeat {age:.0f} s ago")

    def _stale(self, holder: dict) -> bool:
        if not holder:
            return True
        age = time.time() - float(holder.get("heartbeat") or 0)
        if holder.get("host") == self.host:
            pid = int(holder.get("pid") or 0)
            return pid == self.pid or not pid or not _pid_alive(pid) or age > self.stale_s
        return age > self.stale_s

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = self.read(self.path)
                raise RetrainError("another retrain is running on this registry ("
                                   f"{self.describe(holder)})") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released (unlinked) between our open and flock: try again
                os.close(fd)
                continue
            holder = self.read(self.path)
            if holder and not self._stale(holder):
                os.close(fd)
                raise RetrainError("another retrain is running on this registry ("
                                   f"{self.describe(holder)}; taken over once its heartbeat "
                                   f"is {self.stale_s:.0f} s old)")
            self.taken_over = holder or None
            self.fd = fd
            self._write()
            self._thread = threading.Thread(target=self._beat, name="retrain-heartbeat",
                                            daemon=True)
            self._thread.start()
            return
        raise RetrainError(f"could not take {self.path}: it keeps being replaced")

    def _write(self) -> None:
        if self.fd is None:
            return
        data = json.dumps({"run": self.run_id, "pid": self.pid, "host": self.host,
                           "heartbeat": time.time()}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def _beat(self) -> None:
        while not self._stop.wait(max(0.5, min(10.0, self.stale_s / 6))):
            try:
                self._write()
            except OSError:  # the file system went away: the run will fail on its own
                log.warning("retrain: could not renew the lock's heartbeat")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.fd is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None


def clean_leftovers(root: Path, keep: Path | None, run_id: str) -> dict:
    """What interrupted runs left, removed by the lock's new holder (no other run can be using
    it): `.work-*` and `.staging-*` folders, run records still "running" (marked
    "interrupted")."""
    removed = []
    for d in list(root.glob(".work-*")) + list(root.glob(".staging-*")):
        if keep is not None and d.resolve() == keep.resolve():
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d.name)
    interrupted = []
    for path in sorted((root / "runs").glob("*.json")) if (root / "runs").is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("status") == "running" and rec.get("run") != run_id:
            rec.update(status="interrupted", error="the run stopped before it finished "
                       f"(found and cleaned up by run {run_id})",
                       finished_at=rec.get("progress", {}).get("updated_at"))
            registry.atomic_write_json(path, rec)
            interrupted.append(rec.get("run"))
    if removed or interrupted:
        log.warning("retrain %s: cleaned up after interrupted runs %s: removed %s", run_id,
                    interrupted, removed)
    return {"removed": removed, "interrupted_runs": interrupted}


# --- progress ----------------------------------------------------------------------------------


class Reporter:
    """Progress of a run: into its record on disk (runs/<run>.json, status "running"), the RQ
    job's meta when in a worker, and a callback (the CLI prints it). Written at most every
    `every` seconds, and at every change of phase."""

    def __init__(self, record: dict, path: Path, callback: ProgressFn | None = None,
                 every: float = 2.0):
        self.record, self.path, self.callback, self.every = record, path, callback, every
        self._last = 0.0
        self._phase = None
        try:
            from rq import get_current_job

            self.job = get_current_job()
        except Exception:  # rq missing or no job: progress goes to disk and the callback only
            self.job = None

    def __call__(self, phase: str, **info) -> None:
        now = time.time()
        changed = phase != self._phase
        self._phase = phase
        progress = {"phase": phase, **info, "updated_at": now}
        self.record["progress"] = progress
        if self.callback is not None:
            self.callback(dict(progress))
        if not changed and now - self._last < self.every:
            return
        self._last = now
        registry.atomic_write_json(self.path, self.record)
        if self.job is not None:
            try:
                self.job.meta.update({"retrain_run": self.record["run"], "progress": progress})
                self.job.save_meta()
            except Exception as exc:  # Redis hiccup: the record on disk still has it
                log.warning("retrain: could not save progress to the job: %s", exc)


def describe_progress(p: dict) -> str:
    """One line for a progress dict (the CLI and `clicksmith status`)."""
    from review.jobs import format_eta

    phase = p.get("phase")
    if phase == "finetune":
        done, total = p.get("iteration", 0), p.get("iterations", 0)
        pct = 100.0 * done / total if total else 0.0
        return (f"fine-tuning: iteration {done}/{total} ({pct:.0f}%), "
                f"ETA {format_eta(p.get('eta_s'))}")
    if phase == "evaluate":
        return (f"evaluating the {p.get('model')} model on {p.get('set')}: object "
                f"{p.get('object', 0)}/{p.get('objects', '?')} (set {p.get('set_index', 1)} of "
                f"{p.get('sets', 1)}, both models)")
    return str(p.get("message") or phase)


# --- the job -----------------------------------------------------------------------------------


def retrain_job(project_id: int | None = None, iterations: int | None = None,
                finetune: FinetuneFn | None = None, evaluate: EvaluateFn | None = None,
                tolerance: float | None = None, progress: ProgressFn | None = None) -> dict:
    """RQ job (also START_TRAINING): fine-tune, evaluate, promote only if better.

    `project_id`: corrections of that project (None: of every project). `tolerance`: NoC@90
    a candidate may lose on the general and standard sets (None: RETRAIN_GENERAL_TOLERANCE).
    `progress(dict)` is called as the run advances. Returns the run record (also written to
    <registry>/runs/<run>.json); status "promoted", "rejected" or "not_enough_evidence".
    Raises on failure or interruption, after recording it and removing its work folder."""
    settings = load_settings()
    finetune = finetune or _finetune
    evaluate = evaluate or _evaluate
    iterations = settings.retrain_iterations if iterations is None else int(iterations)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if not 0.0 < settings.retrain_interpolate <= 1.0:
        raise ValueError("RETRAIN_INTERPOLATE must be in (0, 1] (the fine-tuned weights' "
                         f"share of a candidate), got {settings.retrain_interpolate}")
    tolerance = settings.retrain_general_tolerance if tolerance is None else float(tolerance)
    root = registry.registry_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    record: dict = {"run": run_id, "project": project_id, "started_at": time.time(),
                    "iterations": iterations, "serving_before": registry.current_version(settings),
                    "status": "running", "host": socket.gethostname(), "pid": os.getpid()}
    lock = RetrainLock(root, run_id, settings.retrain_lock_stale_seconds)
    lock.acquire()
    run_path = root / "runs" / f"{run_id}.json"
    work = None
    try:
        if lock.taken_over:
            record["took_over_lock_from"] = lock.taken_over
            log.warning("retrain %s: took over a stale lock (%s)", run_id,
                        lock.describe(lock.taken_over))
        work = Path(tempfile.mkdtemp(dir=root, prefix=f".work-{run_id}-"))
        record["cleaned_up"] = clean_leftovers(root, work, run_id)
        report = Reporter(record, run_path, progress)
        report("start", message="starting")
        record.update(_run(settings, project_id, iterations, finetune, evaluate, tolerance,
                           work, report))
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt | SystemExit) or \
            type(exc).__name__ in {"JobTimeoutException", "StopRequested"}
        record.update(status="interrupted" if interrupted else "failed",
                      error=f"{type(exc).__name__}: {exc}" if str(exc)
                      else type(exc).__name__)
        raise
    finally:
        record["finished_at"] = time.time()
        record.pop("progress", None)
        try:
            registry.atomic_write_json(run_path, record)
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            lock.release()
    return record


def _run(settings: Settings, project_id: int | None, iterations: int, finetune: FinetuneFn,
         evaluate: EvaluateFn, tolerance: float, work: Path, report: Reporter) -> dict:
    """Split the corrections, fine-tune a candidate, judge it (`_judge`), promote it or not."""
    if project_id is not None:
        folders = [project_dir(settings, project_id)]
    else:
        base = corrections_root(settings)
        folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    train_dir, holdout_dir, counts = split_corrections(folders, work / "data")
    need = settings.retrain_min_holdout
    options = {"lr": settings.retrain_lr, "crop": settings.retrain_crop,
               "layers": settings.retrain_layers, "replay": settings.retrain_replay,
               "freeze_bn": settings.retrain_freeze_bn,
               "interpolate": settings.retrain_interpolate, "min_holdout": need,
               "min_gain_se": settings.retrain_min_gain_se,
               "project_scale": settings.retrain_project_scale,
               "general_tolerance": tolerance}
    out: dict = {"counts": counts, "options": options}
    if counts["holdout"] < need or not counts["train"]:
        total = counts["train"] + counts["holdout"]
        message = (f"not enough evidence: {counts['holdout']} held-out correction(s) of "
                   f"{total} (need {need}: RETRAIN_MIN_HOLDOUT; {HOLDOUT_FRACTION:.0%} of "
                   f"the tasks are held out, so about {int(need / HOLDOUT_FRACTION)} "
                   f"corrections in all); {MIN_HOLDOUT_WHY}; not fine-tuned, serving model "
                   "unchanged")
        log.warning("retrain: %s", message)
        return {**out, "status": "not_enough_evidence", "message": message}
    base_weights = _base_weights(settings)
    base_data = dataset_list(settings.retrain_base_data)
    replay = replay_folders(base_data, work) if settings.retrain_replay > 0 else []
    out.update(base_weights=str(base_weights), base_data=[str(p) for p in base_data])
    if settings.retrain_replay > 0 and not replay:
        out["replay_note"] = ("no replay: RETRAIN_BASE_DATA found no base training folders "
                              "(forgetting is then checked, not prevented)")
    general, general_note = general_set(settings.retrain_general_data,
                                        settings.retrain_general_objects, work)
    out["general_check"] = general_note
    eval_sets: dict[str, Path] = {"holdout": holdout_dir}
    if general is not None:
        eval_sets["general"] = general
    eval_sets.update({p.name: p for p in dataset_list(settings.retrain_eval_data)})

    began = time.monotonic()
    candidate = _finetune_candidate(settings, finetune, base_weights, train_dir, replay,
                                    work / "candidate.pt", iterations, report)
    out["finetune_seconds"] = round(time.monotonic() - began, 1)
    began = time.monotonic()
    metrics = _judge(settings, evaluate, project_id, candidate, train_dir, eval_sets, tolerance,
                     report, out)
    out["evaluate_seconds"] = round(time.monotonic() - began, 1)
    version = version_of(candidate)
    out.update(metrics=metrics, candidate_version=version, tolerance=tolerance)
    status, verdicts, why = decide(metrics, need, tolerance, settings.retrain_min_gain_se)
    out.update(not_worse=verdicts, decision=why)
    if status != "promote":
        worse = sorted(n for n, ok in verdicts.items() if not ok)
        log.warning("retrain: candidate %s not promoted (%s); serving model unchanged", version,
                    why)
        return {**out, "status": "not_enough_evidence" if status == "no_evidence"
                else "rejected", "worse_on": worse}
    if registry.version_dir(settings, version).exists():
        raise RetrainError(f"candidate {version} is already in the registry (same weights)")
    registry.store_version(settings, version, candidate, {
        **{k: out[k] for k in ("counts", "metrics", "not_worse", "base_weights")},
        "promoted_over": registry.current_version(settings), "created_at": time.time()},
        export_onnx=True)
    registry.promote(settings, version)
    return {**out, "status": "promoted", "serving_after": version}


def _finetune_candidate(settings: Settings, finetune: FinetuneFn, base_weights: Path,
                        train_dir: Path, replay: list[Path], out_path: Path, iterations: int,
                        report: Reporter) -> Path:
    """Fine-tune the base weights on the training corrections and the replayed base folders,
    reporting each iteration; the candidate's weights file."""

    def on_iteration(done: int, total: int, elapsed: float) -> None:
        report("finetune", iteration=done, iterations=total, elapsed_s=round(elapsed, 1),
               eta_s=round((total - done) * elapsed / done, 1) if done else None)

    report("finetune", iteration=0, iterations=iterations, eta_s=None)
    ft_options = {"lr": settings.retrain_lr, "crop": settings.retrain_crop,
                  "layers": settings.retrain_layers, "threads": settings.torch_threads,
                  "freeze_bn": settings.retrain_freeze_bn,
                  "interpolate": settings.retrain_interpolate,
                  "source_weights": source_weights(train_dir, replay, settings.retrain_replay),
                  # every correction trains, however small: a third of the nuclei corrections
                  # were under the base data's 0.2%-of-the-image floor and were skipped
                  "min_object_fraction": {train_dir.name: 0.0},
                  "on_iteration": on_iteration}
    if finetune is not _finetune and not _accepts(finetune, "on_iteration"):
        ft_options = {}
    candidate = Path(finetune(base_weights, [train_dir, *replay], out_path, iterations,
                              **ft_options))
    if not candidate.is_file():
        raise RetrainError(f"fine-tuning reported {candidate} but wrote no file")
    return candidate


def _judge(settings: Settings, evaluate: EvaluateFn, project_id: int | None, candidate: Path,
           train_dir: Path, eval_sets: dict[str, Path], tolerance: float, report: Reporter,
           out: dict) -> dict:
    """The candidate's and the serving model's results per evaluation set ({set: {role:
    summary}}). A project's frames are decided first (decide_scale, recorded in the registry
    and in `out`), so that the held-out comparison is made in the frames the project gets;
    the other sets stand for other projects and keep the general frames. Sets after the
    held-out one are skipped when it already refuses the candidate."""
    need = settings.retrain_min_holdout
    serving = registry.serving_weights(settings)
    backend = judging_backend(settings, serving, candidate) if _accepts(
        evaluate, "backend") else None
    if backend is not None:
        out["judged_on"] = backend
    if evaluate is _evaluate:  # results of versions that left the registry are never reused
        from review.eval_cache import prune

        prune(eval_cache_root(settings), {v["version"] for v in registry.list_versions(settings)}
              | {version_of(serving), version_of(candidate)})
    with_progress = _accepts(evaluate, "on_object")

    def run(name: str, role: str, weights: Path | None, k: int,
            scale: ObjectScale | None = None) -> dict:
        folder = eval_sets[name]
        n = len(list((folder / "masks").glob("*.png")))
        seen = [0]

        def on_object(_entry: dict) -> None:
            seen[0] += 1
            report("evaluate", set=name, model=role, object=seen[0], objects=n, set_index=k,
                   sets=len(eval_sets))

        report("evaluate", set=name, model=role, object=0, objects=n, set_index=k,
               sets=len(eval_sets))
        kwargs: dict = {"on_object": on_object} if with_progress else {}
        if backend is not None:
            kwargs["backend"] = backend
        if scale is not None:
            kwargs["scale"] = scale
        return evaluate(weights, folder, **kwargs)

    frames, serving_holdout = None, None
    if project_id is not None and settings.retrain_project_scale and _accepts(evaluate, "scale"):
        decision, serving_by_frames = decide_scale(
            measure_scale(_read_masks(train_dir)), need, settings.retrain_min_gain_se,
            lambda role, scale: run("holdout", role, serving, 1, scale))
        registry.store_project_scale(settings, project_id, {
            **decision, "run": report.record.get("run"), "decided_at": time.time()})
        out["project_scale"] = decision
        if decision["adopted"]:
            frames = ObjectScale.from_dict(decision["scale"])
        serving_holdout = serving_by_frames.get("adopted" if frames else "general")
    metrics: dict = {}
    for k, name in enumerate(eval_sets, 1):
        scale = frames if name == "holdout" else None  # other sets stand for other projects
        metrics[name] = {"candidate": run(name, "candidate", candidate, k, scale)}
        if name == "holdout" and serving_holdout is not None:
            metrics[name]["serving"] = serving_holdout  # measured just above
        else:
            metrics[name]["serving"] = run(name, "serving", serving, k, scale)
        if name == "holdout" and decide(metrics, need, tolerance,
                                        settings.retrain_min_gain_se)[0] != "promote":
            # no other set can make a refused candidate promotable: spare their evaluation
            # (most of a retrain's time; the general check alone is 2 x 150 objects)
            rest = [n for n in eval_sets if n != "holdout"]
            if rest:
                out["not_evaluated"] = (f"{', '.join(rest)}: not evaluated, the held-out "
                                        "corrections already refuse the candidate")
            break
    return metrics


def _read_masks(folder: Path):
    """The masks of a dataset folder, one at a time (a project's corrections can be many)."""
    import cv2

    for path in sorted((folder / "masks").glob("*.png")):
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise RetrainError(f"unreadable correction mask {path}")
        yield mask


def decide_scale(scale: ObjectScale | None, min_holdout: int, min_gain_se: float,
                 evaluate_serving: Callable[[str, ObjectScale | None], dict],
                 ) -> tuple[dict, dict]:
    """Whether a project's clicks get the frames of its object scale: only when the serving
    model needs fewer clicks with them on the held-out corrections, by the rule that promotes
    a candidate (`decide`, on that set alone). Returns the decision record and the serving
    model's held-out results by frames ("general", "adopted" when adopted), for reuse."""
    if scale is None:
        return {"adopted": False, "scale": None,
                "decision": "no object scale: no correction has an object pixel"}, {}
    general = evaluate_serving("serving (general frames)", None)
    scaled = evaluate_serving(f"serving (frames for {scale.side:g} px objects)", scale)
    status, _verdicts, why = decide({"holdout": {"candidate": scaled, "serving": general}},
                                    min_holdout, 0.0, min_gain_se)
    adopted = status == "promote"
    decision = {
        "adopted": adopted, "scale": scale.to_dict(),
        "holdout_noc90": {"general": general.get("noc90"), "scaled": scaled.get("noc90")},
        "decision": f"frames for {scale.side:g} px objects ({scale.first_view} px first view, "
                    f"{scale.zoom_min} px zoom-in at {scale.zoom_expand:g}x) "
                    f"{'adopted' if adopted else 'not adopted'}: "
                    + why.replace("vs serving", "vs general frames")}
    return decision, {"general": general, **({"adopted": scaled} if adopted else {})}


def paired_gain(candidate: list, serving: list) -> tuple[float, float] | None:
    """(mean serving-minus-candidate clicks, its standard error) over the same objects; None
    when per-object clicks are missing or too few to estimate a spread."""
    if not candidate or not serving or len(candidate) != len(serving) or len(candidate) < 2:
        return None
    diffs = [float(s) - float(c) for c, s in zip(candidate, serving, strict=True)]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, (var / len(diffs)) ** 0.5


def decide(metrics: dict, min_holdout: int, tolerance: float,
           min_gain_se: float = 0.0) -> tuple[str, dict, str]:
    """The gate: ("promote" | "reject" | "no_evidence", per-set verdicts, the reason).

    The project's held-out corrections must show the candidate better (lower NoC@90) on at
    least `min_holdout` objects, by more than `min_gain_se` standard errors of the per-object
    difference when per-object clicks are known (RETRAIN_MIN_GAIN_SE: on the project benchmark
    a candidate passed on a gain of 0.07 clicks whose standard error was 0.5, i.e. on noise);
    every other set (the general set, RETRAIN_EVAL_DATA) must not show it worse by more than
    `tolerance` clicks."""
    verdicts: dict[str, bool] = {}
    reasons = []
    hold = metrics["holdout"]
    n = int(hold["candidate"].get("objects") or 0)
    c, s = float(hold["candidate"]["noc90"]), float(hold["serving"]["noc90"])
    gain = paired_gain(hold["candidate"].get("clicks90") or [],
                       hold["serving"].get("clicks90") or [])
    if gain is None:
        verdicts["holdout"] = c < s
        detail = "better" if c < s else "not better"
    else:
        mean, se = gain
        verdicts["holdout"] = c < s and mean > min_gain_se * se
        detail = (f"{'better' if verdicts['holdout'] else 'not better'}: gain {mean:.2f} "
                  f"+- {se:.2f} clicks, needs > {min_gain_se:g} standard error(s)")
    reasons.append(f"holdout ({n} objects): NoC@90 {c:.2f} vs serving {s:.2f} ({detail})")
    for name, m in metrics.items():
        if name == "holdout":
            continue
        c2, s2 = float(m["candidate"]["noc90"]), float(m["serving"]["noc90"])
        verdicts[name] = c2 <= s2 + tolerance
        reasons.append(f"{name} ({m['candidate'].get('objects', '?')} objects): NoC@90 "
                       f"{c2:.2f} vs serving {s2:.2f} "
                       f"({'within' if verdicts[name] else 'worse than'} +{tolerance:g})")
    why = "; ".join(reasons)
    if n < min_holdout:
        return "no_evidence", verdicts, f"not enough evidence ({n} < {min_holdout}): {why}"
    return ("promote" if all(verdicts.values()) else "reject"), verdicts, why


def summary_line(record: dict) -> str:
    status = record.get("status", "?")
    line = f"retrain {record['run']}: {status}"
    if "candidate_version" in record:
        line += f" (candidate {record['candidate_version']})"
    if record.get("decision"):
        line += f"; {record['decision']}"
    if record.get("not_evaluated"):
        line += f"; {record['not_evaluated']}"
    if record.get("project_scale"):
        line += f"; {record['project_scale']['decision']}"
    elif record.get("message"):
        line += f"; {record['message']}"
    if record.get("general_check") and "skipped" in record["general_check"]:
        line += f"; {record['general_check']}"
    if record.get("error"):
        line += f"; {record['error']}"
    return line


def record_json(record: dict) -> str:
    return json.dumps(record, indent=2, sort_keys=True, default=str)
