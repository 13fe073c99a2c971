"""The NoC evaluation loop, shared by our model and every baseline.

A "predictor" here is anything with `session(image, prior_mask=None)` returning an object with
`add_click(click) -> result`, where `result.mask` (or `result.probs`) is an HxW map: the CDNet
predictor from `cdnet.load_predictor` and `GrabCutPredictor` both qualify, so both are measured
by this one loop with the same clicks.

Per object: start from an empty mask (mode "empty") or from the ground truth degraded to
IoU ~= 0.75 (mode "prior"); ask the standard clicker for the next click, predict, take the
result's mask (probs > 0.5, or the progressive merge of it), score IoU without the ignore
band; stop at 20 clicks or once the IoU reaches `stop_iou` (0.90, as the protocol does).
Seconds per click = time spent inside the predictor (session creation, which holds the
per-image work, plus every `add_click`) divided by the number of clicks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cdnet.clicks import Click
from cdnet.eval.clicker import next_click
from cdnet.eval.datasets import Dataset, Sample
from cdnet.eval.metrics import MAX_CLICKS, iou, summarize
from cdnet.eval.prior import degrade
from cdnet.inference.pieces import piece_stats

MODES = ("empty", "prior")
THRESHOLD = 0.5


@dataclass
class ObjectRun:
    """One object's run: IoU after each click given, the clicks, time spent predicting."""

    name: str
    ious: list[float] = field(default_factory=list)
    clicks: list[Click] = field(default_factory=list)
    seconds: float = 0.0
    prior_iou: float | None = None
    first_pieces: dict | None = None  # empty start: the first mask's stray pieces (piece_stats)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "name": self.name,
            "ious": [round(v, 5) for v in self.ious],
            "clicks": [[int(c.y), int(c.x), bool(c.positive)] for c in self.clicks],
            "seconds": round(self.seconds, 4),
        }
        if self.prior_iou is not None:
            d["prior_iou"] = round(self.prior_iou, 5)
        if self.first_pieces is not None:
            d["first_pieces"] = self.first_pieces
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObjectRun:
        """The inverse of `to_dict` (IoUs rounded to 5 decimals), to resume a long run."""
        return cls(str(d["name"]), [float(v) for v in d["ious"]],
                   [Click(int(y), int(x), bool(pos)) for y, x, pos in d["clicks"]],
                   float(d["seconds"]), None if d.get("prior_iou") is None
                   else float(d["prior_iou"]), d.get("first_pieces"))


def _prediction(result: Any) -> np.ndarray:
    """The mask the annotator sees: `result.mask`, else `result.probs > 0.5`.

    Why the mask and not always the probabilities: with progressive mode off the predictor's
    mask *is* probs > 0.5 (the protocol's rule), but with it on the mask is the progressive merge
    (only the region around the click changes) while `probs` stays the network's raw output;
    scoring `probs` would make progressive on and off indistinguishable.
    """
    mask = getattr(result, "mask", None)
    if mask is not None:
        return np.asarray(mask, dtype=bool)
    return np.asarray(result.probs) > THRESHOLD


def run_object(
    predictor: Any,
    sample: Sample,
    prior: np.ndarray | None = None,
    max_clicks: int = MAX_CLICKS,
    stop_iou: float | None = 0.90,
) -> ObjectRun:
    """Simulate the standard annotator on one object; see the module docstring."""
    gt, ignore = sample.gt, sample.ignore
    keep = gt if ignore is None else gt & ~ignore
    if not keep.any():
        raise ValueError(f"{sample.name}: the ground truth has no object pixel outside ignore")
    run = ObjectRun(sample.name)
    if prior is None:
        pred = np.zeros(gt.shape, bool)
        t0 = time.perf_counter()
        session = predictor.session(sample.image)
    else:
        pred = np.asarray(prior, dtype=bool)
        run.prior_iou = iou(pred, gt, ignore)
        t0 = time.perf_counter()
        session = predictor.session(sample.image, prior_mask=pred)
    run.seconds += time.perf_counter() - t0
    for _ in range(max_clicks):
        click = next_click(gt, pred, ignore, run.clicks)
        if click is None:  # nothing left to correct outside ignore / clicked pixels
            break
        t0 = time.perf_counter()
        result = session.add_click(click)
        run.seconds += time.perf_counter() - t0
        run.clicks.append(click)
        pred = _prediction(result)
        if pred.shape != gt.shape:
            raise ValueError(f"{sample.name}: prediction {pred.shape} != ground truth {gt.shape}")
        run.ious.append(iou(pred, gt, ignore))
        if prior is None and len(run.clicks) == 1:
            run.first_pieces = piece_stats(pred, run.clicks)
        if stop_iou is not None and run.ious[-1] >= stop_iou:
            break
    if not run.ious:  # the start mask was already perfect: it scores as itself after click 1
        run.ious.append(iou(pred, gt, ignore))
    return run


def _samples(dataset: str | Path | Dataset | Sequence[Sample], max_objects: int | None):
    if isinstance(dataset, (str, Path)):
        ds = Dataset(dataset, max_objects)
        return ds.name, ds, len(ds)
    name = getattr(dataset, "name", "samples")
    n = len(dataset) if max_objects is None else min(len(dataset), max_objects)
    return name, (dataset[i] for i in range(n)), n


