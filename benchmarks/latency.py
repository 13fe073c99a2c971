"""Per-click latency of the predictor: torch eager vs ONNX Runtime, beside OpenCV GrabCut.

    python benchmarks/latency.py [--clicks 20] [--sizes 512 1024 4000x3000] [--threads 2]

Prints the model's parameter count and fp32 size, then for each image size the median and p95
per-click time over a simulated 20-click session (clicks from the standard clicker on a real
GrabCut object resized to that size; a synthetic object when ../shared is absent), and the
ratio to the baseline: OpenCV grabCut (5 iterations, mask initialised from the same clicks).
`onnx+flip` is ONNX Runtime with test-time flip averaging (two network runs per click).
Target: median under 100 ms per click at 1024x1024 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdnet import load_predictor  # noqa: E402
from cdnet.eval.clicker import next_click  # noqa: E402
from cdnet.eval.grabcut_baseline import GrabCutPredictor  # noqa: E402
from cdnet.model.cdnet import count_parameters  # noqa: E402
from cdnet.model.io import BUNDLED_WEIGHTS, load_model, save_model  # noqa: E402
from cdnet.onnx_export import export_onnx, onnx_path_for  # noqa: E402

GRABCUT = ROOT.parent / "shared" / "datasets" / "grabcut"


def test_object(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    if (GRABCUT / "images").is_dir():
        img = cv2.cvtColor(cv2.imread(str(GRABCUT / "images" / "flower.jpg")), cv2.COLOR_BGR2RGB)
        gt = cv2.imread(str(GRABCUT / "masks" / "flower.png"), cv2.IMREAD_GRAYSCALE) > 127
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        gt = cv2.resize(gt.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        return img, gt
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    gt = np.zeros((h, w), bool)
    cv2.ellipse(gt.view(np.uint8), (w // 2, h // 2), (w // 5, h // 4), 20, 0, 360, 1, -1)
    img[gt] = (200, 160, 80)
    return img, gt


def session_times(predictor, img, gt, n_clicks: int) -> tuple[list[float], float]:
    """Seconds per click (first click excluded from the later-click list) and first click."""
    s = predictor.session(img)
    pred = np.zeros_like(gt)
    clicks, times = [], []
    for _ in range(n_clicks):
        c = next_click(gt, pred, None, clicks) or clicks[-1]
        t = time.perf_counter()
        r = s.add_click(c)
        times.append(time.perf_counter() - t)
        clicks.append(c)
        pred = r.mask
    return times[1:], times[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--sizes", nargs="+", default=["512", "1024", "4000x3000"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=["torch", "onnx", "onnx+flip", "grabcut"],
                    choices=["torch", "onnx", "onnx+flip", "grabcut"],
                    help="grabCut takes minutes per session at 4000x3000")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latency.json"))
    args = ap.parse_args()

    model, version = load_model()
    n = count_parameters(model)
    print(f"model {version}: {n:,} parameters = {n * 4 / 1e6:.2f} MB fp32")
    weights = BUNDLED_WEIGHTS if BUNDLED_WEIGHTS.is_file() else None
    tmp = tempfile.TemporaryDirectory()
    if weights is None or not onnx_path_for(weights).is_file():
        weights = Path(tmp.name) / "model.pt"
        save_model(model, weights)
        export_onnx(weights)
    methods = {
        "torch": load_predictor(weights, backend="torch", threads=args.threads, flip=False),
        "onnx": load_predictor(weights, backend="onnx", threads=args.threads, flip=False),
        "onnx+flip": load_predictor(weights, backend="onnx", threads=args.threads, flip=True),
        "grabcut": GrabCutPredictor(),
    }
    methods = {k: v for k, v in methods.items() if k in args.methods}
    cv2.setNumThreads(args.threads)
    rows = []
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x")) if "x" in size else (int(size), int(size))
        img, gt = test_object(h, w)
        row = {"size": f"{w}x{h}"}
        for name, p in methods.items():
            later, first = session_times(p, img, gt, args.clicks)
            row[name] = {"first_ms": first * 1e3,
                         "median_ms": statistics.median(later) * 1e3,
                         "p95_ms": float(np.percentile(later, 95)) * 1e3}
        rows.append(row)
        ref = "grabcut" if "grabcut" in methods else next(iter(methods))
        base = row[ref]["median_ms"]
        print(f"\n{row['size']}: per click (ms)      first   median     p95   x {ref}")
        for name in methods:
            r = row[name]
            print(f"  {name:<10}                 {r['first_ms']:7.1f} {r['median_ms']:8.1f} "
                  f"{r['p95_ms']:7.1f}   {r['median_ms'] / base:6.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model_version": version, "parameters": n,
                                          "threads": args.threads, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
