"""Two scores for one mask (issue 30 item 7): a click that leaves a mask exactly as it was
returns that mask with the mask's score, not with the click's quality.

The network answers a click with its own output and the quality head's guess for that output
(`quality[0]`); the session keeps only the click's regions of change (progressive mode). A
click on a region already done changes nothing, so the old code returned the annotation's (or
pre-label's) mask unchanged with the quality of an output it never returned: on the test disk
0.942 for a mask whose score_mask is 0.923, and which had been answered with 0.909. Network
runs are counted at the runner (tests/backend/test_pipeline.py's fixture)."""

from __future__ import annotations

import numpy as np
import pytest

from clicksmith.labelstudio.results import rle_to_mask
from tests.backend import test_pipeline
from tests.backend.ls import keypoint, predict_body
from tests.backend.test_pipeline import H, W, _region_task, runs_for

counted = test_pipeline.counted  # the fixture: a client whose predictor counts network runs


def _mask(result: dict) -> np.ndarray:
    return rle_to_mask(result["result"][0]["value"]["rle"], H, W)


def test_a_click_again_on_an_annotation_returns_it_with_its_own_score(counted, predictor,
                                                                       disk):
    """A click answered a mask; the annotator submitted it; the task is opened again (a new
    session: its prior is the annotation) and the same spot clicked. The network changes
    nothing there: the answer is the annotation's mask, scored as that mask (one run for the
    click, one for the score: the score run is paid only when nothing changed)."""
    client, runner, path = counted
    click = [keypoint(50, 50, W, H)]
    n, first = runs_for(client, runner, predict_body(path, click, project="61.1", task_id=8))
    assert n == 1
    annotation = _mask(first)
    body = predict_body(path, click, project="62.1", the_task=_region_task(path, annotation, 8))
    n, again = runs_for(client, runner, body)
    assert np.array_equal(_mask(again), annotation)  # the click changed nothing
    assert n == 2
    own = predictor.score_mask(disk[1], annotation)
    assert again["score"] == pytest.approx(own, abs=1e-6)
    assert again["result"][0]["score"] == pytest.approx(own, abs=1e-6)


def test_a_further_click_that_changes_nothing_keeps_the_masks_score(counted):
    """In one session: the second click lands inside the first answer and changes nothing; the
    mask comes back with the score it was answered with, at the cost of the click's run only."""
    client, runner, path = counted
    first_click = keypoint(50, 50, W, H)
    n, first = runs_for(client, runner, predict_body(path, [first_click], project="63.1"))
    assert n == 1
    body = predict_body(path, [first_click, keypoint(46, 42, W, H)], project="63.1")
    n, second = runs_for(client, runner, body)
    assert n == 1
    assert np.array_equal(_mask(second), _mask(first))
    assert second["score"] == first["score"]


def test_a_click_that_changes_the_mask_keeps_its_own_quality(counted, predictor, disk):
    """Unchanged: a click whose answer differs from the mask before it keeps the quality of its
    own run (the network runs for the click, never for a score)."""
    client, runner, path = counted
    prior = np.zeros((H, W), bool)
    prior[20:30, 36:48] = True  # a small part of the disk, beside the click: it grows
    body = predict_body(path, [keypoint(50, 50, W, H)], project="64.1",
                        the_task=_region_task(path, prior, 9))
    _, answer = runs_for(client, runner, body)
    assert _mask(answer).sum() > 5 * prior.sum()
    own = predictor.score_mask(disk[1], _mask(answer))
    assert answer["score"] != pytest.approx(own, abs=1e-3)  # the click's quality, as before
