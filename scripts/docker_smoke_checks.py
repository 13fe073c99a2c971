"""The HTTP checks of scripts/docker_smoke.sh, against the compose stack it started.

    python3 scripts/docker_smoke_checks.py first  STATE_FILE   # fresh stack
    python3 scripts/docker_smoke_checks.py second STATE_FILE   # after `down` and `up` again

`first` creates a Label Studio project from config/labeling.xml with one shipped fixture image,
connects the backend (Label Studio checks it and adds its webhook), asks for a mask the way the
editor does (Label Studio's interactive-annotating call, which Label Studio forwards to the
backend's /predict), judges the mask against the fixture's ground truth, then submits that
mask as an annotation: Label Studio's webhook reaches the backend, whose workers store the
correction. What `second` needs is written to STATE_FILE. `second` checks that the project,
the stored correction (read by the caller from the volume) and the backend's connection are
still there. Each check prints one line; the first failure exits 1 with its reason.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
LS = os.environ.get("SMOKE_LS_URL", "http://127.0.0.1:8080")
BACKEND = os.environ.get("SMOKE_BACKEND_URL", "http://127.0.0.1:9090")
TOKEN = os.environ["LABEL_STUDIO_TOKEN"]
ML_URL = "http://backend.clicksmith.internal:9090"  # as Label Studio reaches the backend
STEM = "bowl"  # a shipped fixture scene with its exact mask
MIN_IOU = 0.8


def fail(reason: str) -> None:
    print(f"FAIL {reason}", flush=True)
    sys.exit(1)


def ok(what: str) -> None:
    print(f"ok   {what}", flush=True)


def api(method: str, path: str, **kw):
    r = requests.request(method, LS + path, headers={"Authorization": f"Token {TOKEN}"},
                         timeout=120, **kw)
    if r.status_code >= 400:
        fail(f"Label Studio {method} {path}: {r.status_code} {r.text[:300]}")
    return r.json() if r.content else None


def gt_mask() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(REPO / "tests/fixtures/masks" / f"{STEM}.png").convert("L")) > 127


def click_point(mask: np.ndarray) -> tuple[int, int]:
    """The object's pixel farthest from its border, as an annotator would click."""
    import cv2

    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


def decoded(result: list[dict], h: int, w: int) -> np.ndarray:
    from label_studio_sdk.converter.brush import decode_rle

    brushes = [r for r in result if r.get("type") == "brushlabels"]
    if len(brushes) != 1:
        fail(f"expected one brush region in the answer, got {[r.get('type') for r in result]}")
    return decode_rle(brushes[0]["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 127


def ml_state(ml_id: int) -> str:
    return str(api("GET", f"/api/ml/{ml_id}")["state"])


def first(state_file: Path) -> None:
    health = requests.get(f"{BACKEND}/health", timeout=10).json()
    if health.get("status") != "UP":
        fail(f"backend /health: {health}")
    ok(f"backend healthy, model {health.get('model_state')} {health.get('model_version')}")
    project = api("POST", "/api/projects", json={
        "title": "clicksmith docker smoke",
        "label_config": (REPO / "config/labeling.xml").read_text()})
    image = REPO / "tests/fixtures/images" / f"{STEM}.png"
    api("POST", f"/api/projects/{project['id']}/import",
        files=[("file0", (image.name, image.read_bytes()))])
    tasks = api("GET", f"/api/tasks?project={project['id']}")
    tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
    if len(tasks) != 1:
        fail(f"expected one imported task, got {len(tasks)}")
    task = tasks[0]
    ok(f"project {project['id']} with task {task['id']} ({task['data']['image']})")
    ml = api("POST", "/api/ml", json={"project": project["id"], "url": ML_URL,
                                      "is_interactive": True, "title": "clicksmith"})
    if ml_state(ml["id"]) != "CO":
        fail(f"Label Studio does not see the backend as connected: {ml_state(ml['id'])}")
    hooks = api("GET", f"/api/webhooks?project={project['id']}")
    if not any(h["url"] == f"{ML_URL}/webhook" and h["is_active"] for h in hooks):
        fail(f"Label Studio added no webhook to the backend: {hooks}")
    ok("Label Studio connected the backend (state CO) and added its webhook")

    gt = gt_mask()
    h, w = gt.shape
    y, x = click_point(gt)
    click = {"id": uuid.uuid4().hex[:10], "type": "keypointlabels", "origin": "manual",
             "from_name": "click", "to_name": "image", "original_width": w,
             "original_height": h, "image_rotation": 0, "is_positive": True,
             "value": {"x": 100.0 * x / w, "y": 100.0 * y / h, "width": 0.5,
                       "keypointlabels": ["Object"]}}
    t0 = time.monotonic()
    answer = api("POST", f"/api/ml/{ml['id']}/interactive-annotating",
                 json={"task": task["id"], "context": {"result": [click]}})
    seconds = time.monotonic() - t0
    if "errors" in answer or "data" not in answer:
        fail(f"interactive request: {answer}")
    mask = decoded(answer["data"]["result"], h, w)
    iou = float((mask & gt).sum() / max((mask | gt).sum(), 1))
    if iou < MIN_IOU:
        fail(f"one click gave IoU {iou:.3f} < {MIN_IOU}")
    ok(f"interactive click through Label Studio: IoU {iou:.3f} in {seconds * 1000:.0f} ms, "
       f"model {answer['data'].get('model_version')}")

    brush = next(r for r in answer["data"]["result"] if r["type"] == "brushlabels")
    annotation = api("POST", f"/api/tasks/{task['id']}/annotations",
                     json={"result": [{**brush, "origin": "manual"}], "lead_time": 3.0})
    ok(f"annotation {annotation['id']} submitted (Label Studio sends the webhook)")
    state_file.write_text(json.dumps({"project": project["id"], "task": task["id"],
                                      "ml": ml["id"], "annotation": annotation["id"]}))


def second(state_file: Path) -> None:
    state = json.loads(state_file.read_text())
    project = api("GET", f"/api/projects/{state['project']}")
    ok(f"Label Studio kept project {project['id']} across down/up")
    if ml_state(state["ml"]) != "CO":
        fail(f"after up again the backend is not connected: {ml_state(state['ml'])}")
    ok("the backend is connected again")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in {"first", "second"}:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    {"first": first, "second": second}[sys.argv[1]](Path(sys.argv[2]))