def _resolve_predictor(predictor_or_factory: Any) -> Any:
    if hasattr(predictor_or_factory, "session"):
        return predictor_or_factory
    if callable(predictor_or_factory):
        p = predictor_or_factory()
        if not hasattr(p, "session"):
            raise ValueError("the predictor factory returned an object without .session()")
        return p
    raise ValueError("evaluate() needs a predictor (with .session) or a factory returning one")


def evaluate(
    predictor: Any | Callable[[], Any],
    dataset: str | Path | Dataset | Sequence[Sample],
    mode: str = "empty",
    max_objects: int | None = None,
    progress: bool = True,
    *,
    max_clicks: int = MAX_CLICKS,
    stop_iou: float | None = 0.90,
    prior_iou: float = 0.75,
    seed: int = 0,
    label: str | None = None,
    progressive: bool | None = None,
    done: Mapping[str, Mapping[str, Any]] | None = None,
    on_object: Callable[[dict], None] | None = None,
) -> dict:
    """Run the NoC protocol of `predictor` on `dataset` and return its summary as a dict.

    `dataset`: a name (`grabcut`), a folder path, a `Dataset` or a list of `Sample`s.
    `mode`: "empty" (standard) or "prior" (start from the ground truth degraded to `prior_iou`,
    seeded by `seed` and the object name, so two predictors see identical priors).
    `label` names the method in reports (default: the predictor's `label`, else its
    `model_version`); `progressive` records the predictor's mode when the predictor does not
    expose a `.progressive` attribute.
    The dict holds NoC@85/90, NoF@85/90, mIoU@1/3/5, the mIoU-per-click curve, seconds per
    click, (prior mode) the IoU gain after 1 and 3 clicks, and every object's IoUs and clicks.
    Comparing a candidate with the serving model: call this twice on the same dataset and mode
    and compare `noc90` (lower is better).
    Resuming a long run: `done` maps object names to `per_object` entries of an earlier run
    with the same settings, which are reused instead of recomputed; `on_object` is called with
    each newly computed entry (e.g. to append it to a file).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 1 <= max_clicks <= 100:
        raise ValueError(f"max_clicks must be in 1..100, got {max_clicks}")
    p = _resolve_predictor(predictor)
    name, samples, n = _samples(dataset, max_objects)
    runs: list[ObjectRun] = []
    label = label or getattr(p, "label", None)  # a Predictor's label says whether flip is on
    bar = tqdm(samples, total=n, desc=f"{label or getattr(p, 'model_version', 'model')} {name}",
               unit="obj", disable=not progress, leave=False)
    for sample in bar:
        if done is not None and sample.name in done:
            runs.append(ObjectRun.from_dict(done[sample.name]))
            continue
        prior = None
        if mode == "prior":
            prior = degrade(sample.gt, prior_iou, seed, sample.name, sample.ignore)
        runs.append(run_object(p, sample, prior, max_clicks, stop_iou))
        if on_object is not None:
            on_object(runs[-1].to_dict())
        bar.set_postfix(noc90=f"{summarize([r.ious for r in runs], max_clicks)['noc90']:.2f}")
    bar.close()
    if not runs:
        raise ValueError(f"dataset {name!r} has no objects")
    clicks = sum(len(r.clicks) for r in runs)
    out = {
        "dataset": name,
        "method": label or getattr(p, "model_version", type(p).__name__),
        "model_version": getattr(p, "model_version", None),
        "progressive": getattr(p, "progressive", None) if progressive is None else progressive,
        "mode": mode,
        "max_clicks": max_clicks,
        "stop_iou": stop_iou,
        **summarize([r.ious for r in runs], max_clicks,
                    [r.prior_iou for r in runs] if mode == "prior" else None),
        "clicks": clicks,
        "seconds": sum(r.seconds for r in runs),
        "spc": sum(r.seconds for r in runs) / max(clicks, 1),
        "per_object": [r.to_dict() for r in runs],
    }
    if mode == "prior":
        out.update(prior_target_iou=prior_iou, seed=seed)
    firsts = [r.first_pieces for r in runs if r.first_pieces is not None]
    if firsts:
        out["first_click"] = first_click_pieces(firsts)
    return out


def first_click_pieces(stats: Sequence[Mapping[str, Any]]) -> dict:
    """Share of first-click masks with a detached piece (holding no positive click) and with
    a far one (`cdnet.inference.pieces`), and the far pieces' mean share of the mask's area."""
    n = len(stats)
    return {"objects": n,
            "with_detached": sum(s["detached"] > 0 for s in stats) / n,
            "with_far": sum(s["far"] > 0 for s in stats) / n,
            "far_area": sum(s["far_area"] for s in stats) / n}


def evaluate_many(
    predictors: Iterable[tuple[str, Any]],
    datasets: Iterable[str | Path],
    mode: str = "empty",
    **kw: Any,
) -> list[dict]:
    """`evaluate` for every (label, predictor) on every dataset, datasets outermost."""
    predictors = list(predictors)
    return [evaluate(p, d, mode, label=label, **kw) for d in datasets for label, p in predictors]
