"""Retraining through a real RQ worker: promoted when not worse, rejected or failed otherwise.

Fine-tuning and NoC evaluation are injected (module-level functions, so the worker can import
them): the registry, the split, the promotion rule and the hot reload run for real."""

from __future__ import annotations

import json
import uuid

import cv2
import numpy as np
import pytest

from clicksmith import registry
from clicksmith.models import process_model
from clicksmith.settings import load_settings
from review.retrain import RetrainError, retrain_job
from tests.review.lsfake import blob_image

# NoC@90 the injected evaluator reports, by role; the test module sets them per scenario
# through files, since the worker is another process.


def _scores_file():
    return registry.registry_root(load_settings()) / "fake_scores.json"


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
    assert (dataset / "masks").is_dir() and any((dataset / "masks").iterdir())
    return {"dataset": dataset.name, "noc90": scores[role], "objects": 1}


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


def test_retrain_promoted_then_rejected_then_failed(env, workers, tmp_path):
    settings = load_settings()
    v0 = _seed_registry(settings, tmp_path)
    _corrections(settings)
    assert process_model(settings).model_version.startswith("cdnet-mnv2-")
    before = process_model(settings).model_version

    # promoted: candidate better on the held-out corrections
    _scores_file().write_text(json.dumps({"candidate": 2.0, "serving": 3.0}))
    job = _run_in_worker(env, workers, finetune=fake_finetune, evaluate=fake_evaluate)
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
    job = _run_in_worker(env, workers, finetune=fake_finetune, evaluate=fake_evaluate)
    record = job.return_value()
    assert record["status"] == "rejected" and record["worse_on"] == ["holdout"]
    assert registry.current_version(settings) == v1
    assert {v["version"] for v in registry.list_versions(settings)} == versions_before

    # failed: the job fails, the run is recorded, the pointer stays
    job = _run_in_worker(env, workers, finetune=broken_finetune, evaluate=fake_evaluate)
    assert job.get_status(refresh=True) == "failed"
    assert registry.current_version(settings) == v1
    runs = sorted((registry.registry_root(settings) / "runs").glob("*.json"))
    statuses = [json.loads(p.read_text())["status"] for p in runs]
    assert sorted(statuses) == ["failed", "promoted", "rejected"]
    assert not list(registry.registry_root(settings).glob(".work-*"))  # temp dirs cleaned


def test_retrain_needs_corrections(env, tmp_path):
    settings = load_settings()
    _seed_registry(settings, tmp_path)
    with pytest.raises(RetrainError, match="not enough corrections"):
        retrain_job(4, 3, finetune=fake_finetune, evaluate=fake_evaluate)
    assert registry.current_version(settings) == "cdnet-mnv2-v0"


def test_registry_rejects_bad_names_and_missing_weights(env):
    settings = load_settings()
    with pytest.raises(ValueError):
        registry.promote(settings, "../escape")
    with pytest.raises(ValueError):
        registry.promote(settings, "never-stored")
    assert registry.current_weights_path(settings) is None


@pytest.mark.slow
def test_retrain_with_the_real_training_and_evaluation_code(env, tmp_path):
    """One fine-tuning iteration and real NoC evaluation: the adapters fit cdnet's API."""
    settings = load_settings()
    v0 = _seed_registry(settings, tmp_path)
    _corrections(settings, n_tasks=6)
    record = retrain_job(4, 1)
    assert record["status"] in {"promoted", "rejected"}
    holdout = record["metrics"]["holdout"]
    assert holdout["candidate"]["objects"] == holdout["serving"]["objects"] >= 1
    assert 1.0 <= holdout["serving"]["noc90"] <= 20.0
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
