"""Our backend inside a real Label Studio 1.23: connection, smart clicks, brush priors,
pre-labelling with score ordering, webhook corrections and START_TRAINING.

Masks are judged against the ground truth of the shipped test images (tests/fixtures: drawn
scenes with exact masks) and against the same predictor run in this process with the same
clicks. What must hold through Label Studio
is "as good as the model itself": the same mask as in-process wherever the model is sure (see
`agreement`), IoU with the in-process mask >= 0.9, and IoU with the object no worse than
in-process minus 0.02; plus an absolute floor on the figure after a positive and a negative
click (FIGURE_IOU_AFTER_TWO_CLICKS), set a little under what the shipped model measures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, mask2rle
from scipy import ndimage

from cdnet import Click
from tests.e2e.conftest import (
    REPO,
    _child_env,
    api,
    read_rgb,
    running_worker,
    wait_until,
)

pytestmark = pytest.mark.e2e
FIGURE_IOU_AFTER_TWO_CLICKS = 0.75  # absolute floor for the mask Label Studio receives


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def agreement(mask: np.ndarray, ref, margin: float = 0.05) -> tuple[float, float]:
    """(share of pixels where the in-process probability is >= margin from 0.5, agreement of
    `mask` with the in-process mask there).

    Why not plain equality: the server runs the same model in another process and thread, so
    float sums may differ in the last bits; where a (still weakly trained) model says ~0.5 that
    flips pixels. Where the model is sure, the two must agree. A trained model is sure almost
    everywhere, so this tightens by itself as the weights improve.
    """
    sure = np.abs(ref.probs - 0.5) >= margin
    if not sure.any():
        return 0.0, 1.0
    return float(sure.mean()), float((mask == ref.mask)[sure].mean())


def deepest_point(region: np.ndarray) -> tuple[int, int]:
    """(y, x) of the pixel farthest from the region's border: where an annotator clicks."""
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


def keypoint(y: float, x: float, h: int, w: int, positive: bool) -> dict:
    """A smart keypoint as the editor sends it (percent coordinates, Alt-click = negative)."""
    return {
        "id": uuid.uuid4().hex[:10], "type": "keypointlabels", "origin": "manual",
        "from_name": "click", "to_name": "image", "original_width": w, "original_height": h,
        "image_rotation": 0, "is_positive": positive,
        "value": {"x": 100.0 * x / w, "y": 100.0 * y / h, "width": 0.5,
                  "keypointlabels": ["Object"]},
    }


def brush_item(mask: np.ndarray) -> dict:
    h, w = mask.shape
    rle = [int(v) for v in mask2rle(np.where(mask, 255, 0).astype(np.uint8))]
    return {
        "id": uuid.uuid4().hex[:10], "type": "brushlabels", "origin": "manual",
        "from_name": "mask", "to_name": "image", "original_width": w, "original_height": h,
        "image_rotation": 0, "value": {"format": "rle", "rle": rle, "brushlabels": ["Object"]},
    }


