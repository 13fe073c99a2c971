"""Does the predicted quality rank masks like their true IoU? (the review queue's ordering)

For every object of GrabCut and Berkeley it builds masks of varied quality:
  - the predictions after 1..5 clicks of the standard simulated annotator (cdnet.eval.clicker),
  - the ground truth degraded to IoU ~0.5 / 0.7 / 0.9 (cdnet.eval.prior.degrade),
and for each mask records the true IoU, the predicted quality `predictor.score_mask(image,
mask)` (what `clicksmith review` ranks by) and a naive baseline: the mean foreground
probability inside the mask ("mean mask confidence"; for click masks the probabilities of the
prediction that produced them, for degraded masks those of the zero-click prediction, since a
degraded mask has no probabilities of its own).

Reported per dataset and overall: Spearman(score, IoU); the share of masks with IoU < 0.85 that
fall in the worst-scored 20% ("recall@20%"); the issue's bars are Spearman >= 0.6 and
recall@20% >= 0.5.

That recall bar can only be met when at most 40% of the masks are bad (the worst 20% cannot
hold half of more), but this mix is over half bad (two of the three degraded masks by
construction, most 1-2 click predictions). A review queue after pre-labelling holds a minority
of bad masks, so recall@20% is also reported at a stated share of bad masks
(`--bad-share`, default 25%): the bad masks are subsampled to that share (all good masks
kept, 200 seeded draws, mean and 5th percentile). Ranking quality is unchanged by this; only
the bar becomes reachable. Both numbers are printed.

How the score is computed can be compared (how `score_size` was chosen): `--score-size 320 256
192` scores every mask with `score_mask` in views of those sizes (the plain network, as served),
`--flip-score-size 320` also with the flip-averaged runner in a view of that size (how scores
were computed before); each configuration gets its own Spearman and recall figures, and the
first one is the row's `score`. Without them the score is `score_mask` as configured. Such a
choice is made with `--heldout`: the held-out objects of the training folders
(benchmarks/heldout.py's `heldout_objects`, `--extra` further objects per image), never
GrabCut or Berkeley, which are the published test sets.

    python benchmarks/quality_ranking.py [--weights W] [--max-objects N] [--out results/...json]
    python benchmarks/quality_ranking.py --heldout --flip-score-size 320 \
        --score-size 320 256 192 --out results/quality_ranking_score_size.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLICKS = (1, 2, 3, 4, 5)
DEGRADED = (0.5, 0.7, 0.9)
BAD_IOU = 0.85


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def recall_worst(scores: ArrayLike, ious: ArrayLike, fraction: float = 0.2) -> float:
    """Share of the bad masks (IoU < 0.85) that are among the worst-scored `fraction`."""
    scores_a, ious_a = np.asarray(scores), np.asarray(ious)
    bad = ious_a < BAD_IOU
    if not bad.any():
        return float("nan")
    k = max(1, int(round(fraction * len(scores_a))))
    worst = np.argsort(scores_a, kind="stable")[:k]
    return float(bad[worst].sum() / bad.sum())


def recall_at_share(scores: ArrayLike, ious: ArrayLike, bad_share: float,
                    draws: int = 200, seed: int = 0) -> tuple[float, float]:
    """recall@20% when bad masks make up `bad_share` of the set: (mean, 5th percentile) over
    random subsets of the bad masks (all good masks kept). With fewer bad masks than the share
    asks for, the whole set is used."""
    scores_a, ious_a = np.asarray(scores), np.asarray(ious)
    bad, good = np.nonzero(ious_a < BAD_IOU)[0], np.nonzero(ious_a >= BAD_IOU)[0]
    n_bad = int(round(bad_share / (1 - bad_share) * len(good)))
    if n_bad >= len(bad) or n_bad == 0:
        r = recall_worst(scores_a, ious_a)
        return r, r
    rng = np.random.default_rng(seed)
    got = []
    for _ in range(draws):
        keep = np.concatenate([good, rng.choice(bad, n_bad, replace=False)])
        got.append(recall_worst(scores_a[keep], ious_a[keep]))
    return float(np.mean(got)), float(np.percentile(got, 5))


def masks_for(predictor, sample, seed: int = 0):
    """(kind, mask, own-probabilities-or-None) for one object."""
    from cdnet.eval.clicker import next_click
    from cdnet.eval.prior import degrade

    out = []
    session = predictor.session(sample.image)
    pred = np.zeros(sample.gt.shape, bool)
    clicks = []
    for k in CLICKS:
        click = next_click(sample.gt, pred, sample.ignore, clicks)
        if click is None:
            break
        clicks.append(click)
        result = session.add_click(click)
        pred = result.mask
        out.append((f"click{k}", pred.copy(), result.probs))
    for target in DEGRADED:
        mask = degrade(sample.gt, target, seed, sample.name, sample.ignore)
        out.append((f"degraded{target}", mask, None))
    return out


def scorers(predictor, sizes: list[int], flip_sizes: list[int]) -> dict:
    """{label: score(image, mask)} for each configuration asked for ("flip@320", "plain@256");
    none asked: {"served": predictor.score_mask}. Plain ones are `score_mask` itself with that
    `score_size`; flip ones run the same view through the flip-averaged runner (the scoring
    before score_size: `FlipAveraged` at the zoom size)."""
    from dataclasses import replace

    from cdnet.inference.image import as_mask
    from cdnet.inference.runner import FlipAveraged

    out: dict = {}
    for size in flip_sizes:
        if not isinstance(predictor.runner, FlipAveraged):
            raise SystemExit("--flip-score-size needs the predictor loaded with flip on")

        def flipped(image, mask, size=size):
            img = predictor.prepare(image)
            m = as_mask(mask, img.shape, "mask")
            net = predictor.framing.for_mask(m, size).transform(img, (), m)
            return float(predictor.runner(*net).quality[1])
        out[f"flip@{size}"] = flipped
    for size in sizes:
        out[f"plain@{size}"] = replace(predictor, score_size=size).score_mask
    return out or {"served": predictor.score_mask}


def run_samples(predictor, label: str, samples, sources: list[str], scoring: dict) -> list[dict]:
    """The rows of `samples` (each from dataset `sources[i]`), every mask scored by each of
    `scoring`'s configurations; the first is the row's `score`."""
    from cdnet.eval.metrics import iou

    rows = []
    first = next(iter(scoring))
    for i, (sample, source) in enumerate(zip(samples, sources, strict=True)):
        image = predictor.prepare(sample.image)  # prepared once for all the runs
        zero = predictor.predict(image).probs
        for kind, mask, probs in masks_for(predictor, sample):
            if not mask.any():
                conf = 0.0
            else:
                conf = float((probs if probs is not None else zero)[mask].mean())
            scores = {name: float(score(image, mask)) for name, score in scoring.items()}
            rows.append({"dataset": source, "object": sample.name, "kind": kind,
                         "iou": iou(mask, sample.gt, sample.ignore),
                         "score": scores[first], "scores": scores, "baseline": conf})
        print(f"\r{label}: {i + 1}/{len(samples)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def run_dataset(predictor, name: str, max_objects: int | None,
                scoring: dict | None = None) -> list[dict]:
    from cdnet.eval.datasets import Dataset

    ds = Dataset(name, max_objects)
    samples = list(ds)
    return run_samples(predictor, ds.name, samples, [ds.name] * len(samples),
                       scoring or {"served": predictor.score_mask})


def heldout_rows(predictor, shared: Path, extra: int, max_objects: int | None,
                 scoring: dict) -> list[dict]:
    """Rows for the held-out training objects (benchmarks/heldout.py's split), each row's
    dataset its training folder; `max_objects`: that many, evenly spaced over the list."""
    from benchmarks.heldout import heldout_objects

    samples, sources = heldout_objects(shared, extra)
    if max_objects is not None and max_objects < len(samples):
        keep = np.linspace(0, len(samples) - 1, max_objects).round().astype(int)
        samples, sources = [samples[i] for i in keep], [sources[i] for i in keep]
    return run_samples(predictor, "heldout", samples, sources, scoring)


def summarize(rows: list[dict], bad_share: float = 0.25) -> dict:
    """Spearman and worst-20% recall for the score and the baseline. `recall_ceiling` is the
    best recall any ranking can reach: when more than 20% of the masks are bad, the worst 20%
    cannot hold them all (read recall against it)."""
    ious = [r["iou"] for r in rows]
    bad = int(sum(i < BAD_IOU for i in ious))
    k = max(1, int(round(0.2 * len(rows))))
    out = {"masks": len(rows), "bad_masks": bad,
           "recall_ceiling": round(min(1.0, k / bad), 4) if bad else None,
           "mean_iou": round(float(np.mean(ious)), 4), "bad_share": bad_share}
    def figures(vals: list[float]) -> dict:
        mean, p5 = recall_at_share(vals, ious, bad_share)
        return {"spearman": round(spearman(vals, ious), 4),
                "recall_worst20": round(recall_worst(vals, ious), 4),
                "recall_worst20_at_share": round(mean, 4),
                "recall_worst20_at_share_p5": round(p5, 4)}

    for key in ("score", "baseline"):
        out[key] = figures([r[key] for r in rows])
    if rows and "scores" in rows[0]:
        out["configurations"] = {name: figures([r["scores"][name] for r in rows])
                                 for name in rows[0]["scores"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="weights file (default: bundled)")
    ap.add_argument("--datasets", default="grabcut,berkeley")
    ap.add_argument("--max-objects", type=int, default=None,
                    help="objects per dataset (--heldout: in all, evenly spaced)")
    ap.add_argument("--heldout", action="store_true",
                    help="the held-out training objects instead of --datasets (for choices)")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared",
                    help="--heldout: the folder holding datasets/train_*")
    ap.add_argument("--extra", type=int, default=3,
                    help="--heldout: further objects per held-out image")
    ap.add_argument("--score-size", type=int, nargs="+", default=[],
                    help="score with score_mask in views of these sizes (plain network)")
    ap.add_argument("--flip-score-size", type=int, nargs="+", default=[],
                    help="also score with the flip-averaged runner in views of these sizes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write rows + summary as JSON")
    ap.add_argument("--bad-share", type=float, default=0.25,
                    help="share of bad masks for the second recall figure (0 < x < 1)")
    ap.add_argument("--summarize", type=Path, default=None,
                    help="only summarise the rows of an earlier --out file")
    args = ap.parse_args(argv)
    if not 0 < args.bad_share < 1:
        ap.error("--bad-share must be between 0 and 1")
    if args.summarize:
        report = json.loads(args.summarize.read_text())
        _print_and_save(_summaries(report, report["rows"], args.bad_share), None)
        return 0

    from cdnet import load_predictor
    from cdnet.eval.datasets import SHARED_DATASETS

    if not SHARED_DATASETS.is_dir():
        print(f"datasets not found at {SHARED_DATASETS} (../shared absent)", file=sys.stderr)
        return 2
    predictor = load_predictor(args.weights, threads=args.threads)
    scoring = scorers(predictor, args.score_size, args.flip_score_size)
    started = time.time()
    rows = []
    report: dict = {"model_version": predictor.model_version, "weights": args.weights,
                    "max_objects": args.max_objects, "score_size": predictor.score_size,
                    "scorings": list(scoring)}
    if args.heldout:
        report["heldout"] = {"shared": str(args.shared), "extra": args.extra}
        rows = heldout_rows(predictor, args.shared, args.extra, args.max_objects, scoring)
    for name in [] if args.heldout else args.datasets.split(","):
        rows += run_dataset(predictor, name.strip(), args.max_objects, scoring)
    report["rows"] = rows
    report["seconds"] = round(time.time() - started, 1)
    _print_and_save(_summaries(report, rows, args.bad_share), args.out)
    return 0


def _summaries(report: dict, rows: list[dict], bad_share: float) -> dict:
    """`report` with per-dataset and overall summaries of `rows` filled in."""
    by_set: dict[str, list[dict]] = {}
    for r in rows:
        by_set.setdefault(r["dataset"], []).append(r)
    report["datasets"] = {name: summarize(rs, bad_share) for name, rs in by_set.items()}
    report["overall"] = summarize(rows, bad_share)
    return report


def _print_and_save(report: dict, out: Path | None) -> None:
    print(f"model {report['model_version']}  ({report['seconds']} s)")
    print(f"{'set':<10} {'masks':>6} {'bad':>5}  {'Spearman score':>15} {'baseline':>9}  "
          f"{'worst20% recall score':>22} {'baseline':>9} {'ceiling':>8}  "
          f"{'at ' + format(report['overall']['bad_share'], '.0%') + ' bad: score':>18} "
          f"{'(p5)':>6} {'baseline':>9}")
    for name, s in [*report["datasets"].items(), ("overall", report["overall"])]:
        print(f"{name:<10} {s['masks']:>6} {s['bad_masks']:>5}  {s['score']['spearman']:>15.3f} "
              f"{s['baseline']['spearman']:>9.3f}  {s['score']['recall_worst20']:>22.3f} "
              f"{s['baseline']['recall_worst20']:>9.3f} {s['recall_ceiling'] or 0:>8.3f}  "
              f"{s['score']['recall_worst20_at_share']:>18.3f} "
              f"{s['score']['recall_worst20_at_share_p5']:>6.3f} "
              f"{s['baseline']['recall_worst20_at_share']:>9.3f}")
    configs = report["overall"].get("configurations") or {}
    if len(configs) > 1:
        print(f"overall by scoring: {'Spearman':>9} {'worst20% recall':>16} "
              f"{'at ' + format(report['overall']['bad_share'], '.0%') + ' bad':>11} {'(p5)':>6}")
        for name, c in configs.items():
            print(f"  {name:<17} {c['spearman']:>9.3f} {c['recall_worst20']:>16.3f} "
                  f"{c['recall_worst20_at_share']:>11.3f} {c['recall_worst20_at_share_p5']:>6.3f}")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
