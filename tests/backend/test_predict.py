"""/predict with Label Studio-shaped interactive payloads, against the real predictor.

The backend must hand the predictor exactly the clicks, box and prior the annotator gave (percent
→ pixels, negative flags, strokes decoded), and keep the session so that later requests continue
it: each test compares the HTTP answer with the same interaction run in-process.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from backend.packing import unpack_mask
from backend.sessions import session_key
from cdnet import Click
from clicksmith.labelstudio.results import rle_to_mask
from tests.backend.ls import LABEL_CONFIG, brush, keypoint, predict_body, rectangle, task

H, W = 72, 96


def px(x_pct: float, y_pct: float, positive: bool = True) -> Click:
    return Click(y_pct * H / 100, x_pct * W / 100, positive)


def answer(client, body: dict) -> tuple[dict, np.ndarray]:
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.json
    results = r.json["results"]
    assert len(results) == 1
    items = [i for i in results[0]["result"] if i["type"] == "brushlabels"]
    assert len(items) == 1
    item = items[0]
    mask = rle_to_mask(item["value"]["rle"], item["original_height"], item["original_width"])
    return results[0], mask


def record(app, project: str, task_id: int = 1, label: str = "Object"):
    """The stored session of (project, task, image, mask control, label)."""
    store = app.extensions["clicksmith"].sessions
    return store.get(session_key(project, task_id, "image", "mask", label))


def session_masks(predictor, image, clicks, prior=None, box=None) -> list[np.ndarray]:
    s = predictor.session(image, prior_mask=prior, box=box)
    return [s.add_click(c).mask.copy() for c in clicks]


def test_positive_click_answer_shape_and_mask(client, disk, predictor):
    path, img = disk
    result, mask = answer(client, predict_body(path, [keypoint(50, 50, W, H)]))
    item = result["result"][0]
    assert item["from_name"] == "mask" and item["to_name"] == "image"
    assert item["value"]["brushlabels"] == ["Object"]
    assert (item["original_width"], item["original_height"]) == (W, H)
    assert result["model_version"] == predictor.model_version
    expected = predictor.predict(img, [px(50, 50)])
    assert np.array_equal(mask, expected.mask)
    # the score is score_mask of the returned mask (clicksmith.prelabel.mask_score's rule)
    assert result["score"] == pytest.approx(predictor.score_mask(img, expected.mask), abs=1e-6)
    # the RLE is what Label Studio's own decoder reads: 4 channels, alpha 255 inside
    rgba = decode_rle(item["value"]["rle"]).reshape(H, W, 4)
    assert set(np.unique(rgba[:, :, 3])) <= {0, 255}
    assert np.array_equal(rgba[:, :, 3] == 255, mask)


def test_negative_click_is_negative(make_app, disk, predictor):
    app = make_app()
    client = app.test_client()
    path, img = disk
    project = "11.1"
    answer(client, predict_body(path, [keypoint(50, 50, W, H)], project=project))
    ctx = [keypoint(50, 50, W, H), keypoint(55, 52, W, H, positive=False)]
    _, mask = answer(client, predict_body(path, ctx, project=project))
    neg = session_masks(predictor, img, [px(50, 50), px(55, 52, False)])[-1]
    assert np.array_equal(mask, neg)
    clicks = record(app, project).clicks
    assert [c.positive for c in clicks] == [True, False]
    assert clicks[1].x == pytest.approx(55 * W / 100) and clicks[1].y == pytest.approx(
        52 * H / 100)


def test_missing_is_positive_means_positive(client, disk, predictor):
    path, img = disk
    _, mask = answer(client, predict_body(path, [keypoint(30, 40, W, H, positive=None)]))
    assert np.array_equal(mask, predictor.predict(img, [px(30, 40)]).mask)


def test_accumulated_clicks_extend_the_session(make_app, disk, predictor):
    app = make_app()
    client = app.test_client()
    path, img = disk
    pts = [(50, 50, True), (62, 40, True), (20, 20, False)]
    got = []
    for n in range(1, len(pts) + 1):
        ctx = [keypoint(x, y, W, H, positive=p) for x, y, p in pts[:n]]
        got.append(answer(client, predict_body(path, ctx, project="12.1"))[1])
    want = session_masks(predictor, img, [px(x, y, p) for x, y, p in pts])
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)
    text = client.get("/metrics").data.decode()
    assert 'clicksmith_interactions_total{kind="extend"' in text
    # one new click per request: progressive, never a replay of the earlier ones
    assert re.search(r"^clicksmith_clicks_run_total\{[^}]*\} 3$", text, re.M)
    # one image cached, its bytes counted (the RGB pixels at least)
    assert re.search(r"^clicksmith_image_cache_images\{[^}]*\} 1$", text, re.M)
    cached = re.search(r"^clicksmith_image_cache_bytes\{[^}]*\} (\d+)$", text, re.M)
    assert cached and int(cached.group(1)) >= H * W * 3


def test_auto_accept_single_clicks_continue_the_session(client, disk, predictor):
    path, img = disk
    pts = [(50, 50, True), (62, 40, True), (20, 20, False)]
    got = [answer(client, predict_body(path, [keypoint(x, y, W, H, positive=p)],
                                       project="13.1"))[1] for x, y, p in pts]
    want = session_masks(predictor, img, [px(x, y, p) for x, y, p in pts])
    assert np.array_equal(got[-1], want[-1])
    assert np.array_equal(got[1], want[1])


def test_deleted_click_recomputes_from_the_rest(client, disk, predictor):
    path, img = disk
    a, b, c = keypoint(50, 50, W, H), keypoint(62, 40, W, H), keypoint(20, 20, W, H, False)
    answer(client, predict_body(path, [a], project="14.1"))
    answer(client, predict_body(path, [a, b], project="14.1"))
    answer(client, predict_body(path, [a, b, c], project="14.1"))
    _, mask = answer(client, predict_body(path, [a, c], project="14.1"))
    want = session_masks(predictor, img, [px(50, 50), px(20, 20, False)])[-1]
    assert np.array_equal(mask, want)


def test_box_prompt_limits_the_mask(client, disk, predictor):
    path, img = disk
    box_pct = (25.0, 20.0, 50.0, 60.0)  # x, y, width, height
    _, mask = answer(client, predict_body(path, [rectangle(*box_pct, W, H)]))
    y0, x0 = box_pct[1] * H / 100, box_pct[0] * W / 100
    y1, x1 = y0 + box_pct[3] * H / 100, x0 + box_pct[2] * W / 100
    outside = np.ones((H, W), bool)
    outside[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = False
    assert not mask[outside].any()
    assert np.array_equal(mask, predictor.predict(img, [], box=(y0, x0, y1, x1)).mask)


def test_click_after_box_stays_inside_the_box(client, disk, predictor):
    path, img = disk
    box_pct = (25.0, 20.0, 50.0, 60.0)
    answer(client, predict_body(path, [rectangle(*box_pct, W, H)], project="15.1"))
    # a keypoint request carries no rectangle: the session keeps the box
    _, mask = answer(client, predict_body(path, [keypoint(45, 45, W, H)], project="15.1"))
    y0, x0, y1, x1 = 20 * H / 100, 25 * W / 100, 80 * H / 100, 75 * W / 100
    box = (y0, x0, y1, x1)
    s = predictor.session(img, box=box)
    s.add_click(Click((y0 + y1) / 2, (x0 + x1) / 2))
    want = s.add_click(px(45, 45)).mask
    assert np.array_equal(mask, want)


def square(top: int, left: int, size: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[top:top + size, left:left + size] = True
    return m


def test_brush_stroke_is_the_prior_and_eraser_removes(client, disk, predictor):
    path, img = disk
    stroke = square(20, 30, 24)
    result, mask = answer(client, predict_body(path, [brush(stroke)], project="16.1"))
    assert np.array_equal(mask, stroke)  # no clicks: the answer is the annotator's own mask
    assert 0.0 <= result["score"] <= 1.0
    eraser = square(20, 30, 8)
    _, mask = answer(client, predict_body(path, [brush(stroke), brush(eraser, positive=False)],
                                          project="16.1"))
    assert np.array_equal(mask, stroke & ~eraser)
    # a click now refines that mask; the painted and erased pixels are locked (backend.tools):
    # the click cannot undo them
    _, mask = answer(client, predict_body(path, [keypoint(80, 80, W, H)], project="16.1"))
    plain = predictor.session(img, prior_mask=stroke & ~eraser).add_click(px(80, 80)).mask
    assert np.array_equal(mask, (plain | (stroke & ~eraser)) & ~eraser)


def test_newest_brush_region_of_the_task_seeds_the_prior(make_app, disk, predictor):
    app = make_app()
    client = app.test_client()
    path, img = disk
    old, new = square(5, 5, 10), square(20, 30, 24)
    other_label = brush(square(40, 60, 20), label="Background")
    the_task = task(path, 21)
    the_task["annotations"] = [{"id": 1, "updated_at": "2026-11-25T10:00:00Z",
                                "result": [brush(old)]}]
    the_task["drafts"] = [{"id": 2, "updated_at": "2026-11-25T11:00:00Z",
                           "result": [brush(new), other_label]}]
    # a click on that region (a click on another object starts afresh: test_instances.py)
    body = predict_body(path, [keypoint(50, 50, W, H)], the_task=the_task, project="21.1")
    _, mask = answer(client, body)
    want = predictor.session(img, prior_mask=new).add_click(px(50, 50)).mask
    assert np.array_equal(mask, want)
    assert np.array_equal(unpack_mask(record(app, "21.1", 21).base), new)


def test_polygon_output_when_the_config_has_polygonlabels(client, disk):
    path, _ = disk
    config = LABEL_CONFIG.replace(
        "</View>",
        '<PolygonLabels name="poly" toName="image"><Label value="Object"/></PolygonLabels></View>',
    )
    stroke = square(18, 24, 30)
    r = client.post("/predict", json=predict_body(path, [brush(stroke)], config=config))
    assert r.status_code == 200, r.json
    items = r.json["results"][0]["result"]
    polys = [i for i in items if i["type"] == "polygonlabels"]
    assert len(polys) == 1 and polys[0]["from_name"] == "poly"
    pts = np.array(polys[0]["value"]["points"])
    assert polys[0]["value"]["polygonlabels"] == ["Object"]
    xs, ys = pts[:, 0] * W / 100, pts[:, 1] * H / 100
    assert len(pts) == 4  # a square simplifies to its corners
    assert xs.min() == pytest.approx(24) and xs.max() == pytest.approx(24 + 29)
    assert ys.min() == pytest.approx(18) and ys.max() == pytest.approx(18 + 29)


def test_several_images_by_name(client, disk, tmp_path, predictor):
    path, img = disk
    small = img[:40, :50].copy()
    small_path = tmp_path / "small.png"
    import cv2

    cv2.imwrite(str(small_path), small[:, :, ::-1])
    config = """<View>
      <Image name="left" value="$a"/><Image name="right" value="$b"/>
      <BrushLabels name="lmask" toName="left"><Label value="Cat"/></BrushLabels>
      <BrushLabels name="rmask" toName="right"><Label value="Dog"/></BrushLabels>
      <KeyPointLabels name="lkp" toName="left" smart="true"><Label value="Cat"/></KeyPointLabels>
      <KeyPointLabels name="rkp" toName="right" smart="true"><Label value="Dog"/></KeyPointLabels>
    </View>"""
    the_task = {"id": 5, "data": {"a": path, "b": str(small_path)}, "annotations": [],
                "drafts": [], "predictions": []}
    ctx = [keypoint(50, 50, 50, 40, label="Dog", from_name="rkp", to_name="right")]
    body = predict_body(path, ctx, config=config, the_task=the_task)
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.json
    item = r.json["results"][0]["result"][0]
    assert (item["from_name"], item["to_name"]) == ("rmask", "right")
    assert (item["original_width"], item["original_height"]) == (50, 40)
    mask = rle_to_mask(item["value"]["rle"], 40, 50)
    assert np.array_equal(mask, predictor.predict(small, [Click(20, 25)]).mask)
    # the label of the other image's controls is refused on this one
    ctx = [keypoint(50, 50, 50, 40, label="Cat", from_name="rkp", to_name="right")]
    r = client.post("/predict", json=predict_body(path, ctx, config=config, the_task=the_task))
    assert r.status_code == 400 and "Cat" in r.json["error"]


def test_click_on_a_grabcut_photo(make_app, predictor):
    from tests.backend.ls import SHARED

    folder = SHARED / "datasets" / "grabcut"
    if not folder.is_dir():
        pytest.skip(f"GrabCut dataset not found at {folder} (needs ../shared)")
    client = make_app(local_image_roots=str(folder / "images")).test_client()
    import cv2

    image_path = sorted((folder / "images").iterdir())[0]
    gt = cv2.imread(str(folder / "masks" / f"{image_path.stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
    img = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
    h, w = gt.shape
    ys, xs = np.nonzero(gt)
    y, x = float(np.median(ys)), float(np.median(xs))
    ctx = [keypoint(100 * x / w, 100 * y / h, w, h)]
    _, mask = answer(client, predict_body(str(image_path), ctx))
    assert mask.shape == (h, w)
    assert np.array_equal(mask, predictor.predict(img, [Click(y, x)]).mask)


def test_deleted_click_after_a_box_recomputes_inside_the_box(client, disk, predictor):
    path, img = disk
    answer(client, predict_body(path, [rectangle(25.0, 20.0, 50.0, 60.0, W, H)], project="17.1"))
    a, b = keypoint(45, 45, W, H), keypoint(60, 60, W, H, positive=False)
    answer(client, predict_body(path, [a], project="17.1"))
    answer(client, predict_body(path, [a, b], project="17.1"))
    _, mask = answer(client, predict_body(path, [b], project="17.1"))  # `a` deleted
    y0, x0, y1, x1 = 20 * H / 100, 25 * W / 100, 80 * H / 100, 75 * W / 100
    s = predictor.session(img, box=(y0, x0, y1, x1))
    s.add_click(Click((y0 + y1) / 2, (x0 + x1) / 2))  # the box's implied centre click
    want = s.add_click(px(60, 60, False)).mask
    assert np.array_equal(mask, want)
