"""Retraining through a real RQ worker: promoted when better, rejected or failed otherwise; the
lock, the clean-up after an interrupted run, the progress and "not enough evidence".

Fine-tuning and NoC evaluation are injected (module-level functions, so the worker can import
them): the registry, the split, the promotion rule and the hot reload run for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from clicksmith import registry
from clicksmith.models import process_model
from clicksmith.settings import load_settings
from review.retrain import RetrainError, retrain_job
from tests.review.conftest import REPO, wait_until
from tests.review.lsfake import blob_image

# NoC@90 the injected evaluator reports, by role; the test module sets them per scenario
# through files, since the worker is another process.


def _scores_file():
    return registry.registry_root(load_settings()) / "fake_scores.json"


@pytest.fixture
def gate_env(env, monkeypatch):
    """Settings for these tests: a minimum of 2 held-out objects (12 corrections hold out 2-3),
    no replay and no general check (each test that wants one names its folder)."""
    values = {"RETRAIN_MIN_HOLDOUT": "2", "RETRAIN_BASE_DATA": "", "RETRAIN_GENERAL_DATA": ""}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    env.update(values)
    return env


def fake_finetune(base, dataset_dirs, out_path, iterations):
    """A 'fine-tuned' model: the base weights with a new nonce (a valid, different file)."""
    import torch

    payload = torch.load(base, map_location="cpu", weights_only=False)
    payload["meta"] = {**payload.get("meta", {}), "nonce": uuid.uuid4().hex,
                       "trained_on": [str(d) for d in dataset_dirs], "iterations": iterations}
    torch.save(payload, out_path)
    return out_path


def fake_evaluate(weights, dataset):
    scores = json.loads(_scores_file().read_text())
    serving = registry.current_weights_path(load_settings())
    role = "serving" if weights == serving else "candidate"
    masks = list((dataset / "masks").glob("*.png"))
    assert masks
    return {"dataset": dataset.name, "noc90": scores[role], "objects": len(masks)}


def broken_finetune(base, dataset_dirs, out_path, iterations):
    raise RuntimeError("out of memory (simulated)")


def _seed_registry(settings, tmp_path):
    """A serving version v0 made of a freshly initialised model."""
    from cdnet.model.io import build_model, save_model

    path = tmp_path / "v0.pt"
    save_model(build_model(), path, meta={"seed": "v0"})
    version = "cdnet-mnv2-v0"
    registry.store_version(settings, version, path, {"seeded": True})
    registry.promote(settings, version)
    return version


def _corrections(settings, project=4, n_tasks=12):
    folder = __import__("review.corrections", fromlist=["x"]).project_dir(settings, project)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    for t in range(1, n_tasks + 1):
        img, mask = blob_image(64, seed=t)
        cv2.imwrite(str(folder / "images" / f"t{t}.png"), img[:, :, ::-1])
        cv2.imwrite(str(folder / "masks" / f"t{t}_{t}00.png"), mask.astype(np.uint8) * 255)
        rows.append({"key": f"t{t}_{t}00", "task": t, "annotation": t, "label": "Object",
                     "image": f"images/t{t}.png", "mask": f"masks/t{t}_{t}00.png",
                     "model_version": "cdnet-mnv2-v0", "iou": 0.8, "updated_at": ""})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run_in_worker(env, workers, **kwargs):
    from redis import Redis
    from rq import Queue

    q = Queue(env["QUEUE_NAME"], connection=Redis.from_url(env["REDIS_URL"]))
    job = q.enqueue(retrain_job, 4, 3, **kwargs)
    workers.wait(workers.start())
    return job


def test_retrain_promoted_then_rejected_then_failed(gate_env, workers, tmp_path):
    settings = load_settings()
    v0 = _seed_registry(settings, tmp_path)
    _corrections(settings)
    assert process_model(settings).model_version.startswith("cdnet-mnv2-")
    before = process_model(settings).model_version

    # promoted: candidate better on the held-out corrections
    _scores_file().write_text(json.dumps({"candidate": 2.0, "serving": 3.0}))
    job = _run_in_worker(gate_env, workers, finetune=fake_finetune, evaluate=fake_evaluate)
    assert job.get_status(refresh=True) == "finished", job.exc_info
    record = job.return_value()
    assert record["status"] == "promoted"
    v1 = record["candidate_version"]
    assert registry.current_version(settings) == v1 != v0
    metrics = json.loads((registry.version_dir(settings, v1) / "metrics.json").read_text())
    assert metrics["metrics"]["holdout"]["candidate"]["noc90"] == 2.0
    assert record["counts"]["train"] + record["counts"]["holdout"] == 12
    assert record["counts"]["holdout"] >= 1 and record["counts"]["train"] >= 1
    # the model service of this process picks the promotion up without a restart
    now = process_model(settings).model_version
    assert now == v1 != before

    # rejected: candidate worse -> registry and pointer untouched
    _scores_file().write_text(json.dumps({"candidate": 3.5, "serving": 3.0}))
    versions_before = {v["version"] for v in registry.list_versions(settings)}
    job = _run_in_worker(gate_env, workers, finetune=fake_finetune, evaluate=fake_evaluate)
    assert job.get_status(refresh=True) == "finished", job.exc_info
    record = job.return_value()
    assert record["status"] == "rejected" and record["worse_on"] == ["holdout"]
    assert registry.current_version(settings) == v1
    assert {v["version"] for v in registry.list_versions(settings)} == versions_before

    # failed: the job fails, the run is recorded, the pointer stays
    job = _run_in_worker(gate_env, workers, finetune=broken_finetune, evaluate=fake_evaluate)
    assert job.get_status(refresh=True) == "failed"
    assert registry.current_version(settings) == v1
    runs = sorted((registry.registry_root(settings) / "runs").glob("*.json"))
    statuses = [json.loads(p.read_text())["status"] for p in runs]
    assert sorted(statuses) == ["failed", "promoted", "rejected"]
    assert not list(registry.registry_root(settings).glob(".work-*"))  # temp dirs cleaned


def test_retrain_without_corrections_is_not_enough_evidence(gate_env, tmp_path):
    settings = load_settings()
    _seed_registry(settings, tmp_path)
    record = retrain_job(4, 3, finetune=broken_finetune, evaluate=fake_evaluate)
    assert record["status"] == "not_enough_evidence"
    assert registry.current_version(settings) == "cdnet-mnv2-v0"


def test_registry_rejects_bad_names_and_missing_weights(env):
    settings = load_settings()
    with pytest.raises(ValueError):
        registry.promote(settings, "../escape")
    with pytest.raises(ValueError):
        registry.promote(settings, "never-stored")
    assert registry.current_weights_path(settings) is None


@pytest.mark.slow
def test_retrain_with_the_real_training_and_evaluation_code(gate_env, monkeypatch, tmp_path):
    """One fine-tuning iteration and real NoC evaluation: the adapters fit cdnet's API."""
    monkeypatch.setenv("RETRAIN_MIN_HOLDOUT", "1")
    monkeypatch.setenv("RETRAIN_CROP", "64")
    settings = load_settings()
    v0 = _seed_registry(settings, tmp_path)
    _corrections(settings, n_tasks=6)
    record = retrain_job(4, 1)
    assert record["status"] in {"promoted", "rejected"}
    holdout = record["metrics"]["holdout"]
    assert holdout["candidate"]["objects"] == holdout["serving"]["objects"] >= 1
    assert 1.0 <= holdout["serving"]["noc90"] <= 20.0
    # the project's frames were judged with the real evaluation, in both frames
    frames = record["project_scale"]
    assert frames["scale"]["objects"] == record["counts"]["train"]
    assert all(1.0 <= v <= 20.0 for v in frames["holdout_noc90"].values())
    assert (registry.project_scale(settings, 4) is not None) == frames["adopted"]
    expected = record["candidate_version"] if record["status"] == "promoted" else v0
    assert registry.current_version(settings) == expected


