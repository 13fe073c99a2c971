"""Every input is bounded and every bad number is a 4xx naming the field, through the HTTP API.

Found by probing the running backend: integers beyond int64 raised TypeError (500), JSON
nested 1,000 levels raised RecursionError (500), 2,000 keypoints ran until the worker was
killed, a 5,000,000-value brush RLE was validated value by value before being refused, a
48 KB black PNG of 49 megapixels was accepted, the image cache counted images, not bytes, and
every webhook `action` string became a metric label. Each test below failed on that code (the
reason is given where it is not a plain 500 or a missing setting).
"""

from __future__ import annotations

import json
import random
import re
from concurrent.futures import Future

import numpy as np
import pytest
from PIL import Image

from backend.errors import ApiError
from backend.image_cache import CachedImage, ImageCache
from backend.metrics import Metrics
from cdnet.inference.image import PreparedImage
from clicksmith.settings import load_settings
from tests.backend.ls import REPO, brush, keypoint, predict_body, rectangle, task

H, W = 72, 96
TOOLS_CONFIG = (REPO / "config" / "labeling-tools.xml").read_text()


def post(client, path: str, body: object):
    """POST `body` as JSON text written by hand (NaN, Infinity and any integer allowed)."""
    return client.post(path, data=json.dumps(body), content_type="application/json")


def refused(response, status: int, *words: str) -> str:
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.is_json and response.json["status"] == status
    message = response.json["error"]
    for word in words:
        assert word.lower() in message.lower(), message
    assert len(message) < 400, message  # a refusal never echoes the input back in full
    return message


# --- numbers --------------------------------------------------------------------------------
HUGE = [10**20, -(10**30), 10**400, float("nan"), float("inf"), -float("inf"), True]


def _keypoint(field: str, value: object) -> dict:
    item = keypoint(50, 50, W, H)
    item["value"][field] = value
    return item


def _rectangle(field: str, value: object) -> dict:
    item = rectangle(10, 10, 30, 30, W, H)
    item["value"][field] = value
    return item


def _brush(field: str, value: object) -> dict:
    item = brush(np.ones((H, W), bool))
    item[field] = value
    return item


FIELDS = [(_keypoint, "x"), (_keypoint, "y"), (_rectangle, "x"), (_rectangle, "y"),
          (_rectangle, "width"), (_rectangle, "height"), (_brush, "original_width"),
          (_brush, "original_height")]


@pytest.mark.parametrize("value", HUGE, ids=["1e20", "-1e30", "1e400", "nan", "inf", "-inf",
                                             "true"])
@pytest.mark.parametrize("build,field", FIELDS,
                         ids=[f"{b.__name__[1:]}.{f}" for b, f in FIELDS])
def test_every_number_field_refuses_huge_and_non_finite_values(client, disk, build, field,
                                                                value):
    """Before: 10**20, -10**30 and 10**400 raised TypeError in np.isfinite (500)."""
    path, _ = disk
    r = post(client, "/predict", predict_body(path, [build(field, value)]))
    refused(r, 400, f"region 0 {field}")


def test_the_project_id_of_train_and_webhook_is_a_bounded_whole_number(client):
    """Before: Infinity raised OverflowError in int() (500); 10**30, true and 5,000 digits
    were accepted as project ids or raised ValueError past the int-digits limit."""
    bad = [10**30, float("inf"), float("nan"), True, "9" * 5000, 0, -3, "x.1", 2.5, None]
    for value in bad:
        refused(post(client, "/train", {"project": value}), 400, "project id")
        body = {"action": "START_TRAINING", "project": {"id": value}}
        refused(post(client, "/webhook", body), 400, "project id")
    for value in (12, "12.1795626672", 12.0, 2**63 - 1):
        r = post(client, "/train", {"project": value})
        assert r.status_code == 200 and r.json["status"] == "ignored", r.json  # no REDIS_URL


# --- JSON depth -----------------------------------------------------------------------------
DEEP_ARRAY = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


