"""NoC arithmetic: IoU with an ignore band, NoC@t, NoF@t and mIoU-after-k-clicks.

Kept apart from the click loop so the arithmetic can be checked on fabricated IoU sequences:
a mistake here would silently shift every number in every report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_CLICKS = 20


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union over non-ignored pixels; 1.0 when both are empty there."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)
        pred, gt = pred & keep, gt & keep
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union


def noc(ious: Sequence[float], threshold: float, max_clicks: int = MAX_CLICKS) -> int:
    """Number of the first click (1-based) whose IoU reaches `threshold`; `max_clicks` if none.

    `ious[k]` is the IoU after click k+1. Only the first `max_clicks` entries count.
    """
    for k, v in enumerate(ious[:max_clicks]):
        if v >= threshold:
            return k + 1
    return max_clicks


def pad_curve(ious: Sequence[float], length: int = MAX_CLICKS) -> list[float]:
    """IoU after clicks 1..length; a run that stopped early keeps its last IoU (accepted mask).

    An object whose run stopped because it reached the target IoU is, for the annotator, done:
    its mask does not change with clicks that were never given.
    """
    if not ious:
        raise ValueError("an IoU sequence needs at least one click")
    out = [float(v) for v in ious[:length]]
    return out + [out[-1]] * (length - len(out))


def summarize(
    per_object: Sequence[Sequence[float]],
    max_clicks: int = MAX_CLICKS,
    priors: Sequence[float] | None = None,
) -> dict:
    """Dataset numbers from per-object IoU sequences (IoU after click 1, 2, ...).

    NoC@t = plain mean over objects of each object's NoC; NoF@90 = objects never reaching 0.90;
    mIoU@k = mean IoU after k clicks (early-stopped runs padded with their last IoU). With
    `priors` (IoU of the starting mask of each object) the IoU gain after 1 and 3 clicks is added.
    """
    if not per_object:
        raise ValueError("no objects to summarize")
    curves = np.array([pad_curve(s, max_clicks) for s in per_object])
    out: dict = {
        "objects": len(per_object),
        "noc85": float(np.mean([noc(s, 0.85, max_clicks) for s in per_object])),
        "noc90": float(np.mean([noc(s, 0.90, max_clicks) for s in per_object])),
        "nof85": int(sum(max(s[:max_clicks]) < 0.85 for s in per_object)),
        "nof90": int(sum(max(s[:max_clicks]) < 0.90 for s in per_object)),
        "miou_curve": [float(v) for v in curves.mean(axis=0)],
    }
    for k in (1, 3, 5):
        if k <= max_clicks:
            out[f"miou@{k}"] = float(curves[:, k - 1].mean())
    if priors is not None:
        if len(priors) != len(per_object):
            raise ValueError(f"{len(priors)} prior IoUs for {len(per_object)} objects")
        p = np.asarray(priors, dtype=float)
        out["prior_miou"] = float(p.mean())
        for k in (1, 3):
            if k <= max_clicks:
                out[f"gain@{k}"] = float((curves[:, k - 1] - p).mean())
    return out


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of `b - a` over the same objects and its standard error (0 for a single object).

    Why: two checkpoints are compared on the same held-out objects, so their per-object
    differences, not their two separate spreads, say whether a gap is more than noise; a
    difference within about two standard errors of zero is not evidence of a better model.
    """
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} objects: a paired difference needs the same ones")
    if not a:
        raise ValueError("no objects to compare")
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return float(d.mean()), se