def test_holdout_split_is_stable_and_two_sided():
    from review.retrain import holdout_tasks

    tasks = [("4", t) for t in range(1, 7)]
    held = holdout_tasks(tasks)
    assert held == holdout_tasks(list(reversed(tasks)))  # order does not matter
    assert 1 <= len(held) < len(tasks)
    big = [("4", t) for t in range(1, 501)]
    assert 0.1 < len(holdout_tasks(big)) / 500 < 0.3
    assert holdout_tasks([("4", 1)]) in (set(), {("4", 1)})


# --- the gate's evidence, the general check, the lock, interruptions, progress ---------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_SCENES = ("animal", "bowl", "crescent", "figure", "sheep")  # tracked in the clone


def fixture_folder(dst: Path, scenes=FIXTURE_SCENES) -> Path:
    """A dataset folder (images/, masks/) made of the repository's drawn fixture scenes."""
    (dst / "images").mkdir(parents=True)
    (dst / "masks").mkdir()
    for name in scenes:
        shutil.copy(FIXTURES / "images" / f"{name}.png", dst / "images" / f"{name}.png")
        shutil.copy(FIXTURES / "masks" / f"{name}.png", dst / "masks" / f"{name}.png")
    return dst


def per_set_evaluate(weights, dataset):
    """Scores by set name and role from the scores file: {"holdout": {...}, "general": {...}}."""
    scores = json.loads(_scores_file().read_text())
    serving = registry.current_weights_path(load_settings())
    role = "serving" if weights == serving else "candidate"
    n = len(list((dataset / "masks").glob("*.png")))
    return {"dataset": dataset.name, "noc90": scores[dataset.name][role], "objects": n}


