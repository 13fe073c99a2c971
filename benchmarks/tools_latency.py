"""Auxiliary tools: superpixel method choice, refine-brush quality, latency at 1024x1024.

    python benchmarks/tools_latency.py [--images 10] [--out benchmarks/results/tools_latency.json]

1. Superpixels (GrabCut, first --images images at their own size): SLIC vs compact watershed vs
   Felzenszwalb at granularities 12/16/24 px: time per image, segment count, boundary recall
   (share of ground-truth edge pixels within 2 px of a superpixel edge).
2. Refine brush (all 50 GrabCut images): a fuzzy mask (ground truth down 16x, bilinear up) and a
   band painted over its edge (radius 6); boundary F-score inside the band (tolerance 1 and 2 px)
   before and after refine_band, plus the share of images that improved.
3. Latency at 1024x1024 (one GrabCut image resized): each tool's first action on the image (with
   per-image work: superpixels, scissors features) and the mean of the following actions; plus
   superpixel fills and lasso points through /predict in-process (Flask test client, RLE, session
   store), which is what Label Studio waits for.
Numbers depend on the machine: this 2-core box also runs a training job.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cdnet.tools import (  # noqa: E402
    boundary_fscore,
    boundary_recall,
    fill_path,
    lasso_path,
    mask_to_parts,
    refine_band,
    snap_path,
    superpixel_fill,
    superpixels,
)
from tests.tools.conftest import GRABCUT, coarse_mask, edge_band, grabcut_stems  # noqa: E402


def load(stem: str) -> tuple[np.ndarray, np.ndarray]:
    path = next((GRABCUT / "images").glob(f"{stem}.*"))
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return rgb, cv2.imread(str(GRABCUT / "masks" / f"{stem}.png"), 0) > 127


def ms(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, 1000.0 * (time.perf_counter() - t)


def superpixel_methods(stems: list[str]) -> dict:
    """Per method and granularity: mean time, segment count and boundary recall (recall grows
    with the segment count, so compare methods at similar counts)."""
    rows: dict[str, dict[str, list[float]]] = {}
    for stem in stems:
        rgb, gt = load(stem)
        for method, size in [(m, s) for m in ("slic", "watershed", "felzenszwalb")
                             for s in (12, 16, 24)]:
            labels, t = ms(superpixels, rgb, size, method)
            r = rows.setdefault(f"{method}_{size}", {"ms": [], "segments": [], "recall": []})
            r["ms"].append(t)
            r["segments"].append(float(labels.max() + 1))
            r["recall"].append(boundary_recall(labels, gt, tol=2))
    return {m: {k: round(statistics.mean(v), 3) for k, v in r.items()} for m, r in rows.items()}


def refine_quality(stems: list[str]) -> dict:
    rows = []
    for stem in stems:
        rgb, gt = load(stem)
        coarse = coarse_mask(gt, 16)
        band = edge_band(coarse, 6)
        refined, t = ms(refine_band, rgb, coarse, band)
        rows.append([boundary_fscore(m, gt, band, tol)[2]
                     for tol in (1, 2) for m in (coarse, refined)] + [t])
    a = np.array(rows)
    return {"images": len(rows), "f_tol1_before": round(a[:, 0].mean(), 4),
            "f_tol1_after": round(a[:, 1].mean(), 4), "f_tol2_before": round(a[:, 2].mean(), 4),
            "f_tol2_after": round(a[:, 3].mean(), 4),
            "improved_tol1": round(float((a[:, 1] > a[:, 0]).mean()), 3),
            "ms_whole_boundary_band": round(a[:, 4].mean(), 1)}


def contour_points(gt: np.ndarray, n: int) -> list[tuple[int, int]]:
    cs, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(cs, key=len).reshape(-1, 2)
    return [(int(y), int(x)) for x, y in c[np.linspace(0, len(c), n, endpoint=False).astype(int)]]


def latency_1024(stem: str) -> dict:
    rgb, gt = load(stem)
    rgb = cv2.resize(rgb, (1024, 1024), interpolation=cv2.INTER_AREA)
    gt = cv2.resize(gt.astype(np.uint8), (1024, 1024), interpolation=cv2.INTER_NEAREST) > 0
    out: dict[str, float] = {}
    labels, out["superpixel_first_ms"] = ms(superpixels, rgb, 16)
    ys, xs = np.nonzero(gt)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(ys), 20, replace=False)
    mask = np.zeros(gt.shape, bool)
    times = []
    for k in picks:
        (mask, _), t = ms(superpixel_fill, mask, labels, ys[k], xs[k], True)
        times.append(t)
    out["superpixel_next_ms"] = statistics.mean(times)
    pts = contour_points(gt, 24)
    seg = [ms(snap_path, rgb, a, b)[1] for a, b in zip(pts[:-1], pts[1:], strict=True)]
    out["lasso_point_ms"] = statistics.mean(seg)
    out["lasso_point_max_ms"] = max(seg)
    ring, t_close = ms(lasso_path, rgb, pts, True)
    region, t_fill = ms(fill_path, ring, gt.shape)
    out["lasso_close_fill_ms"] = t_fill
    coarse = coarse_mask(gt, 16)
    band = edge_band(coarse, 6)
    strokes = []
    for y, x in contour_points(coarse, 12):  # one local stroke: a 160 px stretch of the edge
        local = np.zeros(gt.shape, bool)
        local[max(0, y - 80):y + 80, max(0, x - 80):x + 80] = True
        strokes.append(ms(refine_band, rgb, coarse, band & local)[1])
    out["refine_stroke_ms"] = statistics.mean(strokes)
    out["refine_whole_edge_ms"] = ms(refine_band, rgb, coarse, band)[1]
    out["polygons_ms"] = ms(mask_to_parts, gt)[1]
    return {k: round(v, 2) for k, v in out.items()}


ANNOTATOR_PAUSE_S = 2.0


def through_predict(stem: str) -> dict:
    """Superpixel fills and lasso points at 1024x1024 through the app's /predict (in-process)."""
    from backend.app import create_app
    from cdnet import load_predictor
    from clicksmith.settings import load_settings
    from tests.backend.ls import keypoint, predict_body

    rgb, gt = load(stem)
    rgb = cv2.resize(rgb, (1024, 1024), interpolation=cv2.INTER_AREA)
    gt = cv2.resize(gt.astype(np.uint8), (1024, 1024), interpolation=cv2.INTER_NEAREST) > 0
    config = (REPO / "config" / "labeling-tools.xml").read_text()
    predictor = load_predictor(threads=1)
    # the images are written to a temporary folder below: the only one the app may read
    settings = load_settings(env={}, local_image_roots=tempfile.gettempdir())
    app = create_app(settings, predictor_loader=lambda s: predictor)
    app.extensions["clicksmith"].model.wait(60)
    client = app.test_client()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "img.png")
        cv2.imwrite(path, rgb[:, :, ::-1])
        ys, xs = np.nonzero(gt)
        times = {"superpixel": [], "lasso": []}
        rng = np.random.default_rng(1)
        for name, points in (("superpixel", [(ys[k], xs[k]) for k in
                                             rng.choice(len(ys), 8, replace=False)]),
                             ("lasso", contour_points(gt, 8))):
            for y, x in points:
                item = keypoint(100 * x / 1024, 100 * y / 1024, 1024, 1024, from_name=name)
                body = predict_body(path, [item], project=f"bench-{name}.1", config=config)
                t = time.perf_counter()
                r = client.post("/predict", json=body)
                times[name].append(1000 * (time.perf_counter() - t))
                assert r.status_code == 200, r.json
        # as annotators work: a smart click first (which starts the image's superpixels in
        # the background), a pause to look at the mask, then the first superpixel fill
        path2 = os.path.join(tmp, "img2.png")
        cv2.imwrite(path2, rgb[:, :, ::-1])
        y, x = ys[len(ys) // 2], xs[len(xs) // 2]
        click = keypoint(100 * x / 1024, 100 * y / 1024, 1024, 1024, from_name="click")
        assert client.post("/predict", json=predict_body(
            path2, [click], project="bench-warm.1", config=config)).status_code == 200
        time.sleep(ANNOTATOR_PAUSE_S)
        fill = keypoint(100 * x / 1024, 100 * y / 1024, 1024, 1024, from_name="superpixel")
        t = time.perf_counter()
        r = client.post("/predict", json=predict_body(
            path2, [click, fill], project="bench-warm.1", config=config))
        warm_first = 1000 * (time.perf_counter() - t)
        assert r.status_code == 200, r.json
    return {f"{k}_first_ms": round(v[0], 1) for k, v in times.items()} | {
        f"{k}_next_ms": round(statistics.mean(v[1:]), 1) for k, v in times.items()} | {
        f"superpixel_first_after_click_{ANNOTATOR_PAUSE_S:g}s_ms": round(warm_first, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10, help="GrabCut images for superpixels")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tools_latency.json"))
    ap.add_argument("--skip-predict", action="store_true", help="no /predict round trips")
    ap.add_argument("--predict-only", action="store_true",
                    help="only the /predict round trips; other figures kept from --out")
    args = ap.parse_args()
    stems = grabcut_stems()
    if not stems:
        print(f"GrabCut not found at {GRABCUT}", file=sys.stderr)
        return 2
    if args.predict_only:
        report = json.loads(Path(args.out).read_text())
    else:
        report = {"superpixels": superpixel_methods(stems[: args.images]),
                  "refine_grabcut": refine_quality(stems),
                  "latency_1024": latency_1024(stems[0])}
    if not args.skip_predict:
        report["predict_1024"] = through_predict(stems[0])
    print(json.dumps(report, indent=1))
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
