"""The interaction pipeline runs the network only where it says: one run per click it has not
seen (two network runs with test-time flip), one score (score_mask: one plain run) for every
answer whose mask differs from the session's stored, scored mask, and nothing hidden (counted
at the plain network)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from backend.app import create_app
from cdnet.inference.runner import FlipAveraged
from clicksmith.labelstudio.results import rle_to_mask
from clicksmith.settings import load_settings
from tests.backend.ls import brush, keypoint, predict_body, rectangle, task

H, W = 72, 96


class CountingRunner:
    """Wraps a runner and counts its calls."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "runner")
        self.runs = 0

    def __call__(self, *args, **kwargs):
        self.runs += 1
        return self.inner(*args, **kwargs)


def counting(predictor):
    """`predictor` with its plain network counted: (predictor, counter). A click is CLICK
    network runs (the view and, with test-time flip, its mirror), a score (score_mask, never
    flipped) SCORE."""
    if isinstance(predictor.runner, FlipAveraged):
        net = CountingRunner(predictor.runner.inner)
        return dataclasses.replace(predictor, runner=FlipAveraged(net)), net
    net = CountingRunner(predictor.runner)
    return dataclasses.replace(predictor, runner=net), net


def click_runs(predictor) -> int:
    return 2 if isinstance(predictor.runner, FlipAveraged) else 1


SCORE = 1  # score_mask: one plain run, flip or not


@pytest.fixture
def counted(predictor, disk):
    """A client whose predictor counts its network runs, the runner and the image path."""
    model, runner = counting(predictor)
    app = create_app(load_settings(env={}, local_image_roots=str(_root(disk[0]))),
                     predictor_loader=lambda s: model)
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


def _mask(result: dict) -> np.ndarray:
    return rle_to_mask(result["result"][0]["value"]["rle"], H, W)


def test_each_click_runs_the_network_once_and_a_repeat_not_at_all(counted, predictor):
    """A click: its run, and the score of the new mask. The same request again: nothing (the
    mask is the stored one, which carries its score). A click that changes nothing: its run
    only (tests/backend/test_answer_scores.py)."""
    client, runner, path = counted
    click, project = click_runs(predictor), "41.1"
    first = [keypoint(50, 50, W, H)]
    n, answer = runs_for(client, runner, predict_body(path, first, project=project))
    assert n == click + SCORE
    assert runs_for(client, runner, predict_body(path, first, project=project))[0] == 0
    second = first + [keypoint(20, 20, W, H, positive=False)]
    n, again = runs_for(client, runner, predict_body(path, second, project=project))
    changed = not np.array_equal(_mask(again), _mask(answer))
    assert n == click + (SCORE if changed else 0)


def test_a_prior_refined_by_a_click_is_not_scored_first(counted, predictor):
    """The task's region seeds the session; only the click's answer is scored, not the prior
    the click refines. (The click lands just outside the region: its answer changes the mask.)"""
    client, runner, path = counted
    region = np.zeros((H, W), bool)
    region[20:36, 30:70] = True
    body = predict_body(path, [keypoint(50, 50, W, H)], the_task=_region_task(path, region, 3))
    n, answer = runs_for(client, runner, body)
    assert not np.array_equal(_mask(answer), region)
    assert n == click_runs(predictor) + SCORE


def test_a_stroke_alone_is_scored_once(counted, predictor, disk):
    """No click judges a stroke's mask, so the network scores that mask, once."""
    client, runner, path = counted
    stroke = np.zeros((H, W), bool)
    stroke[25:45, 35:60] = True
    n, result = runs_for(client, runner, predict_body(path, [brush(stroke, positive=True)]))
    assert n == SCORE
    mask = _mask(result)
    assert np.array_equal(mask, stroke)
    assert result["score"] == pytest.approx(predictor.score_mask(disk[1], stroke), abs=1e-6)


def test_a_deleted_click_replays_only_the_remaining_clicks(counted, predictor):
    client, runner, path = counted
    click = click_runs(predictor)
    region = np.zeros((H, W), bool)
    region[20:36, 30:70] = True  # the first click lands just below it: the mask grows
    the_task = _region_task(path, region, 4)
    project = "42.1"
    clicks = [keypoint(50, 50, W, H), keypoint(20, 20, W, H, positive=False),
              keypoint(60, 40, W, H)]
    before = region
    for k in range(1, 4):
        body = predict_body(path, clicks[:k], project=project, the_task=the_task)
        n, answer = runs_for(client, runner, body)
        changed = not np.array_equal(_mask(answer), before)
        assert n == click + (SCORE if changed else 0)
        before = _mask(answer)
    remaining = [clicks[0], clicks[2]]
    body = predict_body(path, remaining, project=project, the_task=the_task)
    n, answer = runs_for(client, runner, body)
    changed = not np.array_equal(_mask(answer), before)
    # the two remaining clicks, from the stored prior, which is not scored; then the answer
    assert n == 2 * click + (SCORE if changed else 0)


def test_a_bare_box_runs_its_implied_centre_click_once(counted, predictor):
    client, runner, path = counted
    n, _ = runs_for(client, runner, predict_body(path, [rectangle(25, 20, 50, 60, W, H)]))
    assert n == click_runs(predictor) + SCORE


def test_an_adopted_edit_is_scored_once_and_not_given_the_old_score(counted, predictor, disk):
    """A session answered a click; the annotator erased part of the mask in Label Studio and
    saved it; the same click comes again. The answer is the edit, with the edit's own score:
    one network run (the score); the click is not run again."""
    client, runner, path = counted
    project = "43.1"
    click = [keypoint(50, 50, W, H)]
    n, first = runs_for(client, runner, predict_body(path, click, project=project, task_id=5))
    assert n == click_runs(predictor) + SCORE
    answered = _mask(first)
    edited = answered.copy()
    edited[:, : W // 2] = False  # the annotator erased the left half
    assert edited.any() and not np.array_equal(edited, answered)
    body = predict_body(path, click, project=project, the_task=_region_task(path, edited, 5))
    n, again = runs_for(client, runner, body)
    assert n == SCORE  # the edit's score; the click is not run again
    assert np.array_equal(_mask(again), edited)
    assert again["score"] == pytest.approx(predictor.score_mask(disk[1], edited), abs=1e-6)
    assert again["score"] != pytest.approx(first["score"], abs=1e-3)
    # and nothing changed since: the same request again runs nothing, same answer and score
    n, third = runs_for(client, runner, body)
    assert n == 0 and third["score"] == again["score"]