def test_not_enough_evidence_below_the_default_minimum(env, monkeypatch, tmp_path):
    """12 corrections hold out 2-3 objects, under RETRAIN_MIN_HOLDOUT's default (20): the run
    says so, fine-tunes nothing and leaves the registry as it was."""
    monkeypatch.setenv("RETRAIN_GENERAL_DATA", "")
    settings = load_settings()
    assert settings.retrain_min_holdout == 20
    _seed_registry(settings, tmp_path)
    _corrections(settings)
    _scores_file().write_text(json.dumps({"candidate": 1.0, "serving": 3.0}))
    record = retrain_job(4, 3, finetune=broken_finetune, evaluate=fake_evaluate)
    assert record["status"] == "not_enough_evidence"
    assert "need 20" in record["message"] and "100 corrections" in record["message"]
    assert registry.current_version(settings) == "cdnet-mnv2-v0"
    assert len(registry.list_versions(settings)) == 1
    root = registry.registry_root(settings)
    stored = json.loads((root / "runs" / f"{record['run']}.json").read_text())
    assert stored["status"] == "not_enough_evidence" and "progress" not in stored
    assert not list(root.glob(".work-*")) and not (root / ".retrain.lock").exists()


def test_the_gate_refuses_a_candidate_that_forgets(gate_env, monkeypatch, tmp_path):
    from review import retrain

    settings = load_settings()
    v0 = _seed_registry(settings, tmp_path)
    _corrections(settings)
    general = fixture_folder(tmp_path / "general")
    monkeypatch.setenv("RETRAIN_GENERAL_DATA", str(general))
    # better on the project's held-out corrections, 0.5 clicks worse on the general set
    _scores_file().write_text(json.dumps({"holdout": {"candidate": 2.0, "serving": 3.0},
                                          "general": {"candidate": 3.5, "serving": 3.0}}))
    record = retrain_job(4, 3, finetune=fake_finetune, evaluate=per_set_evaluate)
    assert record["status"] == "rejected" and record["worse_on"] == ["general"]
    assert record["not_worse"] == {"holdout": True, "general": False}
    assert registry.current_version(settings) == v0
    # a tie on the held-out corrections is not a reason to promote
    _scores_file().write_text(json.dumps({"holdout": {"candidate": 3.0, "serving": 3.0},
                                          "general": {"candidate": 3.0, "serving": 3.0}}))
    record = retrain_job(4, 3, finetune=fake_finetune, evaluate=per_set_evaluate)
    assert record["status"] == "rejected" and record["worse_on"] == ["holdout"]
    # ... and nothing else can make it promotable: the general set is not evaluated
    assert set(record["metrics"]) == {"holdout"}
    assert "general: not evaluated" in retrain.summary_line(record)
    # within the general tolerance (0.2) and better on the project: promoted
    _scores_file().write_text(json.dumps({"holdout": {"candidate": 2.0, "serving": 3.0},
                                          "general": {"candidate": 3.1, "serving": 3.0}}))
    record = retrain_job(4, 3, finetune=fake_finetune, evaluate=per_set_evaluate)
    assert record["status"] == "promoted"
    assert registry.current_version(settings) == record["candidate_version"] != v0
    # a fresh clone (no ../shared): the "auto" general check is skipped, and says so
    monkeypatch.setenv("RETRAIN_GENERAL_DATA", "auto")
    monkeypatch.setattr(retrain, "_shared_datasets", lambda: tmp_path / "no-shared")
    _scores_file().write_text(json.dumps({"holdout": {"candidate": 1.0, "serving": 2.0}}))
    record = retrain_job(4, 3, finetune=fake_finetune, evaluate=per_set_evaluate)
    assert record["status"] == "promoted" and set(record["metrics"]) == {"holdout"}
    assert "general check skipped" in record["general_check"]
    assert "general check skipped" in retrain.summary_line(record)


