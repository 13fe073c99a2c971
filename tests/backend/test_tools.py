"""The auxiliary tools through /predict, Label Studio-shaped payloads (config/labeling-tools.xml).

Each test compares the HTTP answer with the same tool run in-process (cdnet.tools), and checks
that the session keeps every tool's edit: a later click must not bring back what a tool or the
Label Studio eraser removed.
"""

from __future__ import annotations

import numpy as np
import pytest

from cdnet import Click
from cdnet.tools import fill_path, lasso_path, refine_band, rings_to_mask, superpixels
from clicksmith.labelstudio.results import rle_to_mask
from tests.backend.ls import REPO, brush, keypoint, predict_body, task

H, W = 72, 96
TOOLS_CONFIG = (REPO / "config" / "labeling-tools.xml").read_text()


def body(path: str, context: list[dict], project: str, **kw) -> dict:
    return predict_body(path, context, project=project, config=TOOLS_CONFIG, **kw)


def answer(client, payload: dict) -> tuple[list[dict], np.ndarray]:
    r = client.post("/predict", json=payload)
    assert r.status_code == 200, r.json
    items = r.json["results"][0]["result"]
    masks = [i for i in items if i["type"] == "brushlabels"]
    assert len(masks) == 1 and masks[0]["from_name"] == "mask"
    return items, rle_to_mask(masks[0]["value"]["rle"], H, W)


def pct(y: float, x: float) -> tuple[float, float]:
    """Pixel (y, x) → Label Studio percent (x%, y%) landing exactly on that pixel."""
    return 100.0 * x / W, 100.0 * y / H


def sp_point(y: int, x: int, name: str = "superpixel", positive: bool = True) -> dict:
    return keypoint(*pct(y, x), W, H, positive=positive, from_name=name)


def test_superpixel_fill_adds_and_removes_the_superpixel(client, disk):
    path, img = disk
    labels = superpixels(img, 16)
    _, mask = answer(client, body(path, [sp_point(36, 48)], "31.1"))
    assert np.array_equal(mask, labels == labels[36, 48])
    other = (36, 20) if labels[36, 20] != labels[36, 48] else (10, 10)
    _, mask = answer(client, body(path, [sp_point(*other)], "31.1"))
    want = (labels == labels[36, 48]) | (labels == labels[other])
    assert np.array_equal(mask, want)
    _, mask = answer(client, body(path, [sp_point(36, 48, positive=False)], "31.1"))
    assert np.array_equal(mask, labels == labels[other])


def test_superpixels_are_started_when_the_image_is_first_clicked(make_app, disk):
    """A smart click on a new image starts its superpixels in the background, for every
    granularity the config's superpixel controls ask for; the later fill uses them."""
    path, img = disk
    app = make_app()
    backend = app.extensions["clicksmith"]
    client = app.test_client()
    click = keypoint(*pct(36, 48), W, H, from_name="click")
    answer(client, body(path, [click], "30.1"))
    (cached,) = backend.images._items.values()
    sizes = {key[1] for key in cached.tools if key[0] == "superpixels"}
    assert sizes == {16, 8}  # `superpixel` (the default size) and `superpixel_8`
    labels = superpixels(img, 8)
    _, mask = answer(client, body(path, [click, sp_point(10, 10, "superpixel_8")], "30.1"))
    region = labels == labels[10, 10]
    assert mask[region].all()
    assert isinstance(cached.tools[("superpixels", 8)], np.ndarray)  # resolved, kept


def test_superpixel_granularity_comes_from_the_control_name(client, disk):
    path, img = disk
    _, coarse = answer(client, body(path, [sp_point(36, 48)], "32.1"))
    _, fine = answer(client, body(path, [sp_point(36, 48, "superpixel_8")], "32.2"))
    labels = superpixels(img, 8)
    assert np.array_equal(fine, labels == labels[36, 48])
    assert 0 < fine.sum() < coarse.sum()


def test_a_context_still_holding_a_superpixel_point_applies_it_once(client, disk):
    path, _ = disk
    a, b = sp_point(36, 48), sp_point(36, 48, positive=False)
    answer(client, body(path, [a], "33.1"))
    _, mask = answer(client, body(path, [a, b], "33.1"))  # auto-accept off: a is sent again
    assert not mask.any()
    _, mask = answer(client, body(path, [a, b], "33.1"))
    assert not mask.any()  # a applied twice would have re-added the superpixel after b


