"""clicksmith.labelstudio.regions: which stored region is the newest, for the backend's seed and
the workers' mask and box, on every case where the backend's and the workers' readers disagreed,
and malformed stored data never raising."""

from __future__ import annotations

import numpy as np
import pytest

from clicksmith.labelstudio.regions import (
    ALL_WORK,
    SUBMITTED,
    containers,
    merge_brush_regions,
    newest_box,
    newest_mask,
    newest_region_mask,
    stamp_time,
    task_regions,
)
from clicksmith.labelstudio.results import brush_item, mask_to_rle

H, W = 12, 16
T1, T2, T3 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"


def square(y0: int, x0: int, size: int = 3, shape=(H, W)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def brush(mask: np.ndarray, label: str = "A", control: str = "mask",
          image: str = "image") -> dict:
    return brush_item(mask, brush=control, image=image, label=label, score=1.0)


def rect(x: float, y: float, w: float, h: float, label: str = "A", **extra) -> dict:
    value = {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": [label], **extra}
    return {"type": "rectanglelabels", "from_name": "box", "to_name": "image",
            "original_width": 200, "original_height": 100, "value": value}


def entry(id_: int, stamp: str | None, *items: dict, **extra) -> dict:
    out = {"id": id_, "result": list(items), **extra}
    if stamp is not None:
        out["created_at"] = stamp
    return out


def seed(task: dict, label: str = "A") -> np.ndarray | None:
    return newest_region_mask(task, "mask", "image", label, H, W)


# --- the container order --------------------------------------------------------------------


def test_tie_between_annotation_and_prediction_goes_to_the_annotation():
    pred, ann = square(0, 0), square(5, 5)
    task = {"predictions": [entry(1, T2, brush(pred))], "annotations": [entry(2, T2, brush(ann))]}
    assert np.array_equal(seed(task), ann)
    found = newest_mask(task)
    assert found.origin == "annotation:2" and np.array_equal(found.mask, ann)
    # a newer prediction still beats an older annotation: newest work first
    task["predictions"][0]["created_at"] = T3
    assert np.array_equal(seed(task), pred)
    assert newest_mask(task).origin == "prediction:1"


def test_a_draft_is_the_newest_work_for_the_backend_only():
    ann, draft = square(0, 0), square(5, 5)
    task = {"annotations": [entry(1, T2, brush(ann))], "drafts": [entry(9, T2, brush(draft))]}
    assert np.array_equal(seed(task), draft)  # same time: the draft edits the annotation
    assert [c.origin for c in containers(task)] == ["draft:9", "annotation:1"]
    task["drafts"][0]["created_at"] = T1
    assert np.array_equal(seed(task), ann)  # an older draft is older work
    task["drafts"][0]["created_at"] = T3
    # the workers read submitted work only: a draft is one annotator's unfinished work
    assert newest_mask(task).origin == "annotation:1"
    assert newest_mask(task, kinds=ALL_WORK).origin == "draft:9"
    assert SUBMITTED == ("annotations", "predictions")


def test_cancelled_annotations_and_drafts_are_never_read():
    old, cancelled = square(0, 0), square(5, 5)
    task = {"annotations": [entry(1, T1, brush(old)),
                            entry(2, T3, brush(cancelled), rect(1, 1, 5, 5),
                                  was_cancelled=True)],
            "drafts": [entry(3, T3, brush(cancelled), was_cancelled=True)]}
    assert np.array_equal(seed(task), old)
    assert newest_mask(task).origin == "annotation:1"
    assert newest_box(task) is None  # the workers used to take a cancelled annotation's box


def test_updated_at_is_preferred_and_times_compare_as_instants():
    a, b = square(0, 0), square(5, 5)
    # as strings "...00Z" sorts after "...00.500000Z"; as instants it is older
    task = {"annotations": [entry(1, "2026-01-02T00:00:00Z", brush(a)),
                            entry(2, "2026-01-02T00:00:00.500000Z", brush(b))]}
    assert np.array_equal(seed(task), b)
    task["annotations"][0]["updated_at"] = "2026-01-02T01:00:00+01:00"  # = 00:00Z, still older
    assert np.array_equal(seed(task), b)
    task["annotations"][0]["updated_at"] = "2026-01-02T00:00:01"  # naive: UTC
    assert np.array_equal(seed(task), a)
    assert stamp_time(None) == stamp_time("garbage") == -np.inf
    assert stamp_time("2026-01-02T00:00:00Z") == stamp_time("2026-01-02T00:00:00+00:00")


def test_a_container_without_time_is_the_oldest():
    a, b = square(0, 0), square(5, 5)
    task = {"annotations": [entry(1, T1, brush(a)), entry(2, None, brush(b))]}
    assert np.array_equal(seed(task), a)


def test_the_later_container_and_the_later_region_win_ties():
    first, second, third = square(0, 0), square(4, 4), square(8, 8)
    task = {"annotations": [entry(1, T2, brush(first)), entry(2, T2, brush(second))]}
    assert np.array_equal(seed(task), second)
    assert newest_mask(task).origin == "annotation:2"  # the workers took the first one
    task = {"annotations": [entry(1, T2, brush(first), brush(second), brush(third, "B"))]}
    items = task_regions(task, "mask", "image", "A", H, W)
    assert np.array_equal(seed(task), second)
    assert len(items) == 2 and items[0]["value"]["rle"] == mask_to_rle(second)


# --- the backend's question: one control, Image, label and size ------------------------------


def test_task_regions_filters_control_image_label_and_size():
    good = square(2, 2)
    task = {"annotations": [entry(1, T1, brush(good)),
                            entry(2, T2, brush(square(5, 5), control="refine")),
                            entry(3, T2, brush(square(5, 5), image="other")),
                            entry(4, T2, brush(square(5, 5), label="B")),
                            entry(5, T3, brush(square(5, 5, shape=(H + 1, W))))]}
    (item,) = task_regions(task, "mask", "image", "A", H, W)
    assert item is task["annotations"][0]["result"][0]
    assert np.array_equal(seed(task), good)
    assert len(task_regions(task, "mask", "image", "A", H + 1, W)) == 1  # the other size's


def test_a_corrupt_newest_region_falls_back_to_the_next():
    older, newer = square(0, 0), brush(square(5, 5))
    newer["value"]["rle"] = [1, 2, 3]
    task = {"annotations": [entry(1, T1, brush(older)), entry(2, T2, newer)]}
    assert len(task_regions(task, "mask", "image", "A", H, W)) == 2
    assert np.array_equal(seed(task), older)
    assert newest_mask(task).origin == "annotation:1"


MALFORMED = [
    "not a task",
    {"annotations": [{"result": 1}]},
    {"annotations": "x", "predictions": 5, "drafts": {"a": 1}},
    {"annotations": [None, 3, "x", [1]]},
    {"annotations": [{"result": [None, 1, "x", [], {"type": "brushlabels"}]}]},
    {"annotations": [{"result": {"type": "brushlabels"}}]},
    {"annotations": [entry(1, T1, {**brush(square(1, 1)), "value": "rle"})]},
    {"annotations": [entry(1, T1, {**brush(square(1, 1)),
                                   "value": {"format": "rle", "rle": [1], "brushlabels": 5}})]},
    {"annotations": [entry(1, T1, {**brush(square(1, 1)),
                                   "value": {"format": "rle", "rle": "x", "brushlabels": ["A"]}})]},
    {"annotations": [entry(1, T1, {**brush(square(1, 1)), "original_width": "16"})]},
    {"annotations": [entry(1, T1, rect(1, 1, 5, 5, rotation=30), rect("a", 1, 5, 5),
                           rect(1, 1, 0, 5), {**rect(1, 1, 5, 5), "value": None},
                           {**rect(1, 1, 5, 5), "original_width": None},
                           {**rect(1, 1, 5, 5), "value": {"x": 1, "y": 1, "width": 5,
                                                          "height": float("nan")}})]},
]


@pytest.mark.parametrize("task", MALFORMED)
def test_malformed_stored_data_is_skipped_never_raised(task):
    regions = task_regions(task, "mask", "image", "A", H, W)
    assert len(regions) <= 1 and all(i["value"]["rle"] == "x" for i in regions)  # undecoded
    assert seed(task) is None
    assert newest_mask(task) is None
    assert newest_mask(task, kinds=ALL_WORK, size=(H, W)) is None
    assert newest_box(task) is None
    results = task.get("annotations") if isinstance(task, dict) else task
    for container in results if isinstance(results, list) else [results]:
        got = container.get("result") if isinstance(container, dict) else container
        assert merge_brush_regions(got) == []


def test_malformed_items_beside_a_good_one_leave_the_good_one():
    good = square(3, 3)
    task = {"annotations": [entry(1, T1, brush(good)),
                            entry(2, T2, None, 5, {"type": "brushlabels", "value": 5},
                                  {**brush(square(1, 1)), "value": {"rle": [1],
                                                                    "brushlabels": 5}})]}
    assert np.array_equal(seed(task), good)
    assert newest_mask(task).origin == "annotation:1"


# --- the workers' questions ------------------------------------------------------------------


def test_newest_mask_skips_a_model_version():
    mine, theirs = square(0, 0), square(5, 5)
    task = {"predictions": [entry(1, T1, brush(theirs), model_version="other"),
                            entry(2, T3, brush(mine), model_version="cdnet-1")]}
    assert newest_mask(task).origin == "prediction:2"
    found = newest_mask(task, skip_model_version="cdnet-1")
    assert found.origin == "prediction:1" and np.array_equal(found.mask, theirs)
    assert newest_mask(task, skip_model_version="other").origin == "prediction:2"
    assert newest_box({"predictions": [entry(1, T1, rect(1, 1, 5, 5), model_version="v")]},
                      skip_model_version="v") is None


def test_newest_mask_merges_the_last_regions_label():
    a1, a2, b = square(0, 0), square(6, 6), square(3, 10)
    task = {"annotations": [entry(1, T1, brush(a1), brush(b, "B"), brush(a2))]}
    found = newest_mask(task)
    assert found.label == "A" and np.array_equal(found.mask, a1 | a2)
    task = {"annotations": [entry(1, T1, brush(a1), brush(a2), brush(b, "B"))]}
    found = newest_mask(task)
    assert found.label == "B" and np.array_equal(found.mask, b)


def test_newest_mask_filters():
    mask, refine = square(0, 0), square(5, 5)
    task = {"annotations": [entry(1, T1, brush(mask)),
                            entry(2, T2, brush(refine, control="refine")),
                            entry(3, T3, brush(square(1, 1, shape=(5, 5))))]}
    assert newest_mask(task).origin == "annotation:3"  # no filter: any brush, any size
    assert newest_mask(task, size=(H, W)).origin == "annotation:2"
    found = newest_mask(task, control="mask", image="image", size=(H, W))
    assert found.origin == "annotation:1" and np.array_equal(found.mask, mask)
    assert newest_mask(task, control="mask", image="elsewhere") is None


def test_merge_brush_regions_per_label_in_order():
    a1, a2, b = square(0, 0), square(6, 6), square(3, 10)
    other_size = square(0, 0, shape=(5, 5))
    results = [brush(a1), brush(b, "B"), brush(other_size), brush(a2),
               {**brush(square(9, 9)), "value": {"format": "rle", "rle": mask_to_rle(
                   square(9, 9))}}]  # no label: ""
    merged = merge_brush_regions(results)
    assert [label for label, _ in merged] == ["A", "B", ""]
    got = dict(merged)
    assert np.array_equal(got["A"], a1 | a2)  # the 5x5 one is not this image's size
    assert np.array_equal(got["B"], b) and np.array_equal(got[""], square(9, 9))
    assert merge_brush_regions([brush(a1), brush(other_size)])[0][1].shape == (5, 5)
    assert [lb for lb, _ in merge_brush_regions(results, control="refine")] == []
    assert merge_brush_regions(None) == [] and merge_brush_regions("x") == []


def test_newest_box_in_pixels():
    task = {"annotations": [entry(1, T1, rect(10, 20, 30, 40, "B"))],
            "predictions": [entry(2, T1, rect(0, 0, 50, 50))]}
    box = newest_box(task)
    assert box.label == "B" and box.origin == "annotation:1"  # tie: the person's box
    assert box.box == pytest.approx((20.0, 20.0, 60.0, 80.0))  # y0, x0, y1, x1 of 200x100
    task["predictions"][0]["created_at"] = T2
    assert newest_box(task).origin == "prediction:2"  # newer work wins, as for masks
    # within a container the last usable rectangle is the newest; rotated ones are skipped
    task = {"annotations": [entry(1, T1, rect(1, 1, 5, 5, "A"), rect(2, 2, 5, 5, "B"),
                                  rect(3, 3, 5, 5, "C", rotation=15))]}
    assert newest_box(task).label == "B"
    assert newest_box(task, image="other") is None
    assert newest_box(task, control="box").label == "B"