def test_a_project_gets_the_frames_of_its_object_scale_only_when_they_save_clicks(
        gate_env, monkeypatch, tmp_path):
    """The retrain measures the project's object scale on its training corrections, adopts its
    frames when the serving model needs fewer held-out clicks with them, then compares the
    candidate on the held-out corrections in the frames the project gets (the general set in
    the general frames); the backend reads the adopted scale from the registry."""
    from cdnet.inference.scale import measure_scale
    from review import retrain
    from review.corrections import project_dir

    settings = load_settings()
    _seed_registry(settings, tmp_path)
    _corrections(settings)
    monkeypatch.setenv("RETRAIN_GENERAL_DATA", str(fixture_folder(tmp_path / "general")))
    calls = []

    def evaluate(weights, dataset, scale=None):
        scores = json.loads(_scores_file().read_text())
        serving = registry.current_weights_path(load_settings())
        role = ("serving" if weights == serving else "candidate") + ("@scale" if scale else "")
        calls.append((dataset.name, role, scale))
        n = len(list((dataset / "masks").glob("*.png")))
        clicks = [scores[role] + (i % 2) for i in range(n)]  # a spread, as real objects have
        return {"dataset": dataset.name, "noc90": sum(clicks) / n, "objects": n,
                "clicks90": clicks}

    # the frames save two clicks on the held-out corrections: adopted; the candidate saves
    # one more in them
    _scores_file().write_text(json.dumps({"serving": 5, "serving@scale": 3, "candidate": 5,
                                          "candidate@scale": 2}))
    record = retrain_job(4, 3, finetune=fake_finetune, evaluate=evaluate)
    decision = record["project_scale"]
    assert decision["adopted"] is True and "adopted" in decision["decision"]
    masks = [cv2.imread(str(p), 0) for p in
             (project_dir(settings, 4) / "masks").glob("*.png")]
    train_objects = record["counts"]["train"]
    assert decision["scale"]["objects"] == train_objects < len(masks)
    scale = registry.project_scale(settings, 4)
    assert scale is not None and scale.objects == train_objects
    assert scale.side == pytest.approx(measure_scale(masks).side, abs=3)  # train part only
    assert record["metrics"]["holdout"]["serving"]["noc90"] == pytest.approx(
        decision["holdout_noc90"]["scaled"])  # measured once, reused
    assert [c for c in calls if c[0] != "holdout"] == [("general", "candidate", None),
                                                       ("general", "serving", None)]
    assert ("holdout", "candidate@scale", scale) in calls
    assert record["status"] == "promoted"
    assert registry.project_scale(settings, 5) is None  # another project: general frames
    # now the frames cost clicks: not adopted, and the project is back on the general frames
    calls.clear()
    _scores_file().write_text(json.dumps({"serving": 3, "serving@scale": 4, "candidate": 2,
                                          "candidate@scale": 2}))
    record = retrain_job(4, 3, finetune=fake_finetune, evaluate=evaluate)
    assert record["project_scale"]["adopted"] is False
    assert registry.project_scale(settings, 4) is None
    assert ("holdout", "candidate", None) in calls
    assert all(role != "candidate@scale" for _set, role, _s in calls)
    assert record["status"] == "promoted"  # 2 vs 3 in the general frames
    assert "not adopted" in retrain.summary_line(record)
    # a damaged record is an error, not silently other frames
    for damaged in ("{not json", "[1, 2]", '{"adopted": true, "scale": {"side": -3}}'):
        registry.project_scale_path(settings, 4).write_text(damaged)
        with pytest.raises(ValueError, match="project 4|object scale"):
            registry.project_scale(settings, 4)


