"""One score for one mask, interactive answers included (issue 30): every answer's score is
`score_mask` of the mask exactly as returned (clicksmith.prelabel.mask_score has the rule),
whatever produced it, and the number a pre-label stores and the review shows for that mask.

Before, a click's answer carried the click run's own quality (`quality[0]`, an estimate for the
network's raw output, about 0.1 below score_mask on average) and a tool's edit kept the score
the session had before the edit. The only saving left is reuse: an answer whose mask is
bit-identical to the session's stored mask keeps that mask's score, with no network run.
Network runs are counted at the plain network (tests/backend/test_pipeline.py's fixture)."""

from __future__ import annotations

import numpy as np
import pytest

from cdnet import Click
from clicksmith.labelstudio.config import parse_config
from clicksmith.labelstudio.results import rle_to_mask
from tests.backend import test_pipeline
from tests.backend.ls import LABEL_CONFIG, keypoint, predict_body
from tests.backend.test_pipeline import SCORE, H, W, _region_task, click_runs, runs_for
from tests.backend.test_tools import body as tools_body
from tests.backend.test_tools import sp_point

counted = test_pipeline.counted  # the fixture: a client whose predictor counts network runs


def _mask(result: dict) -> np.ndarray:
    return rle_to_mask(result["result"][0]["value"]["rle"], H, W)


def test_a_click_answer_is_scored_as_the_mask_it_returns(counted, predictor, disk):
    """A click's answer: its run, then score_mask of the returned mask, not the run's quality."""
    client, runner, path = counted
    n, answer = runs_for(client, runner, predict_body(path, [keypoint(50, 50, W, H)],
                                                      project="60.1"))
    assert n == click_runs(predictor) + SCORE
    mask = _mask(answer)
    own = predictor.score_mask(disk[1], mask)
    assert answer["score"] == pytest.approx(own, abs=1e-6)
    assert answer["result"][0]["score"] == pytest.approx(own, abs=1e-6)
    # what the old code returned: the click run's own quality, another number for this mask
    click_quality = predictor.predict(disk[1], [Click(50 * H / 100, 50 * W / 100)]).quality
    assert click_quality != pytest.approx(own, abs=1e-3)


def test_a_tool_edit_is_scored_as_the_mask_it_returns(counted, predictor, disk):
    """A superpixel fill after a click: the edit's own score_mask, one plain run; not the score
    the session had before the edit."""
    client, runner, path = counted
    project = "65.1"
    n, first = runs_for(client, runner, tools_body(path, [keypoint(50, 50, W, H)], project))
    assert n == click_runs(predictor) + SCORE
    n, edited = runs_for(client, runner, tools_body(path, [sp_point(10, 10)], project))
    mask = _mask(edited)
    assert not np.array_equal(mask, _mask(first))  # the fill added a superpixel
    assert n == SCORE  # no click: only the edit's score
    assert edited["score"] == pytest.approx(predictor.score_mask(disk[1], mask), abs=1e-6)
    assert edited["score"] != pytest.approx(first["score"], abs=1e-4)


def test_a_click_again_on_an_annotation_returns_it_with_its_own_score(counted, predictor,
                                                                       disk):
    """A click answered a mask; the annotator submitted it; the task is opened again (a new
    session: its prior is the annotation) and the same spot clicked. The network changes
    nothing there: the answer is the annotation's mask with its score_mask (the click's run and
    the score: a new session's prior carries no score yet)."""
    client, runner, path = counted
    click = [keypoint(50, 50, W, H)]
    n, first = runs_for(client, runner, predict_body(path, click, project="61.1", task_id=8))
    assert n == click_runs(predictor) + SCORE
    annotation = _mask(first)
    body = predict_body(path, click, project="62.1", the_task=_region_task(path, annotation, 8))
    n, again = runs_for(client, runner, body)
    assert np.array_equal(_mask(again), annotation)  # the click changed nothing
    assert n == click_runs(predictor) + SCORE
    own = predictor.score_mask(disk[1], annotation)
    assert again["score"] == pytest.approx(own, abs=1e-6)
    assert again["score"] == pytest.approx(first["score"], abs=1e-6)  # one mask, one score


def test_an_unchanged_repeat_click_keeps_the_score_without_scoring_again(counted, predictor):
    """In one session: the second click lands inside the first answer and changes nothing; the
    mask comes back with the score it was answered with, at the cost of the click's run only
    (no second scoring run); the same request once more runs nothing at all."""
    client, runner, path = counted
    first_click = keypoint(50, 50, W, H)
    n, first = runs_for(client, runner, predict_body(path, [first_click], project="63.1"))
    assert n == click_runs(predictor) + SCORE
    body = predict_body(path, [first_click, keypoint(46, 42, W, H)], project="63.1")
    n, second = runs_for(client, runner, body)
    assert np.array_equal(_mask(second), _mask(first))
    assert n == click_runs(predictor)  # the click; its unchanged mask's score is reused
    assert second["score"] == first["score"]
    n, third = runs_for(client, runner, body)
    assert n == 0 and third["score"] == first["score"]


def test_a_prelabel_the_review_and_an_answer_give_one_mask_one_score(counted, predictor, disk,
                                                                      monkeypatch):
    """The same mask, three ways: an interactive click answers it; a pre-label of a task
    holding it as an annotation stores a score for it (clicksmith.prelabel.task_prediction,
    the RQ job's and Retrieve Predictions' function); the review ranks that task
    (review.ranking.score_tasks, Label Studio's calls replaced). One number."""
    from clicksmith.prelabel import task_prediction
    from clicksmith.settings import load_settings
    from review import ranking

    client, runner, path = counted
    n, answer = runs_for(client, runner, predict_body(path, [keypoint(50, 50, W, H)],
                                                      project="66.1", task_id=11))
    mask = _mask(answer)
    the_task = _region_task(path, mask, 11)
    cfg = parse_config(LABEL_CONFIG, interactive=False)
    prediction = task_prediction(predictor, disk[1], the_task, cfg)
    assert np.array_equal(rle_to_mask(prediction["result"][0]["value"]["rle"], H, W), mask)

    reviewed_task = dict(the_task, predictions=[dict(prediction, id=12,
                                                     created_at="2026-11-26T10:00:00Z")])
    monkeypatch.setattr(ranking, "project_config", lambda client, project: cfg)
    monkeypatch.setattr(ranking, "list_tasks", lambda client, project: [reviewed_task])
    monkeypatch.setattr(ranking, "load_task_image", lambda settings, task, cfg: disk[1])
    rows = ranking.score_tasks(load_settings(env={}), 1, client=object(), predictor=predictor)
    assert len(rows) == 1 and not rows[0]["error"], rows

    own = predictor.score_mask(disk[1], mask)
    assert prediction["score"] == pytest.approx(own, abs=1e-6)
    assert rows[0]["score"] == pytest.approx(prediction["score"], abs=1e-6)
    assert answer["score"] == pytest.approx(prediction["score"], abs=1e-6)
