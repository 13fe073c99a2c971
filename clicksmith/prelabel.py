"""One task's pre-label: where it comes from, the model's mask, its score, the prediction.

Shared by the two paths that pre-label: the RQ job (review.prelabel.prelabel_batch, started by
`clicksmith prelabel` or queued by the backend) and Label Studio's own Retrieve Predictions,
answered by the backend's /predict without a context (backend.service.Backend.retrieve). One
function, so a task gets the same mask and the same score whichever path computed it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from clicksmith.labelstudio.config import ProjectConfig
from clicksmith.labelstudio.regions import newest_box, newest_mask
from clicksmith.labelstudio.results import brush_item


def mask_score(predictor, image, mask: np.ndarray) -> float:
    """The score of a mask: the model's predicted IoU of the mask exactly as it is delivered,
    `predictor.score_mask(image, mask)`. The one definition used by pre-labels
    (prelabel_task: the RQ job and Label Studio's Retrieve Predictions), the review
    (review.ranking), and interactive answers (backend.pipeline.finalise).

    Why `score_mask` and not the quality a network run reports with its answer: the two are
    different estimates. A run's quality (`out.quality[0]`) is the quality head's guess for the
    network's own raw output in the frame it ran on; `score_mask` (`out.quality[1]`) is the
    head's guess for a given mask, fed back as the prior. On the same masks they differ by
    about 0.1 (75 GrabCut masks after 0-2 clicks: 0.76 vs 0.87 on average; the view hardly
    matters: 0.85 zoomed vs 0.86 whole-image), so pre-labels that stored the run's quality
    (0.437 / 0.597 / 0.813) were reviewed as 0.554 / 0.758 / 0.908. Only `score_mask` can judge
    any mask, whoever drew it: an annotation, an edited pre-label, a stroke. Scores that are
    stored and ranked against each other (pre-labels in Label Studio's data manager, the
    review) must come from it, so one mask gets one number, on the scale measured by
    benchmarks/quality_ranking.py. Pre-labelling pays one more network run per task for it.

    No exceptions: an interactive answer's score is `score_mask` of the mask exactly as it is
    returned, computed once in backend.pipeline.finalise, whatever made the mask (a click, a
    stroke, a tool's edit, an adopted edit, a prior), so the number an annotator sees while
    clicking is the number the same mask gets as a pre-label and in the review. (Interactive
    answers used to keep the click run's own quality, and tools the session's old score, for
    speed: two numbers for one mask.) The only saving is reuse: a returned mask bit-identical to
    the session's stored mask, which carries its score_mask, keeps it without a network run.

    Cost: one run of the plain network (no test-time flip, even when clicks use it: flipping
    averages an answer's probabilities, a score does not need it) in a view of `score_size` px
    around the mask (cdnet.inference.defaults.SCORE_SIZE = 192, chosen on held-out training
    objects: benchmarks/results/quality_ranking_score_size.md). At 1024x1024, in-process, on a
    heavily loaded 2-core machine: 54 ms at 192 px, beside 136 ms plain at 320 px, 257 ms for
    the flip-averaged 320 px score pre-labels used before, and about 284 ms a click (on a
    quieter run: a click 36 ms, the flip-averaged score 33 ms, plain at 320 px 19 ms).
    """
    return float(predictor.score_mask(image, mask))


def has_version(task: dict, model_version: str) -> bool:
    return any(isinstance(p, dict) and p.get("model_version") == model_version
               for p in task.get("predictions") or [])


class SourceKind(StrEnum):
    MASK = "mask"  # refine the newest brush mask of the task
    BOX = "box"  # the object inside the newest box
    NONE = "none"  # zero clicks: the network's guess of the main object


@dataclass(frozen=True)
class Source:
    """Where a task's pre-label comes from: an existing mask, a box, or nothing (zero clicks)."""

    kind: SourceKind
    label: str
    mask: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None  # (y0, x0, y1, x1) pixels
    origin: str = ""  # "annotation:<id>" / "prediction:<id>" for the record


def choose_source(task: dict, cfg: ProjectConfig, model_version: str,
                  shape: tuple[int, int] | None = None) -> Source:
    """Existing mask, else box, else nothing (zero clicks): refining what a person already
    drew beats guessing inside their box, which beats guessing the main object.

    The mask is the newest one of the brush control the pre-label is written to, on its Image,
    at the image's `shape` when given (clicksmith.labelstudio.regions has the rule); this model
    version's own predictions are never a source (a brush named `refine…` is a tool, not a
    mask, hence the control filter). The box is the newest rectangle of any control."""
    label = cfg.default_label
    found = newest_mask(task, control=cfg.brush_name, image=cfg.image_name, size=shape,
                        skip_model_version=model_version)
    if found is not None:
        label = found.label if found.label in cfg.labels else label
        return Source(SourceKind.MASK, label, mask=found.mask, origin=found.origin)
    box = newest_box(task, skip_model_version=model_version)
    if box is not None:
        label = box.label if box.label in cfg.labels else label
        return Source(SourceKind.BOX, label, box=box.box, origin=box.origin)
    return Source(SourceKind.NONE, label)


def prelabel_task(predictor, image: np.ndarray, source: Source):
    """The predictor's result for one task, from its source; its quality is the mask's score
    (mask_score), the number the review shows for the same mask."""
    if source.kind is SourceKind.MASK:
        if source.mask.shape != image.shape[:2]:
            raise ValueError(f"existing mask {source.mask.shape} does not match the image "
                             f"{image.shape[:2]}")
        # no click: the mask is the source itself, already scored with score_mask
        return predictor.predict(image, prior_mask=source.mask)
    image = predictor.prepare(image)  # prepared once for the run and the score
    if source.kind is SourceKind.BOX:
        h, w = image.shape[:2]
        y0, x0, y1, x1 = source.box
        box = (max(0.0, y0), max(0.0, x0), min(h - 1.0, y1), min(w - 1.0, x1))
        result = predictor.predict(image, box=box)
    else:
        result = predictor.predict(image)
    return replace(result, quality=mask_score(predictor, image, result.mask))


def task_prediction(predictor, image, task: dict, cfg: ProjectConfig,
                    version: str | None = None) -> dict:
    """The pre-label of `task` on its `image` (RGB array or the predictor's prepared image) as
    a Label Studio prediction: {"result": [one brush item], "score", "model_version"}.
    `version`: the model version written (the predictor's own when not given); its own
    earlier predictions are never a source. ValueError when the source does not fit."""
    version = version or predictor.model_version
    source = choose_source(task, cfg, version, tuple(image.shape[:2]))
    result = prelabel_task(predictor, image, source)
    score = float(result.quality)
    item = brush_item(result.mask, brush=cfg.brush_name, image=cfg.image_name,
                      label=source.label, score=score, tag=cfg.brush.tag)  # RLE or PNG
    return {"result": [item], "score": score, "model_version": version}