@pytest.mark.parametrize("endpoint", ["/predict", "/setup", "/webhook", "/train"])
@pytest.mark.parametrize("text", [DEEP_ARRAY, DEEP_OBJECT], ids=["arrays", "objects"])
def test_json_nested_1000_deep_is_400_on_every_endpoint(client, endpoint, text):
    """Before: RecursionError in the JSON parser (500)."""
    r = client.post(endpoint, data=text, content_type="application/json")
    refused(r, 400, "nested deeper than 64", "MAX_JSON_DEPTH")


def test_json_depth_counts_brackets_outside_strings_only(make_app):
    client = make_app(max_json_depth=3).test_client()
    ok = {"action": "PROJECT_UPDATED", "x": [[1]]}  # depth 3
    assert post(client, "/webhook", ok).json["status"] == "ignored"
    refused(post(client, "/webhook", {"action": "X", "x": [[[1]]]}), 400, "deeper than 3")
    # brackets and escaped quotes inside strings are text, not nesting
    text = '[[[[ \\" {{{{ \\\\'
    r = post(client, "/webhook", {"action": text, "note": '"' + "[" * 500})
    assert r.status_code == 200 and r.json["status"] == "ignored", r.json


def _depth_by_hand(raw: bytes, limit: int) -> bool:
    depth, i, in_string = 0, 0, False
    while i < len(raw):
        c = raw[i]
        if in_string:
            if c == 0x5C:
                i += 2
                continue
            in_string = c != 0x22
        elif c == 0x22:
            in_string = True
        elif c in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif c in b"]}":
            depth -= 1
        i += 1
    return False


def test_the_depth_scanner_agrees_with_a_char_by_char_scan_across_slice_edges():
    """The scanner works on slices; a string, an escape or a run of backslashes may cross a
    slice's edge. Random JSON-like texts (backslashes only inside strings, as in any JSON the
    parser would read that far) give the same answer as a plain scan, at every slice size."""
    from backend.routes import json_too_deep

    rng = random.Random(7)
    pieces = [b"[", b"{", b"]", b"}", b",", b":", b"1"]
    inside = [b"a", b"[", b"{", b"]", b'\\"', b"\\\\", b"\\n"]
    for _ in range(3000):
        parts = []
        for _ in range(rng.randint(0, 30)):
            if rng.random() < 0.3:
                parts.append(b'"' + b"".join(rng.choices(inside, k=rng.randint(0, 5))) + b'"')
            else:
                parts.append(rng.choice(pieces))
        if rng.random() < 0.2:  # an unterminated string at the end
            parts.append(b'"' + b'\\"' * rng.randint(0, 3) + rng.choice([b"", b"\\", b"[["]))
        raw = b"".join(parts)
        limit = rng.randint(0, 6)
        for chunk in (1, 2, 3, 7, 1 << 20):
            assert json_too_deep(raw, limit, chunk) == _depth_by_hand(raw, limit), (raw, chunk)


# --- counts ---------------------------------------------------------------------------------
@pytest.fixture
def no_interaction(monkeypatch):
    """The interaction pipeline, replaced by one that fails the test when it is reached."""

    def ran(*args, **kwargs):
        raise AssertionError("the interaction ran: the request was not refused first")

    monkeypatch.setattr("backend.service.run_interaction", ran)


