"""`clicksmith eval`: NoC evaluation of the model and the OpenCV baseline, side by side.

Examples:
  clicksmith eval grabcut berkeley                      # bundled model (progressive off) + GrabCut
  clicksmith eval ./my_folder --weights w.pt --progressive both --baseline none
  clicksmith eval grabcut --prior degraded              # start from a pre-label at IoU ~0.75
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cdnet.eval.datasets import REPO_ROOT, resolve
from cdnet.eval.metrics import MAX_CLICKS
from cdnet.eval.noc import evaluate
from cdnet.eval.report import write_report
from cdnet.inference import defaults

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"

# the runs an on/off/both option asks for (progressive, flip), shared with the benchmarks
SWITCH_RUNS = {"on": [True], "off": [False], "both": [False, True]}


def flip_choice(choice: str | None) -> bool:
    """`--flip on|off`; not given: FLIP_AVERAGE from the environment, else the model's default
    (cdnet.inference.defaults, which the served configuration repeats), so a measurement runs
    the configuration that serves unless told otherwise."""
    if choice is None:
        raw = os.environ.get("FLIP_AVERAGE")
        if raw is None:
            return defaults.FLIP_AVERAGE
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return choice == "on"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("datasets", nargs="*", default=["grabcut", "berkeley"],
                        help="dataset names under ../shared/datasets or folders with images/ and "
                             "masks/ (default: grabcut berkeley)")
    parser.add_argument("--weights", default=None,
                        help="model weights file (default: the bundled weights)")
    parser.add_argument("--model", choices=["cdnet", "none"], default="cdnet",
                        help="evaluate the CDNet model (none: only the baseline)")
    parser.add_argument("--progressive", choices=["on", "off", "both"], default="off",
                        help="progressive mode of the model (default off, as the targets are)")
    parser.add_argument("--flip", choices=["on", "off"], default=None,
                        help="test-time flip averaging (default: FLIP_AVERAGE, else "
                             "config/defaults.toml)")
    parser.add_argument("--prior", choices=["none", "degraded"], default="none",
                        help="start from an empty mask or from the GT degraded to --prior-iou")
    parser.add_argument("--prior-iou", type=float, default=0.75)
    parser.add_argument("--seed", type=int, default=0, help="seed of the degraded priors")
    parser.add_argument("--baseline", choices=["grabcut", "none"], default="grabcut",
                        help="classical baseline measured with the same clicks")
    parser.add_argument("--max-objects", type=int, default=None,
                        help="only the first N objects of each dataset")
    parser.add_argument("--max-clicks", type=int, default=MAX_CLICKS)
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--stem", default="noc", help="output file name stem")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _fail(msg: str) -> int:
    print(f"clicksmith eval: {msg}", file=sys.stderr)
    return 2


def _methods(args: argparse.Namespace) -> list[tuple[str, bool | None, Any]]:
    """(label, progressive, predictor) to evaluate, models first."""
    methods: list[tuple[str, bool | None, Any]] = []
    if args.model == "cdnet":
        from cdnet import load_predictor

        flip = flip_choice(args.flip)
        for prog in SWITCH_RUNS[args.progressive]:
            p = load_predictor(args.weights, progressive=prog, flip=flip)
            methods.append((p.label, prog, p))
    if args.baseline == "grabcut":
        from cdnet.eval.grabcut_baseline import GrabCutPredictor

        methods.append(("opencv-grabcut", None, GrabCutPredictor()))
    return methods


def run(args: argparse.Namespace) -> int:
    if args.max_objects is not None and args.max_objects < 1:
        return _fail(f"--max-objects must be >= 1, got {args.max_objects}")
    if not 1 <= args.max_clicks <= 100:
        return _fail(f"--max-clicks must be in 1..100, got {args.max_clicks}")
    if not 0.0 < args.prior_iou < 1.0:
        return _fail(f"--prior-iou must be in (0, 1), got {args.prior_iou}")
    if args.weights is not None and not Path(args.weights).is_file():
        return _fail(f"--weights {args.weights} is not a file")
    if args.model == "none" and args.baseline == "none":
        return _fail("nothing to evaluate: --model none and --baseline none")
    try:
        folders = [resolve(d) for d in args.datasets]
    except ValueError as exc:
        return _fail(str(exc))
    try:
        methods = _methods(args)
    except ImportError as exc:
        return _fail(f"the CDNet predictor is not available in this build ({exc})")
    except ValueError as exc:
        return _fail(f"cannot load the model: {exc}")
    mode = "prior" if args.prior == "degraded" else "empty"
    results = []
    try:
        for folder in folders:
            for label, prog, predictor in methods:
                r = evaluate(predictor, folder, mode, args.max_objects, not args.no_progress,
                             max_clicks=args.max_clicks, prior_iou=args.prior_iou,
                             seed=args.seed, label=label, progressive=prog)
                results.append(r)
                shown = "" if prog is None else f"progressive {'on' if prog else 'off'}"
                print(f"{r['dataset']:<12} {label:<24} {shown:<15} "
                      f"NoC@85 {r['noc85']:5.2f}  "
                      f"NoC@90 {r['noc90']:5.2f}  NoF@90 {r['nof90']:3d}  "
                      f"mIoU@1 {r['miou@1']:.3f}  s/click {r['spc']:.3f}", flush=True)
    except ValueError as exc:
        return _fail(str(exc))
    paths = write_report(results, args.out, args.stem)
    print("\n".join(f"wrote {p}" for p in paths.values()))
    return 0