def sleepy_finetune(base, dataset_dirs, out_path, iterations):
    """Announces it is fine-tuning (a file beside the registry), then takes its time."""
    marker = Path(os.environ["MODEL_REGISTRY"]).parent / "finetuning"
    marker.write_text(str(os.getpid()))
    time.sleep(120)
    raise AssertionError("should have been stopped")


def interrupted_finetune(base, dataset_dirs, out_path, iterations):
    (out_path.parent / "partial.bin").write_bytes(b"x" * 100)
    raise KeyboardInterrupt


_CHILD = """
import sys
from review.retrain import retrain_job
from tests.review.test_retrain import sleepy_finetune, fake_evaluate
if sys.argv[1] == "term":
    from review.retrain_cli import _stop_on_sigterm
    _stop_on_sigterm()
retrain_job(4, 3, finetune=sleepy_finetune, evaluate=fake_evaluate)
"""


def _start_child(mode: str, tmp_path):
    marker = Path(os.environ["MODEL_REGISTRY"]).parent / "finetuning"
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, mode], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until(lambda: marker.exists() or proc.poll() is not None, 120, what="fine-tuning")
    assert proc.poll() is None, proc.communicate()[0]
    return proc


def test_interrupted_runs_clean_up_and_a_stale_lock_is_taken_over(gate_env, tmp_path):
    settings = load_settings()
    v0 = _seed_registry(settings, tmp_path)
    _corrections(settings)
    root = registry.registry_root(settings)
    lock = root / ".retrain.lock"

    # Ctrl-C inside this process: recorded as interrupted, nothing left behind
    with pytest.raises(KeyboardInterrupt):
        retrain_job(4, 3, finetune=interrupted_finetune, evaluate=fake_evaluate)
    records = [json.loads(p.read_text()) for p in (root / "runs").glob("*.json")]
    assert [r["status"] for r in records] == ["interrupted"]
    assert not list(root.glob(".work-*")) and not lock.exists()

    # SIGTERM to `clicksmith retrain` (its handler unwinds like Ctrl-C): cleaned up too
    proc = _start_child("term", tmp_path)
    assert lock.exists() and list(root.glob(".work-*"))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not list(root.glob(".work-*")) and not lock.exists()
    statuses = sorted(json.loads(p.read_text())["status"] for p in (root / "runs").glob("*.json"))
    assert statuses == ["interrupted", "interrupted"]

    # SIGKILL (a worker or machine dying): the lock file, the work folder and a "running"
    # record stay; the next run takes the lock over (its holder's pid is gone) and cleans up
    proc = _start_child("kill", tmp_path)
    holder = json.loads(lock.read_text())
    assert holder["pid"] == proc.pid and holder["host"] == socket.gethostname()
    proc.kill()
    proc.communicate(timeout=60)
    left = list(root.glob(".work-*"))
    assert lock.exists() and left
    running = [json.loads(p.read_text()) for p in (root / "runs").glob("*.json")]
    assert "running" in [r["status"] for r in running]
    _scores_file().write_text(json.dumps({"candidate": 2.0, "serving": 3.0}))
    record = retrain_job(4, 3, finetune=fake_finetune, evaluate=fake_evaluate)
    assert record["status"] == "promoted" and registry.current_version(settings) != v0
    assert record["took_over_lock_from"]["pid"] == proc.pid
    assert sorted(p.name for p in left) == sorted(record["cleaned_up"]["removed"])
    assert not list(root.glob(".work-*")) and not lock.exists()
    statuses = sorted(json.loads(p.read_text())["status"] for p in (root / "runs").glob("*.json"))
    assert statuses == ["interrupted", "interrupted", "interrupted", "promoted"]


