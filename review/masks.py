"""Brush masks in Label Studio results: decode, pick the newest, encode, compare.

LS stores brush regions as its own RLE of an RGBA image (alpha = mask) at the image's original
resolution; `label_studio_sdk.converter.brush` reads and writes that format.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from review.ls import ProjectConfig


@dataclass(frozen=True)
class Source:
    """Where a task's pre-label comes from: an existing mask, a box, or nothing (zero clicks)."""

    kind: str  # "mask" | "box" | "none"
    label: str
    mask: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None  # (y0, x0, y1, x1) pixels
    origin: str = ""  # "annotation:<id>" / "prediction:<id>" for the record


def decode_brush(item: dict) -> np.ndarray:
    """A brushlabels result item as a bool HxW mask (ValueError when it is not one)."""
    from label_studio_sdk.converter.brush import decode_rle

    value = item.get("value") or {}
    rle = value.get("rle")
    h, w = item.get("original_height"), item.get("original_width")
    if not rle or not h or not w:
        raise ValueError("brush result lacks value.rle or original_width/height")
    flat = np.asarray(decode_rle(rle))
    if flat.size != int(h) * int(w) * 4:
        raise ValueError(f"brush RLE holds {flat.size} values, expected {int(h) * int(w) * 4}")
    return flat.reshape(int(h), int(w), 4)[:, :, 3] > 127


def encode_brush(mask: np.ndarray) -> list[int]:
    from label_studio_sdk.converter.brush import mask2rle

    return [int(v) for v in mask2rle(np.where(mask, 255, 0).astype(np.uint8))]


def brush_result(mask: np.ndarray, cfg: ProjectConfig, label: str, score: float) -> dict:
    """One LS result item holding `mask` as a brush region of `label`."""
    h, w = mask.shape
    return {
        "id": uuid.uuid4().hex[:10],
        "from_name": cfg.brush_name,
        "to_name": cfg.image_name,
        "type": "brushlabels",
        "original_width": int(w),
        "original_height": int(h),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": encode_brush(mask), "brushlabels": [label]},
        "score": float(score),
        "readonly": False,
    }


def brush_regions(results: list[dict]) -> list[tuple[str, np.ndarray]]:
    """(label, mask) per brush region of a result list, regions of one label merged.

    Merging is what an annotator means by painting one object in several strokes."""
    merged: dict[str, np.ndarray] = {}
    for item in results or []:
        if item.get("type") != "brushlabels" or (item.get("value") or {}).get("format") != "rle":
            continue
        labels = (item.get("value") or {}).get("brushlabels") or [""]
        mask = decode_brush(item)
        label = labels[0]
        if label in merged and merged[label].shape == mask.shape:
            merged[label] = merged[label] | mask
        else:
            merged.setdefault(label, mask)
    return list(merged.items())


def _stamp(entry: dict) -> str:
    return str(entry.get("updated_at") or entry.get("created_at") or "")


def newest_mask(task: dict, skip_model_version: str | None = None) -> Source | None:
    """The newest brush mask among the task's annotations and predictions.

    Ties (same timestamp) go to annotations: a person's work beats a model's."""
    candidates: list[tuple[str, int, str, list]] = []
    for ann in task.get("annotations") or []:
        if isinstance(ann, dict) and not ann.get("was_cancelled"):
            candidates.append((_stamp(ann), 1, f"annotation:{ann.get('id')}", ann.get("result")))
    for pred in task.get("predictions") or []:
        if isinstance(pred, dict) and pred.get("model_version") != skip_model_version:
            candidates.append((_stamp(pred), 0, f"prediction:{pred.get('id')}", pred.get("result")))
    for _, _, origin, results in sorted(candidates, key=lambda c: (c[0], c[1]), reverse=True):
        regions = brush_regions(results or [])
        if regions:
            label, mask = regions[0]
            return Source("mask", label, mask=mask, origin=origin)
    return None


def first_box(task: dict) -> Source | None:
    """The newest annotation's (else prediction's) first rectangle, in pixel coordinates."""
    entries = sorted((a for a in task.get("annotations") or [] if isinstance(a, dict)),
                     key=_stamp, reverse=True)
    entries += sorted((p for p in task.get("predictions") or [] if isinstance(p, dict)),
                      key=_stamp, reverse=True)
    for entry in entries:
        for item in entry.get("result") or []:
            if item.get("type") != "rectanglelabels":
                continue
            v = item.get("value") or {}
            h, w = item.get("original_height"), item.get("original_width")
            if not h or not w or v.get("rotation"):
                continue
            x0, y0 = float(v["x"]) * w / 100, float(v["y"]) * h / 100
            x1, y1 = x0 + float(v["width"]) * w / 100, y0 + float(v["height"]) * h / 100
            label = (v.get("rectanglelabels") or [""])[0]
            return Source("box", label, box=(y0, x0, y1, x1), origin=f"box:{entry.get('id')}")
    return None


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union; two empty masks agree perfectly."""
    if a.shape != b.shape:
        raise ValueError(f"masks differ in size: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)