def test_edge_lasso_shows_the_path_then_fills_the_closed_loop(client, disk):
    path, img = disk
    corners = [(14, 48), (36, 70), (58, 48), (36, 26)]  # around the disk (centre 36, 48, r 18)
    items = []
    for y, x in corners:
        items, mask = answer(client, body(path, [sp_point(y, x, "lasso")], "34.1"))
        assert not mask.any()  # an open lasso changes nothing yet
    preview = [i for i in items if i["type"] == "polygonlabels" and not i["value"]["closed"]]
    assert len(preview) == 1 and preview[0]["from_name"] == "poly"
    pts = np.array(preview[0]["value"]["points"])
    assert len(pts) >= 4 and pts[0] == pytest.approx(pct(14, 48), abs=1e-6)
    _, mask = answer(client, body(path, [sp_point(15, 49, "lasso")], "34.1"))  # near the start
    want = fill_path(lasso_path(img, corners, closed=True), (H, W))
    assert np.array_equal(mask, want)
    disk_mask = np.zeros((H, W), bool)
    yy, xx = np.ogrid[:H, :W]
    disk_mask[(yy - 36) ** 2 + (xx - 48) ** 2 <= 18**2] = True
    iou = (mask & disk_mask).sum() / (mask | disk_mask).sum()
    straight = fill_path(np.array(corners), (H, W))
    assert iou > 0.85 and iou > (straight & disk_mask).sum() / (straight | disk_mask).sum()


def test_refine_brush_changes_only_the_band(client, disk):
    path, img = disk
    coarse = np.zeros((H, W), bool)
    coarse[22:51, 34:63] = True  # a square where the disk is round
    answer(client, body(path, [brush(coarse)], "35.1"))
    band = np.zeros((H, W), bool)
    band[16:57, 28:42] = True  # the left edge of the square and the disk's left rim
    stroke = brush(band)
    stroke["from_name"] = "refine"
    _, mask = answer(client, body(path, [stroke], "35.1"))
    assert np.array_equal(mask[~band], coarse[~band])
    assert np.array_equal(mask, refine_band(img, coarse, band))
    assert not np.array_equal(mask, coarse)  # the square's corners in the band were cut


def test_polygons_keep_holes_and_parts(client, disk):
    path, _ = disk
    m = np.zeros((H, W), bool)
    m[10:60, 10:60] = True
    m[25:45, 25:45] = False  # a hole
    m[20:40, 70:90] = True  # a second part
    r = client.post("/predict", json=body(path, [brush(m)], "36.1"))
    assert r.status_code == 200, r.json
    polys = [i for i in r.json["results"][0]["result"] if i["type"] == "polygonlabels"]
    assert len(polys) == 2
    rings = [np.array(p["value"]["points"]) * [W / 100, H / 100] for p in polys]
    drawn = rings_to_mask(rings, (H, W))
    assert (drawn & m).sum() / (drawn | m).sum() >= 0.98
    assert not drawn[30:40, 30:40].any()  # the hole stays empty


def _disk() -> np.ndarray:
    m = np.zeros((H, W), bool)
    yy, xx = np.ogrid[:H, :W]
    m[(yy - 36) ** 2 + (xx - 48) ** 2 <= 18**2] = True
    return m


def _right_of(mask: np.ndarray, col: int = 56) -> np.ndarray:
    out = mask.copy()
    out[:, :col] = False
    return out


def _click_that_refills(predictor, img, prior, erased):
    """A click on the kept pixels for which plain progressive refinement (no locks) re-adds
    erased pixels: the situation the locks exist for, found rather than assumed."""
    ys, xs = np.nonzero(prior & ~erased)
    ey, ex = np.nonzero(erased)
    near = np.min(np.abs(xs[:, None] - ex[None, :]) + np.abs(ys[:, None] - ey[None, :]), axis=1)
    for k in np.argsort(near, kind="stable")[::3]:
        c = Click(float(ys[k]), float(xs[k]))
        if (predictor.session(img, prior_mask=prior & ~erased).add_click(c).mask & erased).any():
            return c
    raise AssertionError("no click re-adds the erased pixels with this model: the test cannot "
                         "tell locked from unlocked; change the test image")


def _start_with_disk(client, path: str, project: str) -> tuple[np.ndarray, np.ndarray]:
    """A session whose mask is the disk (a brush stroke), and the part of it to erase."""
    disk_mask = _disk()
    _, first = answer(client, body(path, [brush(disk_mask)], project))
    assert np.array_equal(first, disk_mask)
    return first, _right_of(first)


