"""One reader of a body's project id: what the backend accepts before queueing, the
corrections job accepts too, and both refuse the same bodies with the same reason."""

from __future__ import annotations

import pytest

from backend.errors import ApiError
from backend.prompts import project_id
from clicksmith.labelstudio.ids import MAX_PROJECT_ID, body_project_id
from clicksmith.queue import PermanentJobError
from review.corrections import _project_id


@pytest.mark.parametrize("body,expected", [
    ({"project": {"id": 7, "title": "x"}}, 7),
    ({"project": 7}, 7),
    ({"project": "7.1733390000"}, 7),  # /predict's and /train's "<id>.<timestamp>"
    ({"project": 7.0}, 7),
    ({"project": str(MAX_PROJECT_ID)}, MAX_PROJECT_ID),
])
def test_every_shape_label_studio_sends_reads_the_same_everywhere(body, expected):
    assert body_project_id(body) == project_id(body) == _project_id(body) == expected


@pytest.mark.parametrize("body", [
    {"project": "seven"}, {"project": True}, {"project": 0}, {"project": -3},
    {"project": "9" * 40}, {"project": [1]}, {"project": {"id": "x"}}, {"project": 7.5},
])
def test_a_bad_id_is_refused_by_both_with_the_same_reason(body):
    with pytest.raises(ValueError) as reason:
        body_project_id(body)
    with pytest.raises(ApiError) as http:
        project_id(body)
    with pytest.raises(PermanentJobError) as job:
        _project_id(body)
    assert http.value.status == 400 and str(reason.value) in str(http.value)
    assert str(reason.value) in str(job.value)


def test_no_project_is_none_for_the_job_and_a_400_for_the_backend():
    assert body_project_id({}) is None and _project_id({"project": {}}) is None
    with pytest.raises(ApiError, match="names no project id"):
        project_id({"action": "START_TRAINING"})
