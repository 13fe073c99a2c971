"""Two objects of one label in one image, each its own region, in a real Label Studio 1.23 and
headless chromium, with Auto-Accept on and off (issue 31).

The scene (tests/fixtures `pair`, drawn by make_fixtures.py): two oranges of one colour, 4 px
apart, one ground-truth mask each. An annotator labels both as "Object":
- Auto-Accept on: click the first orange (its answer becomes a region at once), click just
  beside its mask to refine it (the answer must update that same region, not add a copy), then
  click the second orange: a new region with that orange alone.
- Auto-Accept off: click the first orange, refine it with a second click (both keypoints in
  the request, one suggestion), accept with ✓, click the second orange: a new suggestion with
  that orange alone, ✓.
Then Submit: the stored annotation holds exactly two brush regions, each with IoU >= 0.8
against its own orange. Before this, the second orange's click continued the first object's
session: a mask of both oranges (IoU ~0.49 with each).

The project does not show predictions: a task opens pre-labelled otherwise, and a click over an
existing region in Label Studio's editor selects that region instead of placing a keypoint
(README, "Tasks that open pre-labelled"); that is what this test steers clear of, by clicking
only outside the regions on screen, as an annotator must.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle
from scipy import ndimage

from tests.e2e.browser import Editor, browser_page
from tests.e2e.conftest import FIXTURES, create_project, read_rgb, wait_until
from tests.e2e.test_label_studio import deepest_point, iou

pytestmark = pytest.mark.e2e
MIN_IOU = 0.8  # each region against its own object
RESULTS: dict[str, dict[str, float]] = {}  # mode -> IoUs, printed at the end of each test


def _mask(item: dict) -> np.ndarray:
    h, w = item["original_height"], item["original_width"]
    return decode_rle(item["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 127


def _brush_of(answer: dict) -> dict:
    (item,) = [r for r in answer["data"]["result"] if r["type"] == "brushlabels"]
    return item


def beside(mask: np.ndarray, obj: np.ndarray, other: np.ndarray) -> tuple[int, int]:
    """(y, x) of a pixel 2-4 px outside `mask`, on `obj` where the mask missed some of it, away
    from `other`, and nearest to `obj`'s middle: where an annotator clicks to add a missed
    edge (outside every region: a click on a region selects it in Label Studio)."""
    dist = ndimage.distance_transform_edt(~mask)
    ring = (dist >= 2) & (dist <= 4) & ~ndimage.binary_dilation(other, iterations=12)
    assert ring.any(), "no room beside the mask"
    on_obj = ring & obj
    ys, xs = np.nonzero(on_obj if on_obj.any() else ring)
    cy, cx = deepest_point(obj)
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(ys[k]), int(xs[k])


@pytest.mark.parametrize("auto_accept", [True, False], ids=["auto-accept-on", "auto-accept-off"])
def test_two_objects_of_one_label_are_two_regions(ls, ls_server, backend, browser, tmp_path,
                                                  auto_accept):
    mode = "on" if auto_accept else "off"
    project = create_project(ls, ls_server, backend, f"clicksmith instances {mode}",
                             stems=("pair",))
    ls.projects.update(project.id, show_collab_predictions=False)
    task_id = project.tasks["pair"]
    g1, g2 = (read_rgb(FIXTURES / "masks" / f"pair-{k}.png")[:, :, 0] > 127 for k in (1, 2))
    ious: dict[str, float] = {}
    with browser_page(browser, tmp_path) as (page, steps):
        editor = Editor(page, steps, g1.shape)
        try:
            editor.login(ls_server)
            editor.open(ls_server, project.id, task_id, auto_accept)

            # the first orange, then a second click beside its mask: one object, one region
            first = _brush_of(editor.click(*deepest_point(g1), "object-1"))
            m1 = _mask(first)
            ious["object 1, click 1"] = iou(m1, g1)
            y, x = beside(m1, g1, g2)
            refined = _brush_of(editor.click(y, x, "object-1-refined"))
            assert editor.sent_keypoints() == (1 if auto_accept else 2)
            assert refined["id"] == first["id"], "a refining click must keep the object's region"
            m1 = _mask(refined)
            ious["object 1, click 2"] = iou(m1, g1)
            assert m1[y, x] or not g1[y, x], "a click on a missed part of the object must add it"
            if auto_accept:  # each answer was accepted: still one region, updated in place
                assert len(editor.brush_regions()) == 1, editor.brush_regions()
            else:
                assert editor.brush_regions() == [] and editor.suggestions() == 1
                editor.accept("object-1-accepted")
                assert len(editor.brush_regions()) == 1

            # the second orange: a new object, a region of its own
            second = _brush_of(editor.click(*deepest_point(g2), "object-2"))
            assert editor.sent_keypoints() == 1
            assert second["id"] != first["id"], "the second object needs a region of its own"
            m2 = _mask(second)
            ious["object 2"] = iou(m2, g2)
            ious["object 2 against object 1"] = iou(m2, g1)
            if not auto_accept:
                editor.accept("object-2-accepted")
            assert len(editor.brush_regions()) == 2, editor.brush_regions()

            # submitted: the stored annotation holds the two objects, each its own region
            editor.submit()
            annotations = wait_until(lambda: list(ls.annotations.list(id=task_id)), 30,
                                     "the submitted annotation")
            (annotation,) = annotations
            masks = [_mask(r) for r in annotation.result if r["type"] == "brushlabels"]
            assert len(masks) == 2, f"{len(masks)} brush regions stored"
            stored = sorted(masks, key=lambda m: -iou(m, g1))
            ious["stored 1"], ious["stored 2"] = iou(stored[0], g1), iou(stored[1], g2)
            RESULTS[mode] = ious
            print(f"\nAuto-Accept {mode}: "
                  + ", ".join(f"{k} IoU {v:.3f}" for k, v in ious.items()))
            assert ious["object 2 against object 1"] < 0.2, \
                "the second region took the first object"
            assert ious["stored 1"] >= MIN_IOU and ious["stored 2"] >= MIN_IOU, ious
        except BaseException:
            print(f"\nIoUs so far: {ious}")
            raise


def test_fixture_masks_are_the_scene():
    """The two masks are the union's parts and do not touch (the scene is what the test says)."""
    union = read_rgb(FIXTURES / "masks" / "pair.png")[:, :, 0] > 127
    g1, g2 = (read_rgb(FIXTURES / "masks" / f"pair-{k}.png")[:, :, 0] > 127 for k in (1, 2))
    assert np.array_equal(g1 | g2, union) and not (g1 & g2).any()
    assert Path(FIXTURES / "images" / "pair.png").is_file()