def test_a_live_or_fresh_lock_is_respected_and_an_old_one_taken_over(gate_env, tmp_path):
    import fcntl

    settings = load_settings()
    v0 = _seed_registry(settings, tmp_path)
    _corrections(settings)
    root = registry.registry_root(settings)
    lock = root / ".retrain.lock"
    _scores_file().write_text(json.dumps({"candidate": 2.0, "serving": 3.0}))

    # held (flock) by a live run: refused, naming the holder
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(json.dumps({"run": "r-live", "pid": 999999, "host": "elsewhere",
                               "heartbeat": time.time()}))
        held.flush()
        with pytest.raises(RetrainError, match="another retrain is running.*r-live"):
            retrain_job(4, 3, finetune=fake_finetune, evaluate=fake_evaluate)
    # another host on a shared file system (flock does not reach it), heartbeat fresh: refused
    lock.write_text(json.dumps({"run": "r-remote", "pid": 1, "host": "elsewhere",
                                "heartbeat": time.time()}))
    with pytest.raises(RetrainError, match="r-remote.*taken over once"):
        retrain_job(4, 3, finetune=fake_finetune, evaluate=fake_evaluate)
    assert registry.current_version(settings) == v0
    # the same holder with a heartbeat older than RETRAIN_LOCK_STALE_SECONDS: taken over
    stale = time.time() - settings.retrain_lock_stale_seconds - 5
    lock.write_text(json.dumps({"run": "r-remote", "pid": 1, "host": "elsewhere",
                                "heartbeat": stale}))
    record = retrain_job(4, 3, finetune=fake_finetune, evaluate=fake_evaluate)
    assert record["status"] == "promoted" and record["took_over_lock_from"]["run"] == "r-remote"
    assert not lock.exists()


def test_progress_reaches_the_caller_the_record_and_status(gate_env, tmp_path):
    from review import status_cli

    settings = load_settings()
    _seed_registry(settings, tmp_path)
    _corrections(settings)
    _scores_file().write_text(json.dumps({"candidate": 2.0, "serving": 3.0}))
    seen: list[dict] = []
    shown: list[str] = []

    def finetune(base, dataset_dirs, out_path, iterations, on_iteration=None, **options):
        # every correction trains, however small (the base folders keep their floor)
        assert options["min_object_fraction"] == {dataset_dirs[0].name: 0.0}
        assert (dataset_dirs[0] / "masks").is_dir()
        for done in range(1, iterations + 1):
            on_iteration(done, iterations, 2.0 * done)
        # what `clicksmith status` shows now, from the record on disk (no Redis needed)
        shown.extend(status_cli.format_line(r) for r in status_cli.retrain_runs()
                     if r["status"] == "running")
        return fake_finetune(base, dataset_dirs, out_path, iterations)

    def evaluate(weights, dataset, on_object=None):
        for entry in range(2):
            on_object({"name": str(entry)})
        return fake_evaluate(weights, dataset)

    record = retrain_job(4, 3, finetune=finetune, evaluate=evaluate, progress=seen.append)
    assert record["status"] == "promoted"
    steps = [(p["iteration"], p["eta_s"]) for p in seen if p["phase"] == "finetune"]
    assert steps == [(0, None), (1, 4.0), (2, 2.0), (3, 0.0)]
    evals = [(p["set"], p["model"], p["object"]) for p in seen if p["phase"] == "evaluate"]
    assert ("holdout", "candidate", 2) in evals and ("holdout", "serving", 2) in evals
    assert len(shown) == 1 and "fine-tuning: iteration" in shown[0]
    done = status_cli.format_line(status_cli.retrain_runs(ident=record["run"])[0])
    assert "promoted" in done and "holdout" in done


def test_the_cli_prints_a_line_per_phase_and_the_last_iteration():
    import io

    from review.retrain_cli import ProgressPrinter

    out = io.StringIO()
    printer = ProgressPrinter(every=3600, stream=out)
    for done in range(6):
        printer({"phase": "finetune", "iteration": done, "iterations": 5,
                 "eta_s": None if not done else 10.0 * (5 - done)})
    for role in ("candidate", "serving"):
        for k in range(3):
            printer({"phase": "evaluate", "set": "holdout", "model": role, "object": k,
                     "objects": 2, "set_index": 1, "sets": 1})
    lines = out.getvalue().splitlines()
    assert lines == [
        "clicksmith retrain: fine-tuning: iteration 0/5 (0%), ETA ?",
        "clicksmith retrain: fine-tuning: iteration 5/5 (100%), ETA 0:00:00",
        "clicksmith retrain: evaluating the candidate model on holdout: object 0/2 "
        "(set 1 of 1, both models)",
        "clicksmith retrain: evaluating the serving model on holdout: object 0/2 "
        "(set 1 of 1, both models)"]


