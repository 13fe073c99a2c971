"""The backend's pure parts: config parsing, prompt conversion, masks, session stores."""

from __future__ import annotations

import time

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from backend.errors import ApiError
from backend.packing import pack_mask, unpack_mask
from backend.prompts import parse_context
from backend.sessions import MemorySessionStore, SessionRecord
from cdnet.clicks import Click
from clicksmith.labelstudio.config import ConfigError, parse_config
from clicksmith.labelstudio.results import mask_to_rle, rle_to_mask
from tests.backend.ls import LABEL_CONFIG, brush, keypoint, rectangle


def test_project_config_of_the_shipped_labeling_xml():
    config = parse_config(LABEL_CONFIG)
    (target,) = config.targets.values()
    assert target.name == "image" and target.value_key == "image"
    assert [b.name for b in target.brushes] == ["mask"]
    assert sorted(p.name for p in target.prompts) == ["box", "click"]
    assert target.brush_for("Background").name == "mask"
    assert target.brush_for("Car") is None


def test_config_errors_name_the_gap():
    with pytest.raises(ConfigError, match="BrushLabels"):
        parse_config('<View><Image name="i" value="$i"/></View>')
    with pytest.raises(ConfigError, match="empty"):
        parse_config("  ")


def test_context_percent_to_pixels_and_signs():
    config = parse_config(LABEL_CONFIG)
    ctx = {"result": [keypoint(50, 25, 200, 100), keypoint(100, 100, 200, 100, positive=False),
                      keypoint(0, 0, 200, 100, positive=None), rectangle(10, 20, 30, 40, 200, 100),
                      {"type": "choices", "value": {"choices": ["x"]}}]}
    (prompt,) = parse_context(ctx, config)
    clicks = prompt.clicks(100, 200)
    assert [(c.y, c.x, c.positive) for c in clicks] == [
        (25.0, 100.0, True), (99.5, 199.5, False), (0.0, 0.0, True)]
    assert prompt.box(100, 200) == pytest.approx((20.0, 20.0, 60.0, 80.0))


def test_context_groups_labels_separately():
    config = parse_config(LABEL_CONFIG)
    ctx = {"result": [keypoint(10, 10, 50, 50), keypoint(20, 20, 50, 50, label="Background")]}
    assert sorted(p.label for p in parse_context(ctx, config)) == ["Background", "Object"]


def test_context_refuses_malformed_regions():
    config = parse_config(LABEL_CONFIG)
    for bad in ({"result": "x"}, {"result": [1]}, {"result": [{"type": "keypointlabels"}]}, "x"):
        with pytest.raises(ApiError) as err:
            parse_context(bad, config)
        assert err.value.status == 400


def test_rle_round_trip_with_the_sdk_decoder():
    rng = np.random.default_rng(1)
    mask = rng.random((37, 53)) > 0.6
    rle = mask_to_rle(mask)
    assert np.array_equal(decode_rle(rle).reshape(37, 53, 4)[:, :, 3] == 255, mask)
    assert np.array_equal(rle_to_mask(rle, 37, 53), mask)
    with pytest.raises(ValueError, match="pixels"):
        rle_to_mask(rle, 53, 38)
    assert brush(mask)["value"]["rle"] == rle


def test_pack_unpack_mask():
    mask = np.random.default_rng(2).random((13, 29)) > 0.5
    assert np.array_equal(unpack_mask(pack_mask(mask)), mask)


def _record(tag: str) -> SessionRecord:
    return SessionRecord(tag, (4, 5), b"state-" + tag.encode(), clicks=[Click(1.0, 2.0, False)],
                         box=(0.0, 0.0, 4.0, 5.0), applied_strokes=["ab"])


def test_memory_sessions_expire_and_evict():
    store = MemorySessionStore(size=2, ttl=1)
    for tag in ("a", "b", "c"):
        store.put(tag, _record(tag))
    assert store.get("a") is None  # least recently used, evicted
    got = store.get("c")
    assert got == _record("c")
    time.sleep(1.1)
    assert store.get("b") is None and store.get("c") is None
