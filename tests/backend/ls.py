"""Label Studio 1.23-shaped payloads for backend tests (built the way the editor sends them)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from clicksmith.labelstudio.results import mask_to_rle

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
FIXTURES = SHARED / "fixtures" / "label-studio-1.23.2"
LABEL_CONFIG = (REPO / "config" / "labeling.xml").read_text()


def fixture(name: str) -> dict:
    """A recorded Label Studio request (method, path, headers, body)."""
    return json.loads((FIXTURES / name).read_text())


def keypoint(x: float, y: float, w: int, h: int, positive: bool | None = True,
             label: str = "Object", from_name: str = "click", to_name: str = "image") -> dict:
    item = {
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": [label]},
        "id": uuid.uuid4().hex[:10],
        "from_name": from_name,
        "to_name": to_name,
        "type": "keypointlabels",
        "origin": "manual",
    }
    if positive is not None:
        item["is_positive"] = positive
    return item


def rectangle(x: float, y: float, bw: float, bh: float, w: int, h: int,
              label: str = "Object") -> dict:
    return {
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": bw, "height": bh, "rotation": 0,
                  "rectanglelabels": [label]},
        "id": uuid.uuid4().hex[:10],
        "from_name": "box",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
    }


def brush(mask: np.ndarray, label: str = "Object", positive: bool | None = None) -> dict:
    h, w = mask.shape
    item = {
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]},
        "id": uuid.uuid4().hex[:10],
        "from_name": "mask",
        "to_name": "image",
        "type": "brushlabels",
        "origin": "manual",
    }
    if positive is not None:
        item["is_positive"] = positive
    return item


def task(image: str, task_id: int = 1, **extra: object) -> dict:
    return {"id": task_id, "data": {"image": image}, "annotations": [], "drafts": [],
            "predictions": [], "project": 1, **extra}


def predict_body(image: str, context: list[dict] | None, task_id: int = 1,
                 project: str | None = None, config: str = LABEL_CONFIG,
                 the_task: dict | None = None) -> dict:
    return {
        "tasks": [the_task or task(image, task_id)],
        "project": project or f"{uuid.uuid4().int % 10**6}.1795626672",
        "label_config": config,
        "params": {"login": None, "password": None,
                   "context": None if context is None else {"result": context}},
    }