def test_fine_tuning_can_keep_batchnorm_statistics():
    """RETRAIN_FREEZE_BN: BatchNorm layers stay in eval mode through every model.train() the
    training loop calls (it switches to eval and back around each click simulation)."""
    import torch

    from cdnet.model.io import build_model
    from cdnet.train.loop import freeze_batchnorm

    model = freeze_batchnorm(build_model(pretrained=False))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    model.eval()
    model.train()
    assert model.training and not any(m.training for m in norms)
    before = [m.running_mean.clone() for m in norms]
    img = torch.rand(1, 3, 64, 64) * 255
    model(img, torch.zeros(1, 2, 64, 64), torch.zeros(1, 1, 64, 64))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms, strict=True))


def test_fine_tuning_can_interpolate_back_towards_the_base_weights(tmp_path):
    """RETRAIN_INTERPOLATE: the candidate is base + share * (fine-tuned - base); the same run
    (same seed) with share 1 gives the fine-tuned end point itself."""
    import torch

    from cdnet.model.io import build_model, save_model
    from cdnet.train.loop import finetune

    base = tmp_path / "base.pt"
    save_model(build_model(), base)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for t in range(3):
        img, mask = blob_image(64, seed=t)
        cv2.imwrite(str(data / "images" / f"t{t}.png"), img[:, :, ::-1])
        cv2.imwrite(str(data / "masks" / f"t{t}.png"), mask.astype(np.uint8) * 255)
    kw = {"iterations": 2, "crop": 64, "batch_size": 2, "threads": 1, "lr": 1e-3}
    full = finetune(base, [data], tmp_path / "full.pt", **kw)
    half = finetune(base, [data], tmp_path / "half.pt", interpolate=0.5, **kw)
    b, f, h = (torch.load(p, weights_only=False) for p in (base, full, half))
    assert h["meta"]["interpolate"] == 0.5
    key = next(k for k, v in b["state_dict"].items()
               if v.is_floating_point() and not torch.equal(v, f["state_dict"][k]))
    assert torch.allclose(h["state_dict"][key],
                          (b["state_dict"][key] + f["state_dict"][key]) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="interpolate"):
        finetune(base, [data], tmp_path / "bad.pt", interpolate=1.5, **kw)


def test_a_bad_interpolation_setting_fails_before_any_work(env, monkeypatch):
    monkeypatch.setenv("RETRAIN_INTERPOLATE", "0")
    with pytest.raises(ValueError, match="RETRAIN_INTERPOLATE must be in"):
        retrain_job(4, 1)
    assert not (registry.registry_root(load_settings()) / "runs").exists()


def test_the_gate_wants_a_held_out_gain_beyond_its_standard_error():
    """RETRAIN_MIN_GAIN_SE: a lower mean made of noise (gain 0.1, SE ~0.5) is not better; a
    steady gain is; without per-object clicks the plain comparison of means decides."""
    from review.retrain import decide

    def metrics(cand, serv):
        return {"holdout": {r: {"objects": len(v), "noc90": sum(v) / len(v), "clicks90": v}
                            for r, v in (("candidate", cand), ("serving", serv))},
                "general": {"candidate": {"noc90": 5.0}, "serving": {"noc90": 5.0}}}

    serving = [10, 4, 16, 7, 12, 3, 18, 9, 6, 15] * 2
    noisy = [s + d for s, d in zip(serving, [-5, 4, -3, 4, -5, 3, -4, 5, -3, 3] * 2,
                                   strict=True)]  # mean gain 0.1
    status, verdicts, why = decide(metrics(noisy, serving), 20, 0.2, 1.0)
    assert status == "reject" and verdicts == {"holdout": False, "general": True}
    assert "needs > 1 standard error" in why and "gain 0.10" in why
    assert decide(metrics(noisy, serving), 20, 0.2, 0.0)[0] == "promote"  # the old rule
    steady = [max(1, s - 1) for s in serving]
    status, _, why = decide(metrics(steady, serving), 20, 0.2, 1.0)
    assert status == "promote" and "gain 1.00 +- 0.00" in why
    plain = metrics(noisy, serving)
    for role in ("candidate", "serving"):
        del plain["holdout"][role]["clicks90"]
    assert decide(plain, 20, 0.2, 1.0)[0] == "promote"
