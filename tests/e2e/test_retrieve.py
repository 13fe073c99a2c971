"""Label Studio's own Retrieve Predictions (data manager action `retrieve_tasks_predictions`,
label_studio/data_manager/actions/basic.py in 1.23) against our backend: one scored pre-label
stored per task, of the backend's model version, and the data manager ordering by it."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import api, create_project, wait_until
from tests.e2e.test_label_studio import decoded

pytestmark = pytest.mark.e2e


def test_retrieve_predictions_stores_one_scored_prelabel_per_task(ls, ls_server, backend):
    project = create_project(ls, ls_server, backend, "clicksmith retrieve")
    answer = api(ls_server, "POST",
                 f"/api/dm/actions?id=retrieve_tasks_predictions&project={project.id}",
                 {"selectedItems": {"all": True, "excluded": []}})
    assert "Retrieved" in str(answer)
    scores = {}
    for stem, tid in project.tasks.items():
        preds = list(ls.predictions.list(task=tid))
        assert len(preds) == 1, f"task {stem}: {len(preds)} predictions"
        p = preds[0]
        assert p.model_version == backend.model_version
        assert 0.0 < p.score <= 1.0
        h, w = project.masks[stem].shape
        assert decoded(p.result, h, w).any(), f"task {stem}: empty pre-label"
        scores[tid] = p.score
    assert len(set(scores.values())) > 1, "distinct images should get distinct scores"
    # pressed again: every task holds this version's prediction, nothing is added
    api(ls_server, "POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project.id}",
        {"selectedItems": {"all": True, "excluded": []}})
    assert all(len(list(ls.predictions.list(task=t))) == 1 for t in project.tasks.values())
    # the backend set the project's model_version (in the background), so the data manager
    # orders by the stored scores
    wait_until(lambda: ls.projects.get(id=project.id).model_version == backend.model_version,
               10, "the project's model_version")
    query = json.dumps({"ordering": ["-tasks:predictions_score"]})
    ordered = [t.id for t in ls.tasks.list(project=project.id, query=query)]
    assert ordered == sorted(scores, key=lambda t: -scores[t]), (ordered, scores)
