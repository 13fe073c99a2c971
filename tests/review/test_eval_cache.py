"""The retrain gate's evaluation reuses a model's per-object results (review.eval_cache) only
while the weights, the settings, the code and the object are unchanged; everything else is
run again. Real NoC evaluation of the bundled model on small blob images, no stand-ins."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import cdnet.eval.noc as noc_module
from cdnet.model.files import version_of
from clicksmith import registry
from clicksmith.settings import load_settings
from review import eval_cache
from review.retrain import _evaluate, eval_cache_root, retrain_job
from tests.review.lsfake import blob_image
from tests.review.test_retrain import _corrections, _seed_registry


@pytest.fixture
def runs(monkeypatch):
    """Counts the objects the NoC protocol really runs (not taken from the cache)."""
    calls = []
    real = noc_module.run_object

    def counting(predictor, sample, *args, **kwargs):
        calls.append(sample.name)
        return real(predictor, sample, *args, **kwargs)

    monkeypatch.setattr(noc_module, "run_object", counting)
    return calls


def _folder(root, n=4, size=64):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(n):
        img, mask = blob_image(size, seed=100 + k)
        cv2.imwrite(str(root / "images" / f"o{k}.png"), img[:, :, ::-1])
        cv2.imwrite(str(root / "masks" / f"o{k}.png"), mask.astype(np.uint8) * 255)
    return root


def test_a_second_evaluation_reuses_every_unchanged_object(env, runs, tmp_path):
    folder = _folder(tmp_path / "set")
    first = _evaluate(None, folder)
    assert first["reused"] == 0 and len(runs) == 4
    runs.clear()
    second = _evaluate(None, folder)
    assert second["reused"] == 4 and runs == []
    assert second["clicks90"] == first["clicks90"] and second["noc90"] == first["noc90"]
    # the file is per model version, under the registry
    files = list(eval_cache_root(load_settings()).glob("*.json"))
    assert [f.stem for f in files] == [registry.bundled_version()]


def test_an_edited_object_a_new_setting_or_other_code_is_evaluated_again(env, runs, tmp_path,
                                                                          monkeypatch):
    folder = _folder(tmp_path / "set")
    _evaluate(None, folder)
    # a correction edited in Label Studio: new mask bytes for the same object name
    mask = cv2.imread(str(folder / "masks" / "o2.png"), cv2.IMREAD_GRAYSCALE)
    mask[:, : mask.shape[1] // 2] = 0
    cv2.imwrite(str(folder / "masks" / "o2.png"), mask)
    runs.clear()
    out = _evaluate(None, folder)
    assert out["reused"] == 3 and runs == ["o2"]
    # a setting that changes what a click returns
    monkeypatch.setenv("FLIP_AVERAGE", "false" if load_settings().flip_average else "true")
    runs.clear()
    assert _evaluate(None, folder)["reused"] == 0 and len(runs) == 4
    # other cdnet code: nothing is reused
    monkeypatch.setattr(eval_cache, "code_digest", lambda: "other-code")
    runs.clear()
    assert _evaluate(None, folder)["reused"] == 0 and len(runs) == 4


def test_a_damaged_cache_file_costs_one_full_evaluation_not_the_run(env, runs, tmp_path):
    folder = _folder(tmp_path / "set", n=2)
    _evaluate(None, folder)
    path = eval_cache_root(load_settings()) / f"{registry.bundled_version()}.json"
    path.write_text('{"fingerprint": ')  # a torn write from elsewhere
    runs.clear()
    assert _evaluate(None, folder)["reused"] == 0 and len(runs) == 2
    stored = json.loads(path.read_text())["by_fingerprint"]  # rewritten whole
    assert [e.keys() for e in stored.values()] == [{"o0", "o1"}]


def test_each_projects_frames_keep_their_own_results(env, runs, tmp_path):
    """A retrain judges the serving model in the general frames and in a project's frames:
    both sets of results are kept, and neither is reused for the other."""
    from cdnet.inference.scale import ObjectScale

    folder = _folder(tmp_path / "set", n=2)
    small, smaller = ObjectScale(12.0, 5), ObjectScale(30.0, 5)
    for scale in (None, small, smaller):
        runs.clear()
        assert _evaluate(None, folder, scale=scale)["reused"] == 0 and len(runs) == 2
    for scale in (None, small, smaller):  # each found again, in any order
        runs.clear()
        assert _evaluate(None, folder, scale=scale)["reused"] == 2 and runs == []
    path = eval_cache_root(load_settings()) / f"{registry.bundled_version()}.json"
    assert len(json.loads(path.read_text())["by_fingerprint"]) == 3
    for k in range(eval_cache.MAX_FINGERPRINTS + 2):  # bounded: the oldest go first
        _evaluate(None, folder, scale=ObjectScale(40.0 + k, 5))
    assert len(json.loads(path.read_text())["by_fingerprint"]) == eval_cache.MAX_FINGERPRINTS


def test_the_next_retrain_reuses_the_serving_models_results(env, runs, monkeypatch, tmp_path):
    """Retrain twice on the same corrections: the second gate runs the serving model on no
    held-out object (its results come from the first run: as the serving model's when the
    candidate was rejected, as the candidate's own when it was promoted)."""
    for k, v in {"RETRAIN_MIN_HOLDOUT": "1", "RETRAIN_CROP": "64", "RETRAIN_BASE_DATA": "",
                 "RETRAIN_GENERAL_DATA": "", "RETRAIN_PROJECT_SCALE": "false"}.items():
        monkeypatch.setenv(k, v)  # (the project's frames: the next test)
    settings = load_settings()
    _seed_registry(settings, tmp_path)
    _corrections(settings, n_tasks=6)
    first = retrain_job(4, 1)
    assert first["status"] in {"promoted", "rejected"}
    n = first["metrics"]["holdout"]["serving"]["objects"]
    assert first["metrics"]["holdout"]["serving"]["reused"] == 0
    runs.clear()
    second = retrain_job(4, 1)
    serving = second["metrics"]["holdout"]["serving"]
    assert serving["reused"] == serving["objects"] == n
    before = first["metrics"]["holdout"]["candidate" if first["status"] == "promoted"
                                         else "serving"]
    assert serving["clicks90"] == before["clicks90"]
    assert len(runs) == n - second["metrics"]["holdout"]["candidate"]["reused"]
    # rejected candidates' files are pruned: only registry versions and this run's remain
    kept = {p.stem for p in eval_cache_root(settings).glob("*.json")}
    assert kept <= {v["version"] for v in registry.list_versions(settings)} | {
        first.get("candidate_version"), second.get("candidate_version"),
        version_of(registry.serving_weights(settings))}


def test_results_of_one_runner_are_never_reused_for_the_other(env, runs, tmp_path):
    """ONNX Runtime and torch may differ in the last float digits: each keeps its own."""
    folder = _folder(tmp_path / "set", n=2)
    torch_run = _evaluate(None, folder, backend="torch")
    assert torch_run["runner"].startswith("torch") and torch_run["reused"] == 0
    runs.clear()
    onnx_run = _evaluate(None, folder, backend="onnx")
    assert onnx_run["runner"].startswith("onnx") and onnx_run["reused"] == 0 and len(runs) == 2
    runs.clear()
    assert _evaluate(None, folder, backend="torch")["reused"] == 2 and runs == []
    assert _evaluate(None, folder, backend="onnx")["reused"] == 2 and runs == []


@pytest.mark.parametrize("serving_export", [True, False])
def test_the_gate_judges_both_models_on_one_runner(env, monkeypatch, tmp_path, serving_export):
    """ONNX Runtime (the faster) when the serving version carries its export: the candidate's
    is written for the run; otherwise torch for both, never one model on each."""
    from cdnet.model.io import build_model, save_model

    for k, v in {"RETRAIN_MIN_HOLDOUT": "1", "RETRAIN_CROP": "64", "RETRAIN_BASE_DATA": "",
                 "RETRAIN_GENERAL_DATA": "", "RETRAIN_PROJECT_SCALE": "false"}.items():
        monkeypatch.setenv(k, v)
    settings = load_settings()
    path = tmp_path / "v0.pt"
    save_model(build_model(), path, meta={"seed": "v0"})
    registry.store_version(settings, "cdnet-mnv2-v0", path, {}, export_onnx=serving_export)
    registry.promote(settings, "cdnet-mnv2-v0")
    _corrections(settings, n_tasks=6)
    record = retrain_job(4, 1)
    expected = "onnx" if serving_export else "torch"
    assert record["judged_on"] == expected
    holdout = record["metrics"]["holdout"]
    assert {holdout[role]["runner"].split("+")[0] for role in ("candidate", "serving")} == {
        expected}
    monkeypatch.setenv("INFERENCE_BACKEND", "torch")  # a deployment that serves on torch
    assert retrain_job(4, 1)["judged_on"] == "torch"
