"""/predict frames a project's clicks for the object scale a retrain adopted for it (registry
projects/<id>.json), and every other project's with the general frames."""

from __future__ import annotations

import numpy as np

from cdnet import Click
from cdnet.inference.scale import ObjectScale
from clicksmith import registry
from tests.backend.ls import keypoint, predict_body
from tests.backend.test_predict import H, W, answer


def test_a_project_with_an_adopted_scale_gets_its_frames(make_app, disk, predictor, tmp_path):
    path, img = disk
    app = make_app(model_registry=str(tmp_path / "registry"))
    settings = app.extensions["clicksmith"].settings
    scale = ObjectScale(10.0, 40)  # frames: a 40 px first view, a 32 px zoom-in (the minimum)
    registry.store_project_scale(settings, 7, {"adopted": True, "scale": scale.to_dict()})
    registry.store_project_scale(settings, 8, {"adopted": False, "scale": scale.to_dict()})
    client = app.test_client()
    click = keypoint(50, 50, W, H)
    expected_framed = predictor.for_scale(scale).predict(img, [Click(36, 48)]).mask
    expected_general = predictor.predict(img, [Click(36, 48)]).mask
    assert not np.array_equal(expected_framed, expected_general)  # the test can tell them apart

    result, framed = answer(client, predict_body(path, [click], project="7.1795626672"))
    assert result["model_version"] == predictor.model_version  # what Label Studio sees
    backend = app.extensions["clicksmith"]
    assert backend.served_as(predictor.for_scale(scale)) == \
        f"{predictor.model_version} @{scale.first_view}/{scale.zoom_min}px"  # telemetry's
    assert backend.served_as(predictor) == predictor.model_version
    np.testing.assert_array_equal(framed, expected_framed)
    ys, xs = np.nonzero(framed)
    assert ys.max() - ys.min() < scale.first_view and xs.max() - xs.min() < scale.first_view
    for project in ("8.1795626672", "9.1795626672"):  # not adopted; never decided
        _result, general = answer(client, predict_body(path, [click], project=project))
        np.testing.assert_array_equal(general, expected_general)

    # a damaged record: the click is still answered, in the general frames, and counted
    registry.project_scale_path(settings, 7).write_text("{not json")
    _result, general = answer(client, predict_body(path, [click], project="7.1795626673",
                                                   task_id=2))
    np.testing.assert_array_equal(general, expected_general)
    assert "project_scale_errors" in client.get("/metrics").get_data(as_text=True)