def test_label_studio_eraser_on_the_answer_is_the_new_prior(make_app, disk, predictor):
    """The annotator erases part of the answer with Label Studio's eraser (the edited region
    reaches the backend in the task's draft); a later click must not bring it back."""
    client = make_app().test_client()
    path, img = disk
    project = "37.1"
    first, erased = _start_with_disk(client, path, project)
    click = _click_that_refills(predictor, img, first, erased)
    the_task = task(path)
    the_task["drafts"] = [{"id": 9, "updated_at": "2026-11-25T12:00:00Z",
                           "result": [brush(first & ~erased)]}]
    ctx = [keypoint(*pct(click.y, click.x), W, H)]
    _, mask = answer(client, body(path, ctx, project, the_task=the_task))
    assert not (mask & erased).any()
    # and it is still the session's prior for the click after that
    ctx2 = ctx + [keypoint(*pct(20, 40), W, H)]
    _, mask = answer(client, body(path, ctx2, project, the_task=the_task))
    assert not (mask & erased).any()


def test_label_studio_eraser_survives_a_deleted_click(make_app, disk):
    """Deleting a click recomputes from the base prior: the erased pixels must be gone from it
    too (without adoption the recomputed mask holds them again, whatever the model)."""
    client = make_app().test_client()
    path, _ = disk
    project = "41.1"
    first, erased = _start_with_disk(client, path, project)
    c1, c2 = keypoint(*pct(36, 40), W, H), keypoint(*pct(60, 10), W, H, positive=False)
    answer(client, body(path, [c1], project))
    _, before = answer(client, body(path, [c1, c2], project))
    the_task = task(path)
    the_task["drafts"] = [{"id": 9, "updated_at": "2026-11-25T12:00:00Z",
                           "result": [brush(before & ~erased)]}]
    _, mask = answer(client, body(path, [c2], project, the_task=the_task))  # c1 deleted
    assert not (mask & erased).any()


def test_context_eraser_stroke_stays_erased_after_clicks(make_app, disk, predictor):
    client = make_app().test_client()
    path, img = disk
    project = "38.1"
    first, erased = _start_with_disk(client, path, project)
    click = _click_that_refills(predictor, img, first, erased)
    answer(client, body(path, [brush(erased, positive=False)], project))
    _, mask = answer(client, body(path, [keypoint(*pct(click.y, click.x), W, H)], project))
    assert not (mask & erased).any()


def test_a_click_on_an_erased_pixel_may_bring_it_back(make_app, disk, predictor):
    """The lock is not a wall: a positive click right on erased pixels frees them."""
    client = make_app().test_client()
    path, img = disk
    project = "39.1"
    first, erased = _start_with_disk(client, path, project)
    answer(client, body(path, [brush(erased, positive=False)], project))
    ys, xs = np.nonzero(erased)
    y, x = int(ys.mean()), int(xs.mean())
    _, mask = answer(client, body(path, [keypoint(*pct(y, x), W, H)], project))
    s = predictor.session(img, prior_mask=first & ~erased)
    want = s.add_click(Click(100.0 * y / H * H / 100, 100.0 * x / W * W / 100)).mask
    # inside the freed patch the backend answers as a lock-free predictor does (elsewhere other
    # locks may legitimately keep pixels the plain predictor would change)
    assert np.array_equal(mask[erased], want[erased])


def test_an_unedited_draft_of_the_answer_is_not_an_edit(make_app, disk, predictor):
    """A draft that merely saved an earlier answer must not roll the session back."""
    client = make_app().test_client()
    path, img = disk
    project = "40.1"
    _, first = answer(client, body(path, [sp_point(36, 48)], project))
    _, second = answer(client, body(path, [sp_point(36, 20)], project))
    the_task = task(path)
    the_task["drafts"] = [{"id": 9, "updated_at": "2026-11-25T12:00:00Z",
                           "result": [brush(first)]}]
    _, third = answer(client, body(path, [sp_point(10, 80)], project, the_task=the_task))
    assert (third & second).sum() == second.sum()


def test_erased_pixels_stay_erased_on_another_worker_through_redis(make_app, disk, predictor,
                                                                   redis_db, project_id):
    """The locks travel with the session in Redis: worker B honours worker A's eraser."""
    from tests.backend.conftest import REDIS_URL

    a = make_app(redis_url=REDIS_URL).test_client()
    b = make_app(redis_url=REDIS_URL).test_client()
    path, img = disk
    first, erased = _start_with_disk(a, path, project_id)
    click = _click_that_refills(predictor, img, first, erased)
    answer(a, body(path, [brush(erased, positive=False)], project_id))
    _, mask = answer(b, body(path, [keypoint(*pct(click.y, click.x), W, H)], project_id))
    assert not (mask & erased).any()
    keys = list(redis_db.scan_iter(f"clicksmith:session:{project_id}:*"))
    assert any(redis_db.hexists(k, "lock_off") for k in keys)