def decoded(result: list[dict], h: int, w: int) -> np.ndarray:
    """The brush mask in an ML answer, decoded with the SDK's own decoder."""
    brushes = [r for r in result if r.get("type") == "brushlabels"]
    assert len(brushes) == 1, f"expected one brush region, got {[r.get('type') for r in result]}"
    b = brushes[0]
    assert (b["original_height"], b["original_width"]) == (h, w)
    assert b["value"]["brushlabels"] == ["Object"] and b["from_name"] == "mask"
    return decode_rle(b["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 127


def state(ml) -> str:
    """An ML backend's state code: CO(nnected), DI(sconnected), ER(ror), TR(aining)."""
    return str(getattr(ml.state, "value", ml.state))


def interactive(ls_server, project, stem: str, items: list[dict]) -> dict:
    """POST /api/ml/<id>/interactive-annotating as the editor does; the answer's prediction."""
    body = {"task": project.tasks[stem], "context": {"result": items}}
    answer = api(ls_server, "POST", f"/api/ml/{project.ml_id}/interactive-annotating", body)
    assert "errors" not in answer, f"Label Studio reported: {answer}"
    return answer["data"]


def test_backend_connected(ls, project, backend):
    ml = ls.ml.get(id=project.ml_id)
    assert state(ml) == "CO", f"not CONNECTED: {ml}"  # Label Studio's code for CONNECTED
    assert ml.is_interactive
    # Label Studio created the webhook to our /webhook (only possible with SSRF protection off)
    hooks = [h for h in ls.webhooks.list(project=str(project.id)) if h.url.startswith(backend.url)]
    assert hooks and hooks[0].url == f"{backend.url}/webhook" and hooks[0].is_active


def test_keypoints_positive_then_negative(ls_server, project, reference_predictor):
    stem = "figure"  # a doll-like figure with a ball of its colour beside it
    image, gt = project.images[stem], project.masks[stem]
    h, w = gt.shape
    py, px = deepest_point(gt)

    # in-process reference with the same clicks; the negative click goes where it is needed
    ref = reference_predictor.session(image)
    r1 = ref.add_click(Click(py, px, True))
    false_pos = r1.mask & ~gt
    ny, nx = deepest_point(false_pos) if false_pos.any() else deepest_point(~gt)
    r2 = ref.add_click(Click(ny, nx, False))

    pos = keypoint(py, px, h, w, True)
    first = interactive(ls_server, project, stem, [pos])
    m1 = decoded(first["result"], h, w)
    assert first["model_version"] == reference_predictor.model_version
    assert 0.0 <= first["score"] <= 1.0
    # clicks accumulate (auto-accept off): the second request holds both
    second = interactive(ls_server, project, stem, [pos, keypoint(ny, nx, h, w, False)])
    m2 = decoded(second["result"], h, w)

    print(f"\n{stem}: IoU(object) LS {iou(m1, gt):.3f} -> {iou(m2, gt):.3f}, "
          f"in-process {iou(r1.mask, gt):.3f} -> {iou(r2.mask, gt):.3f}")
    assert m1[py, px], "the positive click's pixel must be inside the mask"
    assert not m2[ny, nx], "the negative click's pixel must be outside the mask"
    for m, r in ((m1, r1), (m2, r2)):
        sure, agree = agreement(m, r)
        print(f"  same as in-process: IoU {iou(m, r.mask):.3f}; {agree:.4f} of the "
              f"{sure:.1%} pixels the model is sure about")
        assert agree >= 0.99 and iou(m, r.mask) >= 0.9
    assert iou(m2, gt) >= iou(r2.mask, gt) - 0.02
    # and good in absolute terms: the shipped model (cdnet-mnv2-ecd2a552) reaches 0.830 on the
    # figure after these two clicks in-process (cdnet-mnv2-f4d60779: 0.806)
    assert iou(m2, gt) >= FIGURE_IOU_AFTER_TWO_CLICKS
    if false_pos.any():  # the negative click removed something it was placed on
        assert (m1 & ~m2).sum() > 0


def test_brush_prior_is_refined(ls_server, project, reference_predictor):
    stem = "bowl"  # its rim is a lighter blue than its body
    image, gt = project.images[stem], project.masks[stem]
    h, w = gt.shape
    # an annotator's rough stroke: the object eroded, missing its rim
    stroke = ndimage.binary_erosion(gt, iterations=12)
    assert stroke.sum() > 500
    only = interactive(ls_server, project, stem, [brush_item(stroke)])
    m0 = decoded(only["result"], h, w)
    assert np.array_equal(m0, stroke), "a stroke alone must come back exactly"

    # a click on the missing rim refines the stroke (prior), it does not start from scratch
    rim = gt & ~ndimage.binary_dilation(stroke, iterations=3)
    cy, cx = deepest_point(rim)
    refined = decoded(interactive(ls_server, project, stem,
                                  [keypoint(cy, cx, h, w, True)])["result"], h, w)
    ref = reference_predictor.session(image, prior_mask=stroke).add_click(Click(cy, cx, True))
    assert refined[cy, cx] and not np.array_equal(refined, stroke)
    sure, agree = agreement(refined, ref)
    assert agree >= 0.99 and iou(refined, ref.mask) >= 0.9, (sure, agree)
    # the prior survives away from the click: most of the stroke is still there
    assert (refined & stroke).sum() >= 0.9 * stroke.sum()


def _predictions(ls, task_id: int) -> list:
    return list(ls.predictions.list(task=task_id))


@pytest.mark.slow
def test_prelabel_fills_predictions_ordered_by_score(ls, ls_server, project, backend, e2e_env,
                                                   tmp_path):
    env = _child_env(e2e_env)
    with running_worker(e2e_env, tmp_path / "worker.log") as worker:
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "clicksmith.cli", "prelabel", "--project",
                              str(project.id), "--wait", "--poll", "1"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
        took = time.monotonic() - t0
        assert out.returncode == 0, f"{out.stdout}\n{out.stderr}\nworker:\n{worker.tail()}"
    print(f"\nprelabel of {len(project.tasks)} tasks: {took:.1f}s")
    scores = {}
    for stem, tid in project.tasks.items():
        preds = _predictions(ls, tid)
        assert len(preds) == 1, f"task {stem}: {len(preds)} predictions"
        p = preds[0]
        assert p.model_version == backend.model_version
        assert 0.0 <= p.score <= 1.0
        h, w = project.masks[stem].shape
        mask = decoded(p.result, h, w)
        assert mask.any(), f"task {stem}: empty pre-label mask"
        scores[tid] = p.score
    assert len(set(scores.values())) > 1, "distinct images should get distinct scores"

    # the data manager orders by prediction score (the project's model_version was set)
    assert ls.projects.get(id=project.id).model_version == backend.model_version
    query = json.dumps({"ordering": ["-tasks:predictions_score"]})
    ordered = [t.id for t in ls.tasks.list(project=project.id, query=query)]
    assert ordered == sorted(scores, key=lambda t: -scores[t]), (ordered, scores)
    query = json.dumps({"ordering": ["tasks:predictions_score"]})
    ascending = [t.id for t in ls.tasks.list(project=project.id, query=query)]
    assert ascending == ordered[::-1]


def test_saved_annotation_becomes_a_correction(ls, project, e2e_env, tmp_path):
    stem = "animal"
    gt = project.masks[stem]
    task_id = project.tasks[stem]
    item = brush_item(gt)
    del item["origin"]
    ann = ls.annotations.create(id=task_id, result=[item], was_cancelled=False,
                                ground_truth=False)
    folder = Path(e2e_env["CORRECTIONS_ROOT"]) / str(project.id)

    def stored():
        path = folder / "manifest.jsonl"
        if not path.is_file():
            return None
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in rows if r["annotation"] == ann.id] or None

    # Label Studio sent ANNOTATION_CREATED to our /webhook on save; a worker stores it
    with running_worker(e2e_env, tmp_path / "worker.log") as worker:
        try:
            rows = wait_until(stored, 240, f"annotation {ann.id} in {folder}/manifest.jsonl")
        except AssertionError:
            raise AssertionError(f"no correction stored; worker:\n{worker.tail()}") from None
    assert len(rows) == 1
    row = rows[0]
    assert row["task"] == task_id and row["label"] == "Object"
    saved = read_rgb(folder / row["mask"])[:, :, 0] > 127
    assert np.array_equal(saved, gt)
    image = read_rgb(folder / row["image"])
    assert np.array_equal(image, project.images[stem])  # PNG source: lossless round trip
    preds = _predictions(ls, task_id)
    if preds:  # pre-labelled earlier this session: the row names that prediction's version
        assert row["model_version"] == preds[0].model_version
        assert 0.0 <= row["iou"] <= 1.0


def test_start_training_enqueues_a_retrain_job(ls, ls_server, project, e2e_env):
    from redis import Redis
    from rq import Queue

    conn = Redis.from_url(e2e_env["REDIS_URL"])
    queue = Queue(e2e_env["QUEUE_NAME"], connection=conn)
    before = set(queue.job_ids)
    # the ML settings' "Start Training" button: POST /api/ml/<id>/train
    api(ls_server, "POST", f"/api/ml/{project.ml_id}/train", {})
    new = wait_until(lambda: [j for j in queue.get_jobs() if j.id not in before], 30,
                     "a job on the queue after START_TRAINING")
    assert len(new) == 1
    job = new[0]
    assert job.func_name == "review.retrain.retrain_job"
    assert job.args == (project.id,)
    assert state(ls.ml.get(id=project.ml_id)) != "ER"  # Label Studio took our answer
    job.cancel()
    job.delete()
