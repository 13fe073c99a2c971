"""The interaction pipeline runs the network only where it says: one run per click it has not
seen, one score for a mask no click judged, and nothing hidden (counted at the runner)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from backend.app import create_app
from clicksmith.labelstudio.results import rle_to_mask
from clicksmith.settings import load_settings
from tests.backend.ls import brush, keypoint, predict_body, rectangle, task

H, W = 72, 96


class CountingRunner:
    """Wraps the predictor's runner and counts network runs."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.runs = 0

    def __call__(self, *args, **kwargs):
        self.runs += 1
        return self.inner(*args, **kwargs)


@pytest.fixture
def counted(predictor, disk):
    """A client whose predictor counts its network runs, the runner and the image path."""
    runner = CountingRunner(predictor.runner)
    counting = dataclasses.replace(predictor, runner=runner)
    app = create_app(load_settings(env={}, local_image_roots=str(_root(disk[0]))),
                     predictor_loader=lambda s: counting)
    assert app.extensions["clicksmith"].model.wait(30)
    return app.test_client(), runner, disk[0]


def _root(path: str) -> Path:
    return Path(path).parent


def runs_for(client, runner, body: dict) -> tuple[int, dict]:
    before = runner.runs
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.json
    return runner.runs - before, r.json["results"][0]


def _region_task(path: str, mask: np.ndarray, task_id: int) -> dict:
    item = brush(mask)
    return task(path, task_id, annotations=[{"id": 7, "updated_at": "2026-11-25T10:00:00Z",
                                             "result": [item]}])


def test_each_click_runs_the_network_once_and_a_repeat_not_at_all(counted):
    client, runner, path = counted
    project = "41.1"
    first = [keypoint(50, 50, W, H)]
    assert runs_for(client, runner, predict_body(path, first, project=project))[0] == 1
    assert runs_for(client, runner, predict_body(path, first, project=project))[0] == 0
    second = first + [keypoint(20, 20, W, H, positive=False)]
    assert runs_for(client, runner, predict_body(path, second, project=project))[0] == 1


def test_a_prior_refined_by_a_click_is_not_scored_first(counted):
    """The task's region seeds the session; the click's own run gives the quality. (The click
    lands just outside the region, so its answer changes the mask: a click that changes
    nothing returns the region with the region's score, tests/backend/test_unchanged_scores.py)"""
    client, runner, path = counted
    region = np.zeros((H, W), bool)
    region[20:36, 30:70] = True
    body = predict_body(path, [keypoint(50, 50, W, H)], the_task=_region_task(path, region, 3))
    assert runs_for(client, runner, body)[0] == 1


def test_a_stroke_alone_is_scored_once(counted, predictor, disk):
    """No click judges a stroke's mask, so the network scores that mask, once."""
    client, runner, path = counted
    stroke = np.zeros((H, W), bool)
    stroke[25:45, 35:60] = True
    n, result = runs_for(client, runner, predict_body(path, [brush(stroke, positive=True)]))
    assert n == 1
    item = result["result"][0]
    mask = rle_to_mask(item["value"]["rle"], H, W)
    assert np.array_equal(mask, stroke)
    assert result["score"] == pytest.approx(predictor.score_mask(disk[1], stroke), abs=1e-6)


def test_a_deleted_click_replays_only_the_remaining_clicks(counted):
    client, runner, path = counted
    region = np.zeros((H, W), bool)
    region[20:36, 30:70] = True  # the first click lands just below it: the mask grows
    the_task = _region_task(path, region, 4)
    project = "42.1"
    clicks = [keypoint(50, 50, W, H), keypoint(20, 20, W, H, positive=False),
              keypoint(60, 40, W, H)]
    for k in range(1, 4):
        body = predict_body(path, clicks[:k], project=project, the_task=the_task)
        assert runs_for(client, runner, body)[0] == 1
    remaining = [clicks[0], clicks[2]]
    body = predict_body(path, remaining, project=project, the_task=the_task)
    n, _ = runs_for(client, runner, body)
    assert n == 2  # the two remaining clicks, from the stored prior, which is not scored


def test_a_bare_box_runs_its_implied_centre_click_once(counted):
    client, runner, path = counted
    n, _ = runs_for(client, runner, predict_body(path, [rectangle(25, 20, 50, 60, W, H)]))
    assert n == 1


def test_an_adopted_edit_is_scored_once_and_not_given_the_old_score(counted, predictor, disk):
    """A session answered a click; the annotator erased part of the mask in Label Studio and
    saved it; the same click comes again. The answer is the edit, with the edit's own score:
    one network run (the score), where the old code ran none and kept the click's quality."""
    client, runner, path = counted
    project = "43.1"
    click = [keypoint(50, 50, W, H)]
    n, first = runs_for(client, runner, predict_body(path, click, project=project, task_id=5))
    assert n == 1
    answered = rle_to_mask(first["result"][0]["value"]["rle"], H, W)
    edited = answered.copy()
    edited[:, : W // 2] = False  # the annotator erased the left half
    assert edited.any() and not np.array_equal(edited, answered)
    body = predict_body(path, click, project=project, the_task=_region_task(path, edited, 5))
    n, again = runs_for(client, runner, body)
    assert n == 1  # the edit's score; the click is not run again
    assert np.array_equal(rle_to_mask(again["result"][0]["value"]["rle"], H, W), edited)
    assert again["score"] == pytest.approx(predictor.score_mask(disk[1], edited), abs=1e-6)
    assert again["score"] != pytest.approx(first["score"], abs=1e-3)
    # and nothing changed since: the same request again runs nothing, same answer and score
    n, third = runs_for(client, runner, body)
    assert n == 0 and third["score"] == again["score"]
