"""Long sessions stay fast (issue 31): a task holding many regions costs a click no more work.

Label Studio sends every draft, annotation and prediction of the task with each interactive
/predict (about 1 MB at 100 masks). Before this change every click decoded the newest brush
region again (10-25 ms at 1024x1024, the SDK's pure-Python decoder) and parsed the body with the
standard JSON parser (38 ms a MB on this machine). These tests count work, never time it:
decodes per session, and which parser read the body.
"""

from __future__ import annotations

import codecs
import json

import numpy as np
import pytest

from backend.lazy_rle import parse_predict
from backend.region_cache import RegionMasks, region_key
from backend.routes import parse_json
from clicksmith.labelstudio.results import RleText
from tests.backend.ls import brush, keypoint, predict_body, task

H, W = 72, 96


def blob(i: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    y, x = 8 + (i * 7) % (H - 20), 8 + (i * 13) % (W - 20)
    m[y:y + 6 + i % 9, x:x + 5 + i % 11] = True
    return m


def crowded_task(path: str, n: int = 100, task_id: int = 1) -> dict:
    """A task holding `n` brush regions as Label Studio expands them: predictions (oldest), two
    annotations, the annotator's draft (newest); its last region, an "Object" over the disk,
    is the newest region of the label."""
    items = [brush(blob(i), "Object" if i % 4 else "Background") for i in range(1, n)]
    newest = np.zeros((H, W), bool)
    newest[24:48, 36:60] = True
    items.append(brush(newest))
    a, b = n // 5, 3 * n // 5
    return task(
        path, task_id,
        predictions=[{"id": 3, "result": items[:a], "model_version": "v0", "score": 0.5,
                      "created_at": "2026-12-01T10:00:00.000000Z"}],
        annotations=[{"id": 4, "result": items[a:a + (b - a) // 2], "was_cancelled": False,
                      "created_at": "2026-12-01T11:00:00.000000Z",
                      "updated_at": "2026-12-01T11:30:00.000000Z"},
                     {"id": 5, "result": items[a + (b - a) // 2:b], "was_cancelled": False,
                      "created_at": "2026-12-01T11:10:00.000000Z"}],
        drafts=[{"id": 6, "result": items[b:], "created_at": "2026-12-01T12:00:00.000000Z",
                 "updated_at": "2026-12-01T12:03:00.123456Z", "annotation": None}],
    )


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """The number of values of each brush RLE decoded (the SDK's decoder, spied)."""
    from clicksmith.labelstudio import results

    seen: list[int] = []
    real = results.decode_rle

    def spy(rle, *args):
        seen.append(len(rle))
        return real(rle, *args)

    monkeypatch.setattr(results, "decode_rle", spy)
    return seen


CLICKS = [(50.0, 50.0, True), (20.0, 30.0, False), (55.0, 45.0, True), (80.0, 70.0, False)]


def clicks_on(client, the_task: dict, path: str, project: str) -> list[list[int]]:
    """The four clicks of one interaction (each request holds the clicks so far, as Label
    Studio sends them with auto-accept off): each answer's RLE."""
    answers = []
    for n in range(1, len(CLICKS) + 1):
        context = [keypoint(x, y, W, H, positive=p) for x, y, p in CLICKS[:n]]
        for i, item in enumerate(context):
            item["id"] = f"k{i}"  # the same click keeps its id across requests
        body = predict_body(path, context, project=project, the_task=the_task)
        r = client.post("/predict", data=json.dumps(body), content_type="application/json")
        assert r.status_code == 200, r.json
        answers.append(r.json["results"][0]["result"][0]["value"]["rle"])
    return answers


def test_a_task_of_100_regions_decodes_one_region_once_per_interaction(make_app, disk, decodes):
    """Before: each of the four clicks decoded the newest region again (4 decodes); the 99
    older regions were never decoded, then as now."""
    path, _ = disk
    app = make_app()
    answers = clicks_on(app.test_client(), crowded_task(path), path, "1.1")
    assert len(decodes) == 1, decodes
    assert app.extensions["clicksmith"].regions.hits == 3
    # the answers are those of a backend that keeps nothing (it decodes on every click)
    plain = make_app()
    plain.extensions["clicksmith"].regions = RegionMasks(max_entries=0)
    assert clicks_on(plain.test_client(), crowded_task(path), path, "1.1") == answers
    assert len(decodes) == 1 + 4


def test_an_edited_region_is_decoded_afresh_and_adopted(make_app, disk, decodes):
    """The key is the region's content: the annotator's edit of the newest region (same id,
    new RLE) is decoded and becomes the mask; the unchanged region is not decoded again."""
    path, _ = disk
    app = make_app()
    client = app.test_client()
    crowded = crowded_task(path)
    clicks_on(client, crowded, path, "1.1")
    assert len(decodes) == 1
    edited = np.zeros((H, W), bool)
    edited[20:50, 4:70] = True  # the disk's object widened by hand: no click would give it
    newest = crowded["drafts"][0]["result"][-1]
    newest["value"]["rle"] = brush(edited)["value"]["rle"]
    context = [keypoint(x, y, W, H, positive=p) for x, y, p in CLICKS + [(52, 48, True)]]
    for i, item in enumerate(context):
        item["id"] = f"k{i}"
    body = predict_body(path, context, project="1.1", the_task=crowded)
    r = client.post("/predict", data=json.dumps(body), content_type="application/json")
    assert r.status_code == 200, r.json
    assert len(decodes) == 2
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'clicksmith_interactions_total{kind="adopt"' in metrics


def test_the_region_cache_is_bounded_copies_and_never_keeps_a_bad_region():
    masks = [blob(i) for i in range(1, 5)]
    items = [brush(m) for m in masks]
    cache = RegionMasks(max_entries=2)
    for item, mask in zip(items[:3], masks[:3], strict=True):
        assert np.array_equal(cache.decode(item), mask)
    assert len(cache) == 2 and cache.decoded == 3
    cache.decode(items[0])  # the oldest went out: decoded again
    assert cache.decoded == 4 and cache.hits == 0
    got = cache.decode(items[0])  # now kept
    assert cache.hits == 1
    got[:] = True  # a caller's change does not reach the kept mask
    assert np.array_equal(cache.decode(items[0]), masks[0])
    by_bytes = RegionMasks(max_bytes=2 * H * W)
    for item in items:
        by_bytes.decode(item)
    assert len(by_bytes) == 2 and by_bytes.nbytes == 2 * H * W
    bad = brush(masks[0])
    bad["value"]["rle"] = bad["value"]["rle"][:-40]  # truncated: does not decode
    for _ in range(2):
        with pytest.raises(ValueError):
            cache.decode(bad)
    assert region_key(bad) is not None and region_key(bad) not in cache._masks
    other_size = brush(masks[0])
    other_size["original_width"] = W + 1  # same RLE, another size: another key
    assert region_key(other_size) != region_key(items[0])
    with pytest.raises(ValueError):
        cache.decode(other_size)
    assert region_key({"value": {"rle": [True, 300]}}) is None


def test_the_predict_body_is_read_by_the_c_parser(make_app, disk, monkeypatch):
    """Before: Flask's get_json, the standard parser, read the ~1 MB body of every click."""
    path, _ = disk
    big: list[int] = []
    real = json.loads

    def spy(s, *args, **kwargs):
        if len(s) > 50_000:
            big.append(len(s))
        return real(s, *args, **kwargs)

    body = json.dumps(predict_body(path, [keypoint(50, 50, W, H)], the_task=crowded_task(path)))
    assert len(body) > 50_000
    monkeypatch.setattr(json, "loads", spy)
    r = make_app().test_client().post("/predict", data=body, content_type="application/json")
    assert r.status_code == 200, r.json
    assert big == []


def test_parse_json_reads_what_the_standard_parser_reads():
    assert parse_json(b'{"a": [1, 2.5, NaN, -Infinity, 123456789012345678901234567890]}') == {
        "a": [1, 2.5, pytest.approx(float("nan"), nan_ok=True), float("-inf"),
              123456789012345678901234567890]}
    assert parse_json(codecs.BOM_UTF8 + b'{"a": 1}') == {"a": 1}  # ujson refuses a BOM
    assert parse_json('{"a": "é"}'.encode("utf-16")) == {"a": "é"}
    for bad in (b"{not json", b"", b"[1,]", b'"\xff"', b"[1] x"):
        assert parse_json(bad) is None, bad


# --- the tasks' stored RLE is parsed only when decoded (backend/lazy_rle.py) ---------------
@pytest.fixture
def lazy_small(monkeypatch):
    """Every RLE array is long enough to be set aside (the test images' are short)."""
    monkeypatch.setattr("backend.lazy_rle.MIN_LAZY_BYTES", 0)


def _resolved(node):
    if isinstance(node, RleText):
        return node.values()
    if isinstance(node, dict):
        return {k: _resolved(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolved(v) for v in node]
    return node


def test_a_predict_body_reads_the_same_with_its_task_rle_left_as_text(disk, lazy_small):
    path, _ = disk
    stroke = brush(blob(3), positive=True)
    body = predict_body(path, [keypoint(50, 50, W, H), stroke], the_task=crowded_task(path))
    body["tasks"][0]["data"]["note"] = 'a text holding , "rle": [1, 2] and {"rle": [3]}'
    body["tasks"][0]["meta"] = {"rle": [1, -2, 3], "x": {"rle": [[1]], "y": "rle"}}
    raw = json.dumps(body).encode()
    got = parse_predict(raw, parse_json)
    assert _resolved(got) == parse_json(raw) == body
    regions = got["tasks"][0]["drafts"][0]["result"]
    assert all(type(r["value"]["rle"]) is RleText for r in regions)  # set aside
    assert type(got["tasks"][0]["meta"]["rle"]) is list  # a sign: parsed as usual
    context = got["params"]["context"]["result"]
    assert type(context[1]["value"]["rle"]) is list  # the context's strokes: lists at once
    # Retrieve Predictions (no context): everything parsed
    body["params"]["context"] = None
    raw = json.dumps(body).encode()
    got = parse_predict(raw, parse_json)
    assert got == body and all(type(r["value"]["rle"]) is list
                               for r in got["tasks"][0]["drafts"][0]["result"])
    # compact separators, as other writers send them
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert parse_predict(raw, parse_json) == body


def test_an_rle_array_that_is_not_json_skips_its_region_not_the_click(disk, lazy_small):
    """Parsed whole, `[1,,2]` in a stored region made the body invalid; set aside, it is a
    malformed stored region, skipped when decoded like any other."""
    path, _ = disk
    crowded = crowded_task(path, n=5)
    body = predict_body(path, [keypoint(50, 50, W, H)], the_task=crowded)
    raw = json.dumps(body).encode()
    newest = json.dumps(crowded["drafts"][0]["result"][-1]["value"]["rle"]).encode()
    broken = raw.replace(newest, b"[1,,2" + newest[1:], 1)
    assert parse_json(broken) is None
    got = parse_predict(broken, parse_json)
    item = got["tasks"][0]["drafts"][0]["result"][-1]
    with pytest.raises(ValueError, match="not a JSON list"):
        RegionMasks().decode(item)
    for bad in (b"{not json", b'{"tasks": [], "params": {"context": {"result": [{"value": '
                                b'{"rle": [1,,2]}}]}}}'):
        assert parse_predict(bad, parse_json) is None, bad  # outside the tasks: refused


def test_a_click_parses_only_the_rle_it_decodes(make_app, disk, lazy_small, monkeypatch):
    """The 100 regions' arrays stay text; the newest is parsed once, for its one decode; the
    answers are those of a backend that parses the body whole."""
    path, _ = disk
    parsed: list[int] = []
    real = RleText.values

    def spy(self):
        parsed.append(len(self.text))
        return real(self)

    monkeypatch.setattr(RleText, "values", spy)
    answers = clicks_on(make_app().test_client(), crowded_task(path), path, "1.1")
    assert len(parsed) == 1, parsed
    monkeypatch.setattr("backend.routes.parse_predict", lambda raw, parse: parse(raw))
    assert clicks_on(make_app().test_client(), crowded_task(path), path, "1.1") == answers
    assert len(parsed) == 1
