"""benchmarks/adaptation.py's loop on a tiny project: two batches, a few real fine-tuning
iterations on tiny crops, the real webhook job, retrain job, registry and serving model.

The gate's verdicts are injected (a real NoC evaluation after two iterations decides nothing
that can be asserted): after the first batch the candidate forgets (worse on the general set)
and must be refused; after the second it helps and must be promoted and then serve."""

from __future__ import annotations

import importlib.util
import json

import cv2
import pytest

from clicksmith import registry
from clicksmith.models import process_model, reset_process_service
from clicksmith.settings import load_settings
from review.corrections import read_manifest
from tests.review.conftest import REPO
from tests.review.test_retrain import FIXTURE_SCENES, FIXTURES, fixture_folder


def _benchmark():
    spec = importlib.util.spec_from_file_location("adaptation", REPO / "benchmarks" /
                                                  "adaptation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_project(dst, copies=3):
    """12 small images (the fixture scenes at 160x120, mirrored and rolled), one object each."""
    (dst / "images").mkdir(parents=True)
    (dst / "masks").mkdir()
    n = 0
    for k in range(copies):
        for name in FIXTURE_SCENES[:4]:
            img = cv2.imread(str(FIXTURES / "images" / f"{name}.png"))
            mask = cv2.imread(str(FIXTURES / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            img, mask = (cv2.resize(a, (160, 120), interpolation=cv2.INTER_NEAREST)
                         for a in (img, mask))
            if k % 2:
                img, mask = img[:, ::-1], mask[:, ::-1]
            n += 1
            cv2.imwrite(str(dst / "images" / f"p{n:02d}.png"), img)
            cv2.imwrite(str(dst / "masks" / f"p{n:02d}.png"), mask)
    return dst


def test_the_benchmark_loop_refuses_forgetting_and_serves_a_better_model(env, monkeypatch,
                                                                         tmp_path):
    project = _tiny_project(tmp_path / "project")
    general = fixture_folder(tmp_path / "general", FIXTURE_SCENES[4:])
    base = fixture_folder(tmp_path / "train_base", FIXTURE_SCENES[:2])
    calls: list[tuple[str, str, bool]] = []

    def evaluate(weights, dataset, scale=None):
        serving = registry.serving_weights(load_settings())
        role = "serving" if weights == serving else "candidate"
        calls.append((dataset.name, role, scale is not None))
        retrain_no = sum(1 for c in calls if c[:2] == ("holdout", "candidate"))
        scores = {"holdout": {"candidate": 2.0, "serving": 3.0},
                  "general": {"candidate": 4.0 if retrain_no == 1 else 3.0, "serving": 3.0}}
        noc90 = scores[dataset.name][role]
        if scale is not None and role == "serving":  # the project's frames: worse, then better
            noc90 = 3.5 if retrain_no == 0 else 2.5  # (judged before retrain k's candidate)
        n = len(list((dataset / "masks").glob("*.png")))
        return {"dataset": dataset.name, "noc90": noc90, "objects": n}

    out = tmp_path / "results" / "adaptation_test"
    work = tmp_path / "work"
    rc = _benchmark().main([
        "--project", str(project), "--objects", "8", "--batch-objects", "4",
        "--iterations", "2", "--remaining", "2", "--forgetting", "", "--threads", "2",
        "--work", str(work), "--out", str(out),
        "--set", "retrain_min_holdout=1", "--set", "retrain_crop=64",
        "--set", f"retrain_general_data={general}", "--set", f"retrain_base_data={base}",
        "--set", "retrain_replay=0.3", "--set", "flip_average=false"], evaluate=evaluate)
    assert rc == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").stat().st_size > 0
    first, second = res["batches"]
    assert first["objects"] == second["objects"] == 4
    # the store: every annotated object went through the webhook job into the project's folder
    rows = read_manifest(work / "corrections" / "1")
    assert len(rows) == 8 and len({r["task"] for r in rows.values()}) == 8
    # batch 1's candidate forgets: refused, the bundled model keeps serving
    assert first["retrain"]["status"] == "rejected"
    assert first["retrain"]["worse_on"] == ["general"]
    assert first["serving_after"] == "bundled"
    # batch 2's candidate helps: promoted, and what serves from then on
    assert second["retrain"]["status"] == "promoted"
    monkeypatch.setenv("MODEL_REGISTRY", str(work / "models"))
    settings = load_settings()
    promoted = second["retrain"]["candidate_version"]
    # ... with the frames of the project's object scale, which its second retrain adopted
    assert first["retrain"]["project_scale"]["adopted"] is False
    assert second["retrain"]["project_scale"]["adopted"] is True
    scale = registry.project_scale(settings, 1)
    assert registry.current_version(settings) == promoted
    assert second["serving_after"] == f"{promoted} @{scale.first_view}/{scale.zoom_min}px"
    assert all(not framed for name, _role, framed in calls if name == "general")
    assert ("holdout", "candidate", True) in calls
    assert [v["version"] for v in registry.list_versions(settings)] == [promoted]
    runs = sorted(json.loads(p.read_text())["status"]
                  for p in (work / "models" / "runs").glob("*.json"))
    assert runs == ["promoted", "rejected"]
    reset_process_service()
    assert process_model(settings).model_version == promoted
    # the fine-tuning was real: the corrections' training part plus the replayed base folder
    assert second["retrain"]["finetune_seconds"] is not None
    assert res["summary"]["objects annotated"] == 8

    # the run's corrections stored again from its results file (its work folder gone): the
    # same objects, tasks and annotation ids, for --retrain-only
    rebuilt = tmp_path / "rebuilt"
    args = ["--project", str(project), "--objects", "8", "--batch-objects", "4",
            "--work", str(rebuilt), "--rebuild-work", str(out.with_suffix(".json"))]
    assert _benchmark().main(args) == 0
    again = read_manifest(rebuilt / "corrections" / "1")
    assert {k: (r["task"], r["annotation"]) for k, r in again.items()} == \
        {k: (r["task"], r["annotation"]) for k, r in rows.items()}
    assert _benchmark().main([*args[:3], "6", *args[4:]]) == 2  # another stream: refused


@pytest.fixture(autouse=True)
def _fresh_service():
    yield
    reset_process_service()


def test_a_training_folder_as_the_project_keeps_its_held_out_split_and_replay_apart(tmp_path):
    """A project made of a base training folder: the images the general check draws from are
    not in the stream, and replay uses the other base folders only; any other folder is used
    whole, with the default replay."""
    from cdnet.train.data import VAL_FRACTION, scan, split

    bench = _benchmark()
    project = _tiny_project(tmp_path / "train_tiny", copies=10)  # 40 images
    other = _tiny_project(tmp_path / "train_other", copies=1)
    stream = bench.project_stream(project, seed=0)
    held = {e.image.name for e in split(scan(project), VAL_FRACTION)[1]}
    assert held, "the fixture needs a held-out image for this test to mean anything"

    kept, base_data, note = bench.from_training_folder(project, stream, [other, project])
    assert {p.name for p, _ in kept} == {p.name for p, _ in stream} - held
    assert [p for p, _ in kept] == [p for p, _ in stream if p.name not in held]  # order kept
    assert base_data == str(other)
    assert f"{len(held)} held-out images" in note

    assert bench.from_training_folder(project, stream, [other]) == (stream, None, "")


def test_the_object_scale_benchmark_runs_every_pair_of_factors(tmp_path):
    """benchmarks/object_scale.py: the general frames, then each (first view, zoom-in) pair,
    sized from the scale its own objects measure, with real NoC runs."""
    from cdnet.inference.scale import MIN_VIEW, measure_scale
    from tests.benchmark_module import load_benchmark

    project = _tiny_project(tmp_path / "project", copies=1)
    out = tmp_path / "scale"
    rc = load_benchmark("object_scale").main([
        "--project", str(project), "--scale-objects", "4", "--objects", "2", "--first", "4",
        "--zoom", "2,3", "--expand", "2", "--threads", "1", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.with_suffix(".json").read_text())
    side = measure_scale(cv2.imread(str(p), 0) for p in (project / "masks").glob("*.png")).side
    assert res["scale"]["side"] == pytest.approx(side) and res["objects"] == 2
    general, *framed = res["rows"]
    assert general["first_view"] is None and len(framed) == 2
    assert [r["first_view"] for r in framed] == [max(MIN_VIEW, round(4 * side))] * 2
    assert [r["zoom_min"] for r in framed] == [min(200, max(MIN_VIEW, round(z * side)))
                                               for z in (2, 3)]
    assert all(1 <= r["noc90"] <= 20 for r in res["rows"])
    assert general["zoom_expand"] == 1.4 and [r["zoom_expand"] for r in framed] == [2, 2]
    assert "| 4.0 | 3.0 | 2 |" in out.with_suffix(".md").read_text()
