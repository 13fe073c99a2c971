"""The full NoC benchmark: our model (progressive off and on, test-time flip off and on) and the
OpenCV GrabCut baseline on GrabCut and Berkeley, with the same harness and clicks, beside the
published anchors.

    python benchmarks/noc.py [--weights w.pt] [--max-objects N] [--prior degraded]
                             [--flip off|on|both] [--out benchmarks/results] [--no-baseline-cache]

Writes `noc_<mode>.md/.json/.png` to --out and prints the table with the anchors. The anchors
are reference text copied from the papers' READMEs (see cdnet/eval/report.py), not measured here.

Why the baseline cache: GrabCut costs ~1-3 s per click on this machine's shared CPU (an hour or
more for both datasets), and it does not change when the model is retrained. Each finished
object is appended to `<out>/grabcut_baseline_<dataset>_<mode>.jsonl`, whose first line is a key
of every setting that affects the numbers (GrabCut constants and code, max clicks, objects,
prior seed/IoU, dataset file list); a later run reuses those objects only when the key matches
exactly, so an interrupted baseline resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cdnet.eval import grabcut_baseline as gcb  # noqa: E402
from cdnet.eval.cli import SWITCH_RUNS  # noqa: E402
from cdnet.eval.datasets import Dataset  # noqa: E402
from cdnet.eval.metrics import MAX_CLICKS  # noqa: E402
from cdnet.eval.noc import evaluate  # noqa: E402
from cdnet.eval.report import markdown_report, write_report  # noqa: E402
from cdnet.fileio import atomic_write_bytes  # noqa: E402

DATASETS = ("grabcut", "berkeley")


def baseline_key(ds: Dataset, mode: str, args: argparse.Namespace) -> str:
    """Everything the baseline's per-object numbers depend on, hashed (not --max-objects: a
    shorter run reuses the first objects of a longer one and vice versa)."""
    parts = {
        "gc": [gcb.ITERATIONS, gcb.DISK_RADIUS, gcb.EXPAND, gcb.MIN_MARGIN, gcb.RING,
               gcb.RING_MIN],
        "mode": mode, "max_clicks": MAX_CLICKS,
        "prior": [args.prior_iou, args.seed] if mode == "prior" else None,
        "files": sorted(p.name for p in (ds.root / "masks").glob("*.png")),
        "code": hashlib.sha256(Path(gcb.__file__).read_bytes()).hexdigest()[:16],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def run_baseline(ds: Dataset, mode: str, args: argparse.Namespace) -> dict:
    """The GrabCut baseline on `ds`, resumed object by object from the cache when it matches."""
    cache = Path(args.out) / f"grabcut_baseline_{ds.name}_{mode}.jsonl"
    key = baseline_key(ds, mode, args)
    done: dict[str, dict] = {}
    if args.baseline_cache and cache.is_file():
        lines = cache.read_text().splitlines()
        if lines and json.loads(lines[0]).get("key") == key:
            for line in lines[1:]:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by an interrupted run
                    continue
                done[obj["name"]] = obj
            print(f"{ds.name}: reusing {len(done)} GrabCut baseline objects from {cache}",
                  flush=True)
    if not done:
        atomic_write_bytes(cache, (json.dumps({"key": key}) + "\n").encode())

    def append(obj: dict) -> None:
        with open(cache, "a") as f:
            f.write(json.dumps(obj) + "\n")

    return evaluate(gcb.GrabCutPredictor(), ds, mode, prior_iou=args.prior_iou, seed=args.seed,
                    label="opencv-grabcut", done=done, on_object=append)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="weights file (default: bundled)")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--max-objects", type=int, default=None)
    ap.add_argument("--prior", choices=["none", "degraded"], default="none")
    ap.add_argument("--prior-iou", type=float, default=0.75)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progressive", choices=["on", "off", "both"], default="both")
    ap.add_argument("--flip", choices=["on", "off", "both"], default="both",
                    help="test-time flip averaging; a flipped run is labelled '<version> +flip'")
    ap.add_argument("--no-model", action="store_true", help="only the GrabCut baseline")
    ap.add_argument("--no-baseline", action="store_true", help="only our model")
    ap.add_argument("--no-baseline-cache", dest="baseline_cache", action="store_false")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()
    mode = "prior" if args.prior == "degraded" else "empty"

    predictors = []
    if not args.no_model:
        from cdnet import load_predictor

        for flip in SWITCH_RUNS[args.flip]:
            for prog in SWITCH_RUNS[args.progressive]:
                predictors.append((prog, load_predictor(args.weights, progressive=prog,
                                                        flip=flip)))
    results = []
    for name in args.datasets:
        ds = Dataset(name, args.max_objects)
        for prog, p in predictors:
            r = evaluate(p, ds, mode, prior_iou=args.prior_iou, seed=args.seed,
                         label=p.label, progressive=prog)
            results.append(r)
            print(f"{ds.name:<10} {p.label} progressive {'on' if prog else 'off'}: "
                  f"NoC@90 {r['noc90']:.2f}", flush=True)
        if not args.no_baseline:
            r = run_baseline(ds, mode, args)
            results.append(r)
            print(f"{ds.name:<10} opencv-grabcut: NoC@90 {r['noc90']:.2f}", flush=True)
    if not results:
        print("nothing to evaluate (--no-model and --no-baseline)", file=sys.stderr)
        return 2
    paths = write_report(results, args.out, f"noc_{mode}")
    print()
    print(markdown_report(results))
    print("\n".join(f"wrote {p}" for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
