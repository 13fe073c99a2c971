"""`clicksmith status --project N` and the review report show the annotation telemetry (clicks
and seconds per object per model version) and the retrain history with each gate decision."""

from __future__ import annotations

import json

import numpy as np

from clicksmith import telemetry as tm
from clicksmith.cli import main as cli
from clicksmith.labelstudio.config import parse_config
from clicksmith.labelstudio.results import brush_item
from clicksmith.settings import load_settings
from tests.review.lsfake import LABEL_CONFIG

OBJ = tm.ObjectKey("image", "mask", "Object")
REJECTED = tm.ObjectKey("image", "mask", "Background", "rejected-1")  # a suggestion ✗'d


def _finish(store: tm.Telemetry, project: int, task: int, clicks: int, seconds: float,
            version: str, start: float) -> None:
    store.record([tm.Interaction(project, task, OBJ, "new", version)], at=start)
    for _ in range(clicks - 1):
        store.record([tm.Interaction(project, task, OBJ, "extend", version)], at=start + 1)
    cfg = parse_config(LABEL_CONFIG, interactive=False)
    item = brush_item(np.ones((8, 8), bool), brush=cfg.brush_name, image=cfg.image_name,
                      label="Object", score=0.5)
    event = {"action": "ANNOTATION_CREATED", "project": {"id": project},
             "annotation": {"id": 100 + task, "task": task, "result": [item]}}
    assert store.finish(event, now=start + seconds)


def _history(registry) -> None:
    runs = registry / "runs"
    runs.mkdir(parents=True)
    (runs / "20261204-1.json").write_text(json.dumps({
        "run": "20261204-1", "project": 5, "started_at": 1.0, "status": "promoted",
        "candidate_version": "cdnet-mnv2-new", "serving_before": None,
        "metrics": {"holdout": {"candidate": {"noc90": 2.0}, "serving": {"noc90": 2.5}}},
        "not_worse": {"holdout": True}}))
    (runs / "20261205-1.json").write_text(json.dumps({
        "run": "20261205-1", "project": 5, "started_at": 2.0, "status": "rejected",
        "candidate_version": "cdnet-mnv2-worse", "serving_before": "cdnet-mnv2-new",
        "metrics": {"holdout": {"candidate": {"noc90": 3.0}, "serving": {"noc90": 2.0}}},
        "not_worse": {"holdout": False}, "worse_on": ["holdout"]}))


def _fill(env) -> None:
    store = tm.Telemetry(load_settings())
    for task, (clicks, seconds) in enumerate([(4, 40.0), (6, 60.0), (5, 50.0)], 1):
        _finish(store, 5, task, clicks, seconds, "cdnet-mnv2-old", 1000.0)
    # 4 clicks on a suggestion rejected before task 11's annotation: discarded
    store.record([tm.Interaction(5, 11, REJECTED, "new", "cdnet-mnv2-new", 4)], at=4999.0)
    for task, (clicks, seconds) in enumerate([(2, 20.0), (3, 30.0)], 10):
        _finish(store, 5, task, clicks, seconds, "cdnet-mnv2-new", 5000.0)
    store.record([tm.Interaction(5, 99, OBJ, "new", "cdnet-mnv2-new")])  # not submitted yet
    from pathlib import Path

    _history(Path(env["MODEL_REGISTRY"]))


def test_status_project_prints_clicks_seconds_and_gate_decisions(env, capsys):
    _fill(env)
    assert cli(["status", "--project", "5"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    old = next(line for line in lines if "cdnet-mnv2-old" in line and "NoC" not in line)
    new = next(line for line in lines if line.strip().startswith("cdnet-mnv2-new"))
    assert old.split()[1:] == ["3", "5.0", "5.8", "0.0", "50.0", "58.0"]
    assert new.split()[1:] == ["2", "2.5", "2.9", "0.0", "25.0", "29.0"]
    assert "1 object(s) on 1 task(s)" in out
    # the discarded suggestions: count, their clicks, clicks per accepted object without and
    # with them ((2 + 3 + 4) / 2)
    discarded = out.split("discarded suggestions")[1].split("waiting")[0].splitlines()
    old_d = next(line for line in discarded if line.strip().startswith("cdnet-mnv2-old"))
    new_d = next(line for line in discarded if line.strip().startswith("cdnet-mnv2-new"))
    assert old_d.split()[1:] == ["0", "0", "5.0", "5.0"]
    assert new_d.split()[1:] == ["1", "4", "2.5", "4.5"]
    history = out.split("retrain history")[1]
    assert history.index("rejected") < history.index("promoted")  # newest first
    assert "holdout NoC@90 3.00 vs 2.00 (worse)" in history
    assert "holdout NoC@90 2.00 vs 2.50 (not worse)" in history

    assert cli(["status", "--project", "5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [v["objects"] for v in data["versions"]] == [3, 2]
    assert [(v["discarded"], v["discarded_clicks"], v["clicks_per_object_with_discarded"])
            for v in data["versions"]] == [(0, 0, 5.0), (1, 4, 4.5)]
    assert (data["objects"], data["discarded"]) == (5, 1)
    assert [r["status"] for r in data["retrains"]] == ["rejected", "promoted"]
    assert cli(["status", "some-run", "--project", "5"]) == 2


def test_review_report_shows_the_telemetry(fake_ls, env, tmp_path, capsys):
    fake_ls.add_project(5, 1)
    _fill(env)
    out = tmp_path / "report"
    assert cli(["review", "--project", "5", "--out", str(out), "--no-view"]) == 0
    data = json.loads((out / "review.json").read_text())
    versions = {v["model_version"]: v for v in data["telemetry"]["versions"]}
    assert versions["cdnet-mnv2-new"]["clicks_median"] == 2.5
    assert (versions["cdnet-mnv2-new"]["discarded"],
            versions["cdnet-mnv2-new"]["discarded_clicks"]) == (1, 4)
    assert [r["status"] for r in data["telemetry"]["retrains"]] == ["rejected", "promoted"]
    page = (out / "review.html").read_text()
    assert "Annotation effort per model version" in page and "cdnet-mnv2-old" in page
    assert "<th>discarded suggestions</th>" in page
    assert "<td>1</td><td>4</td><td>2.5</td><td>4.5</td></tr>" in page
    assert "<td>rejected</td>" in page and "NoC@90 3.00 vs 2.00 (worse)" in page
