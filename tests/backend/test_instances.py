"""Several objects of one label in one image (issue 31): how the next object starts.

With Auto-Accept on, Label Studio sends every click alone; with it off, clicks accumulate until
✓ or ✗ removes them. A positive click on another object must start a new session, with an
empty prior and a region id of its own, while clicks on the same object keep refining one
session and one region (backend.pipeline.next_object). Each answer is compared with the same
clicks run in-process.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from clicksmith.labelstudio.results import rle_to_mask
from tests.backend.ls import keypoint, predict_body, rectangle, task

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # make_fixtures.py's drawn scenes


def _deepest(m: np.ndarray) -> tuple[int, int]:
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


def _read(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# the `pair` scene: two oranges of one colour, 4 px apart; one mask each
A = _read(FIXTURES / "masks" / "pair-1.png")[:, :, 0] > 127
B = _read(FIXTURES / "masks" / "pair-2.png")[:, :, 0] > 127
H, W = A.shape
A_CENTRE, B_CENTRE = _deepest(A), _deepest(B)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """The scene copied where the backend may read it: (path, image, object a, object b)."""
    path = tmp_path_factory.mktemp("pair") / "pair.png"
    shutil.copyfile(FIXTURES / "images" / "pair.png", path)
    return str(path), _read(path), A, B


def click(y: float, x: float, positive: bool = True) -> dict:
    """A keypoint at pixel (y, x) of the pair image, as Label Studio sends it (percent)."""
    return keypoint(100.0 * x / W, 100.0 * y / H, W, H, positive=positive)


def px(item: dict):
    from cdnet import Click

    v = item["value"]
    return Click(v["y"] * H / 100, v["x"] * W / 100, item.get("is_positive", True))


def ask(client, path: str, context: list[dict], project: str, the_task: dict | None = None
        ) -> tuple[np.ndarray, str]:
    """One /predict: (the answer's mask, the id of its brush region)."""
    r = client.post("/predict", json=predict_body(path, context, project=project,
                                                  the_task=the_task))
    assert r.status_code == 200, r.json
    (item,) = [i for i in r.json["results"][0]["result"] if i["type"] == "brushlabels"]
    return rle_to_mask(item["value"]["rle"], H, W), item["id"]


def overlap(mask: np.ndarray, obj: np.ndarray) -> float:
    """Share of `obj` inside `mask`."""
    return float((mask & obj).sum() / obj.sum())


def test_auto_accept_a_click_on_another_object_is_a_new_region(client, pair, predictor):
    """Auto-Accept on: every click arrives alone. The second object's click used to extend the
    first object's session (a mask of both, a second region duplicating the first)."""
    path, img, a, b = pair
    first, second = click(*A_CENTRE), click(*B_CENTRE)
    m1, r1 = ask(client, path, [first], "31.1")
    assert overlap(m1, a) > 0.9 and overlap(m1, b) < 0.25
    m2, r2 = ask(client, path, [second], "31.1")
    assert r2 != r1, "the second object needs a region of its own"
    assert overlap(m2, a) < 0.25 and overlap(m2, b) > 0.9
    assert np.array_equal(m2, predictor.predict(img, [px(second)]).mask)  # fresh, no prior
    # and that new session goes on: a further click near it refines it, in the same region
    third = click(B_CENTRE[0] + 12, B_CENTRE[1] + 12)
    m3, r3 = ask(client, path, [third], "31.1")
    assert r3 == r2
    s = predictor.session(img)
    s.add_click(px(second))
    assert np.array_equal(m3, s.add_click(px(third)).mask)


def test_auto_accept_clicks_on_the_same_object_refine_one_region(client, pair, predictor):
    """A further lone click on the object (on or next to its mask) refines the same session,
    and the answer keeps the region id, so Label Studio updates that region in place instead
    of adding a copy per click."""
    path, img, a, _ = pair
    clicks = [click(*A_CENTRE), click(A_CENTRE[0] - 10, A_CENTRE[1] + 8),
              click(A_CENTRE[0] + 14, A_CENTRE[1] - 6)]
    got = [ask(client, path, [c], "31.2") for c in clicks]
    assert len({rid for _, rid in got}) == 1
    s = predictor.session(img)
    for (mask, _), c in zip(got, clicks, strict=True):
        assert np.array_equal(mask, s.add_click(px(c)).mask)


def test_auto_accept_off_accumulated_clicks_keep_one_region(client, pair, predictor):
    path, img, _, _ = pair
    clicks = [click(*A_CENTRE), click(A_CENTRE[0] - 10, A_CENTRE[1] + 8),
              click(A_CENTRE[0], A_CENTRE[1] - 70, positive=False)]
    got = [ask(client, path, clicks[:n], "31.3") for n in range(1, 4)]
    assert len({rid for _, rid in got}) == 1
    s = predictor.session(img)
    for (mask, _), c in zip(got, clicks, strict=True):
        assert np.array_equal(mask, s.add_click(px(c)).mask)


@pytest.mark.parametrize("where", ["other object", "same object"])
def test_auto_accept_off_after_accept_or_reject_the_next_click_starts_afresh(
        client, pair, predictor, where):
    """Auto-Accept off: ✓ and ✗ remove the keypoints, so a context without the session's
    clicks (which had come back before) starts a new session, wherever the click is: after ✗
    a click on the same object starts over instead of refining the rejected mask."""
    path, img, a, b = pair
    project = f"31.4.{where.split()[0]}"
    a1, a2 = click(*A_CENTRE), click(A_CENTRE[0] - 10, A_CENTRE[1] + 8)
    _, r1 = ask(client, path, [a1], project)
    _, r2 = ask(client, path, [a1, a2], project)
    assert r1 == r2
    nxt = click(*B_CENTRE) if where == "other object" else click(A_CENTRE[0] + 5, A_CENTRE[1])
    m3, r3 = ask(client, path, [nxt], project)
    assert r3 != r1
    assert np.array_equal(m3, predictor.predict(img, [px(nxt)]).mask)
    if where == "other object":
        assert overlap(m3, a) < 0.25 and overlap(m3, b) > 0.9


def test_a_click_outside_the_sessions_box_starts_a_new_object(client, pair, predictor):
    """A box confines its session; a click outside it cannot be meant for that object."""
    path, img, a, b = pair
    y, x = A_CENTRE
    box = rectangle(100 * (x - 58) / W, 100 * (y - 58) / H, 100 * 114 / W, 100 * 114 / H, W, H)
    m1, r1 = ask(client, path, [box], "31.5")
    assert overlap(m1, a) > 0.9
    second = click(*B_CENTRE)
    m2, r2 = ask(client, path, [second], "31.5")
    assert r2 != r1
    assert np.array_equal(m2, predictor.predict(img, [px(second)]).mask)
    assert overlap(m2, b) > 0.9


def test_a_click_on_another_object_does_not_refine_the_tasks_region(client, pair, predictor):
    """The task already holds a region of the label (an accepted first object, a pre-label):
    a click on it refines it, a click on another object starts from nothing."""
    path, img, a, b = pair
    from tests.backend.ls import brush

    def with_region(task_id: int) -> dict:
        return task(path, task_id, drafts=[{"id": 5, "updated_at": "2026-12-05T01:00:00Z",
                                            "result": [brush(a)]}])

    on_b = click(*B_CENTRE)
    m, _ = ask(client, path, [on_b], "31.6", with_region(61))
    assert np.array_equal(m, predictor.predict(img, [px(on_b)]).mask)
    assert overlap(m, a) < 0.25 and overlap(m, b) > 0.9
    on_a = click(A_CENTRE[0] + 5, A_CENTRE[1] + 5)
    m, _ = ask(client, path, [on_a], "31.6", with_region(62))
    assert np.array_equal(m, predictor.predict(img, [px(on_a)], prior_mask=a).mask)


def test_telling_the_next_object_costs_no_network_run(make_app, pair, predictor):
    """The decision is geometric: each click runs the network once (CLICK runs), whatever it
    decides, plus at most the answer's score."""
    from backend.app import create_app
    from clicksmith.settings import load_settings
    from tests.backend.test_pipeline import SCORE, click_runs, counting

    counted, runner = counting(predictor)
    path, _, _, _ = pair
    app = create_app(load_settings(env={}, local_image_roots=str(Path(path).parent)),
                     predictor_loader=lambda s: counted)
    assert app.extensions["clicksmith"].model.wait(30)
    client = app.test_client()

    def runs(context: list[dict]) -> int:
        before = runner.runs
        ask(client, path, context, "31.7")
        return runner.runs - before

    one = click_runs(predictor)
    assert runs([click(*A_CENTRE)]) == one + SCORE
    assert runs([click(A_CENTRE[0] - 8, A_CENTRE[1] + 8)]) in (one, one + SCORE)  # on the mask
    assert runs([click(*B_CENTRE)]) == one + SCORE  # another object


def test_far_from_is_the_distance_from_the_masks_body_against_its_size():
    """Far: farther than 0.55 x sqrt(area) from the mask eroded by 0.1 x sqrt(area) (its body),
    so a thin leak towards the next object does not bring that object close."""
    from backend.pipeline import far_from

    mask = np.zeros((400, 600), bool)
    mask[100:200, 100:200] = True  # sqrt(area) 100: the body is 110..189, far is > 55 from it
    assert not far_from(mask, 150, 150)  # on it
    assert not far_from(mask, 150, 243)  # 54 px from the body's right edge (x 189)
    assert far_from(mask, 150, 247)  # 58 px
    leaky = mask.copy()
    leaky[148:153, 200:240] = True  # a 5 px leak along the row, 40 px long
    assert far_from(leaky, 150, 250)  # 10 px beyond the leak's tip, 61 px from the body
    long_leak = mask.copy()
    long_leak[149:152, 200:330] = True  # a leak reaching past the window: no body near the click
    assert far_from(long_leak, 150, 340)  # 10 px from the leak's tip, 150 px from the body
    pole = np.zeros((400, 600), bool)
    pole[100:300, 300:303] = True  # a thin object has no body: its plain distance decides
    assert not far_from(pole, 200, 315) and far_from(pole, 200, 330)
    small = np.zeros((400, 600), bool)
    small[10:14, 10:14] = True  # sqrt(area) 4: the 12 px margin decides
    assert not far_from(small, 12, 24) and far_from(small, 12, 30)
    big = np.zeros((3000, 4000), bool)
    big[500:2500, 500:2500] = True  # sqrt(area) 2000: body 700..2299, far > 1100 from it
    assert not far_from(big, 1500, 3380) and far_from(big, 1500, 3420)  # a strided window


def test_a_box_for_the_next_object_is_a_region_of_its_own(client, pair):
    """Drawing a box around the next object (the way for objects the model merges) must not
    reuse the last object's region: Label Studio would replace that region with this one."""
    path, _, a, b = pair
    _, r1 = ask(client, path, [click(*A_CENTRE)], "31.8")
    y, x = B_CENTRE
    box = rectangle(100 * (x - 56) / W, 100 * (y - 58) / H, 100 * 112 / W, 100 * 114 / H, W, H)
    m2, r2 = ask(client, path, [box], "31.8")
    assert r2 != r1
    assert overlap(m2, b) > 0.9 and overlap(m2, a) < 0.25


def test_polygons_of_a_session_keep_their_ids(client, pair):
    """With a PolygonLabels control each answer also holds the mask's polygons: their ids
    follow the session's region too, so auto-accepted refinements do not pile up polygons."""
    from tests.backend.ls import LABEL_CONFIG

    path, _, _, _ = pair
    config = LABEL_CONFIG.replace(
        "</View>",
        '<PolygonLabels name="poly" toName="image"><Label value="Object"/></PolygonLabels></View>')

    def ids(context: list[dict]) -> tuple[str, list[str]]:
        body = predict_body(path, context, project="31.9", config=config)
        r = client.post("/predict", json=body)
        assert r.status_code == 200, r.json
        items = r.json["results"][0]["result"]
        brush_id = next(i["id"] for i in items if i["type"] == "brushlabels")
        return brush_id, [i["id"] for i in items if i["type"] == "polygonlabels"]

    b1, p1 = ids([click(*A_CENTRE)])
    b2, p2 = ids([click(A_CENTRE[0] - 10, A_CENTRE[1] + 8)])
    assert b1 == b2 and p1 and p1[0] == p2[0] == f"{b1}_0"
    b3, p3 = ids([click(*B_CENTRE)])
    assert b3 != b1 and p3[0] == f"{b3}_0"


def test_auto_accept_a_click_a_little_away_from_the_mask_still_refines(client, pair, predictor):
    """A lone positive click beyond the 2% edge margin but near the object's body (a missed
    part, not another object) refines the same session and region."""
    path, img, _, _ = pair
    first = click(*A_CENTRE)
    m1, r1 = ask(client, path, [first], "31.10")
    y = A_CENTRE[0]
    x = int(np.nonzero(m1[y])[0].min()) - 14  # 14 px left of the mask (the margin is 6.4)
    second = click(y, x)
    m2, r2 = ask(client, path, [second], "31.10")
    assert r2 == r1
    s = predictor.session(img)
    s.add_click(px(first))
    assert np.array_equal(m2, s.add_click(px(second)).mask)


def test_telemetry_counts_a_next_objects_clicks_as_clicks():
    """The pipeline's `next` kind (a new object's first request) counts its clicks, no tool
    action, as `new` does."""
    from clicksmith.telemetry import Interaction, ObjectKey

    key = ObjectKey("image", "mask", "Object")
    assert Interaction(1, 2, key, "next", "v", clicks=1).counts() == (1, 0)
    assert Interaction(1, 2, key, "next", "v", clicks=2).counts() == (2, 0)