def test_2000_keypoints_are_refused_before_any_click_runs(client, disk, no_interaction):
    """Before: all 2,000 clicks ran (the probe's worker was killed at 120 s)."""
    path, _ = disk
    context = [keypoint(10 + (i % 80), 10 + (i // 80) % 80, W, H) for i in range(2000)]
    refused(post(client, "/predict", predict_body(path, context)), 413, "2000 keypoints",
            "limit of 100", "MAX_CLICKS_PER_REQUEST")


def test_the_click_limit_counts_tool_points_and_admits_the_limit(make_app, disk):
    path, _ = disk
    client = make_app(max_clicks_per_request=3).test_client()
    clicks = [keypoint(40, 40, W, H), keypoint(60, 50, W, H)]
    fills = [keypoint(20, 20, W, H, from_name="superpixel"),
             keypoint(80, 70, W, H, from_name="superpixel_8")]
    r = post(client, "/predict", predict_body(path, clicks + fills[:1], config=TOOLS_CONFIG))
    assert r.status_code == 200, r.json
    r = post(client, "/predict", predict_body(path, clicks + fills, config=TOOLS_CONFIG))
    refused(r, 413, "4 keypoints", "MAX_CLICKS_PER_REQUEST")


def test_too_many_context_regions_are_refused(make_app, client, disk, no_interaction):
    """Before: any number of regions was read one by one (other types are skipped, so 1,001
    `choices` regions and a click reached the pipeline)."""
    path, _ = disk
    others = [{"type": "choices", "value": {"choices": ["a"]}, "from_name": "c",
               "to_name": "image"} for _ in range(1000)]
    r = post(client, "/predict", predict_body(path, [keypoint(50, 50, W, H)] + others))
    refused(r, 413, "1001 regions", "limit of 1000", "MAX_CONTEXT_REGIONS")
    small = make_app(max_context_regions=5).test_client()
    r = post(small, "/predict", predict_body(path, [keypoint(50, 50, W, H)] + others[:5]))
    refused(r, 413, "6 regions", "MAX_CONTEXT_REGIONS")


# --- brush RLE ------------------------------------------------------------------------------
@pytest.fixture
def decoding(monkeypatch) -> dict[str, list[int]]:
    """Lengths of the RLEs handed to the strict decoder by a context stroke ("strict") and to
    the SDK's bit decoder by anyone ("bits")."""
    import backend.prompts
    import clicksmith.labelstudio.results as results

    seen: dict[str, list[int]] = {"strict": [], "bits": []}
    strict, bits = results.rle_to_mask, results.decode_rle

    def strict_spy(rle, *args):
        seen["strict"].append(len(rle))
        return strict(rle, *args)

    def bits_spy(rle, *args):
        seen["bits"].append(len(rle))
        return bits(rle, *args)

    monkeypatch.setattr(backend.prompts, "rle_to_mask", strict_spy)
    monkeypatch.setattr(results, "decode_rle", bits_spy)
    return seen


def test_a_5_million_value_rle_is_refused_in_parsing_before_any_decoding(client, disk,
                                                                          decoding):
    """Before: the strict decoder checked all 5,000,000 values one by one, then the SDK decoded
    them (31 s in the probe) before the size mismatch refused the stroke."""
    path, _ = disk
    item = brush(np.ones((H, W), bool))
    item["value"]["rle"] = [0] * 5_000_000
    r = post(client, "/predict", predict_body(path, [item]))
    refused(r, 413, "5000000 values", "limit of 1000000", "MAX_RLE_VALUES")
    assert decoding == {"strict": [], "bits": []}


def _rle_claiming(count: int) -> list[int]:
    """A well-formed Label Studio RLE of `count` zero values (runs of 65,536)."""
    bits = f"{count:032b}" + f"{7:05b}" + "".join(f"{s - 1:04b}" for s in (3, 4, 8, 16))
    bits += ("1" + "11" + f"{65535:016b}" + "0" * 8) * (count // 65536)
    bits += "0" * (-len(bits) % 8)
    return list(int(bits, 2).to_bytes(len(bits) // 8, "big"))


def test_an_rle_whose_header_claims_another_size_is_never_decoded(client, disk, decoding):
    """A 55 KB RLE may claim 2**30 values: the SDK's decoder allocates and fills them (1 GB,
    2.5 s here) before the size is compared. Before: decoded, then refused; now the header's
    count is compared first, for a stroke in the context and for a region stored on the task."""
    from label_studio_sdk.converter.brush import decode_rle

    assert decode_rle(_rle_claiming(65536 * 3)).size == 65536 * 3  # the helper writes real RLE
    path, _ = disk
    bomb = _rle_claiming(1 << 30)
    assert len(bomb) < 60_000
    item = brush(np.ones((H, W), bool))
    item["value"]["rle"] = bomb
    refused(post(client, "/predict", predict_body(path, [item])), 400, "268435456 pixels",
            f"{H}x{W}")
    stored = task(path, annotations=[{"id": 1, "result": [item]}])
    r = post(client, "/predict", predict_body(path, [keypoint(50, 50, W, H)], the_task=stored))
    assert r.status_code == 200, r.json  # the stored region is skipped, the click answered
    assert len(bomb) in decoding["strict"] and len(bomb) not in decoding["bits"], decoding


# --- stored regions -------------------------------------------------------------------------
def test_malformed_regions_stored_on_the_task_are_skipped(client, disk):
    """The adapter's region readers (clicksmith/labelstudio/regions.py) skip these; this shows
    it through /predict: the answer is the plain click's. This test passes on the code before
    this change too (the adapter already skipped them): it guards that, at the HTTP level."""
    path, _ = disk
    click = [keypoint(50, 50, W, H)]
    plain = post(client, "/predict", predict_body(path, click, project="7.1"))
    assert plain.status_code == 200, plain.json
    want = plain.json["results"][0]["result"][0]["value"]["rle"]
    labels_5 = brush(np.ones((H, W), bool))
    labels_5["value"]["brushlabels"] = 5
    huge = brush(np.ones((H, W), bool))
    huge["original_width"] = 10**20
    no_rle = brush(np.ones((H, W), bool))
    no_rle["value"]["rle"] = 1
    junk = [
        {"annotations": [{"result": 1}]},
        {"drafts": [{"result": 1}]},
        {"annotations": [{"result": [labels_5]}]},
        {"drafts": [{"result": [huge, no_rle, 7, None]}]},
        {"annotations": 1, "drafts": [1, None, "x"], "predictions": {"result": []}},
    ]
    for n, extra in enumerate(junk):
        the_task = task(path, task_id=100 + n, **extra)
        r = post(client, "/predict", predict_body(path, click, project=f"8{n}.1",
                                                  the_task=the_task))
        assert r.status_code == 200, (extra, r.json)
        assert r.json["results"][0]["result"][0]["value"]["rle"] == want, extra


# --- images and the image cache -------------------------------------------------------------
def test_a_49_megapixel_black_png_is_refused_from_its_header(make_app, tmp_path):
    """Before: MAX_IMAGE_PIXELS was 50,000,000, so this 7000x7000 PNG was decoded (147 MB of
    RGB plus its pyramid, per distinct image, into an 8-image cache)."""
    image = tmp_path / "black.png"
    Image.new("1", (7000, 7000)).save(image)
    assert image.stat().st_size < 100_000
    client = make_app(local_image_roots=str(tmp_path)).test_client()
    r = post(client, "/predict", predict_body(str(image), [keypoint(50, 50, 7000, 7000)]))
    refused(r, 413, "7000x7000", "MAX_IMAGE_PIXELS")


def test_the_defaults_keep_12_mp_photos_and_fit_two_of_the_largest_in_the_cache():
    s = load_settings(env={})
    assert s.max_image_pixels >= 4000 * 3000
    # an image costs 4 bytes a pixel (RGB + pyramid) and 4 more per superpixel granularity
    assert 2 * 8 * s.max_image_pixels <= s.image_cache_bytes


def _black_pngs(folder, n: int, h: int, w: int) -> list[str]:
    paths = []
    for i in range(n):
        path = folder / f"black{i}.png"
        Image.new("L", (w, h), i).save(path)
        paths.append(str(path))
    return paths


def test_the_image_cache_stays_within_its_bytes(make_app, tmp_path):
    """Before: the cache held 8 images whatever their size (no IMAGE_CACHE_BYTES)."""
    h, w = 1500, 2000
    bound = 30_000_000  # two 3 MP images (12 MB each with the pyramid), not three
    app = make_app(local_image_roots=str(tmp_path), image_cache_bytes=bound)
    client, cache = app.test_client(), app.extensions["clicksmith"].images
    paths = _black_pngs(tmp_path, 4, h, w)
    for i, path in enumerate(paths):
        r = post(client, "/predict", predict_body(path, [keypoint(50, 50, w, h)],
                                                  task_id=i + 1))
        assert r.status_code == 200, r.json
        assert cache.nbytes <= bound
    assert list(cache._items) == paths[-2:]
    for item in cache._items.values():
        # RGB (3 bytes a pixel) and its pyramid (about one more) are counted
        assert 4 * h * w <= item.nbytes() < 4.2 * h * w
    assert cache.misses == 4 and cache.uncached == 0


def test_an_image_over_the_whole_cache_is_answered_but_not_kept(make_app, tmp_path):
    (path,) = _black_pngs(tmp_path, 1, 1000, 1000)
    app = make_app(local_image_roots=str(tmp_path), image_cache_bytes=1_000_000)
    r = post(app.test_client(), "/predict", predict_body(path, [keypoint(50, 50, 1000, 1000)]))
    assert r.status_code == 200, r.json
    cache = app.extensions["clicksmith"].images
    assert len(cache) == 0 and cache.uncached == 1


def test_superpixel_maps_count_while_computed_and_when_done():
    """Superpixels are computed in the background after the image is cached: a pending map
    counts as the int32 map it will be, a finished one as its array, and `trim` evicts for
    them."""
    rgb = np.zeros((100, 200, 3), np.uint8)
    item = CachedImage(PreparedImage(rgb), 100, 200)
    base = item.nbytes()
    assert base >= rgb.nbytes * 4 // 3
    pending: Future = Future()
    item.tools[("superpixels", 16)] = pending
    assert item.nbytes() == base + 100 * 200 * 4
    pending.set_result(np.zeros((100, 200), np.int32))
    assert item.nbytes() == base + 100 * 200 * 4
    cache = ImageCache(8, max_bytes=2 * base + 1000)
    older = CachedImage(PreparedImage(rgb.copy()), 100, 200)
    cache.get("a", lambda: older)
    cache.get("b", lambda: CachedImage(PreparedImage(rgb.copy()), 100, 200))
    assert len(cache) == 2
    cache.get("b", lambda: None).tools[("superpixels", 8)] = Future()  # a map on its way
    cache.trim()
    assert list(cache._items) == ["b"]  # the older one made room for the map


# --- metrics --------------------------------------------------------------------------------
def test_unknown_webhook_actions_are_one_other_label_and_metrics_stay_small(client):
    """Before: each action string became a label value: 100 actions of 10 KB made /metrics
    over 1 MB (the probe's 1 MB actions: 36-64 MB a scrape)."""
    for i in range(100):
        r = post(client, "/webhook", {"action": f"{i}" + "A" * 10_000})
        assert r.status_code == 200 and r.json["status"] == "ignored"
    assert post(client, "/webhook", {"action": "PROJECT_UPDATED"}).status_code == 200
    client.open("/health", method="X" * 5000)  # any token is an HTTP method
    text = client.get("/metrics").get_data(as_text=True)
    assert len(text) < 20_000
    webhooks = re.findall(r'^clicksmith_webhooks_total\{action="([^"]*)",.*\} (\d+)$', text,
                          re.M)
    assert sorted(webhooks) == [("PROJECT_UPDATED", "1"), ("other", "100")]
    assert 'method="other"' in text and "XXXX" not in text


def test_a_counter_keeps_a_bounded_number_of_label_sets():
    from backend.metrics import MAX_SERIES

    metrics = Metrics()
    for i in range(1000):
        metrics.inc("things", kind=f"kind-{i}")
    text = metrics.render("v1", "ready", {})
    series = [line for line in text.splitlines() if line.startswith("clicksmith_things_total")]
    assert len(series) == MAX_SERIES + 1
    assert any('kind="other"' in line and line.endswith(f" {1000 - MAX_SERIES}")
               for line in series)


def test_refusals_are_api_errors_naming_their_setting():
    """Every limit's refusal names the setting to raise (the message is what Label Studio
    shows the admin)."""
    from backend.prompts import ContextLimits, parse_context
    from clicksmith.labelstudio.config import parse_config

    config = parse_config((REPO / "config" / "labeling.xml").read_text())
    limits = ContextLimits(regions=2, clicks=1, rle_values=3, image_pixels=10)
    cases = [
        ([{"type": "choices"}] * 3, "MAX_CONTEXT_REGIONS"),
        ([keypoint(1, 1, W, H)] * 2, "MAX_CLICKS_PER_REQUEST"),
        ([brush(np.ones((2, 3), bool))], "MAX_RLE_VALUES"),
        ([brush(np.ones((2, 30), bool))], "MAX_IMAGE_PIXELS"),
    ]
    for context, setting in cases:
        with pytest.raises(ApiError) as info:
            parse_context({"result": context}, config, limits)
        assert setting in info.value.message and 400 <= info.value.status < 500
