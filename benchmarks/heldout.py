"""Compare weights files (and network view sizes) on held-out training objects.

    python benchmarks/heldout.py runs/s4/snap_0600.pt cdnet/weights/cdnet_mnv2.pt \
        [--sizes 320/320 384/400] [--mode empty|prior] [--extra 3] [--threads 2]
        [--progressive on --joins 8 12] [--flip off|on|both] [--backend auto|onnx|torch]

This is how a checkpoint is chosen before it ships: the images that `clicksmith train` holds out
(5% of the `train_*` images by a hash of the name, the same split as training's validation),
their first object plus up to `--extra` further objects each, NoC protocol, progressive off
(or on, with one column per `--joins` value: how the progressive merge's join is chosen);
`--flip both` adds a column with test-time flip averaging (how `flip_average` is chosen).
GrabCut and Berkeley are never used for a choice: they are the published test sets.
Prints one row per weights file and one column per view size (pooled NoC@90, lower is better,
and the mean of the training folders' NoC@90, which weighs every source alike), and writes the
JSON of every run, with each folder's NoC@90 and each object's, to --out. Each later weights
file is then set against the first in the same column: the mean of the per-object NoC@90
differences and its standard error, since a gap inside about two of those is noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cdnet.eval.cli import SWITCH_RUNS  # noqa: E402
from cdnet.eval.metrics import noc, paired_difference, summarize  # noqa: E402
from cdnet.eval.noc import evaluate  # noqa: E402
from cdnet.fileio import atomic_write_bytes  # noqa: E402
from cdnet.inference.predictor import DROP_FAR_MODES, load_predictor  # noqa: E402
from cdnet.inference.runner import FlipAveraged  # noqa: E402
from cdnet.train.cli import DEFAULT_DATASETS  # noqa: E402
from cdnet.train.data import split_folders  # noqa: E402
from cdnet.train.loop import TrainConfig, validation_samples  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    """`320/400` -> (base_size 320, zoom_size 400)."""
    try:
        base, zoom = (int(v) for v in text.split("/"))
    except ValueError:
        msg = f"size must be BASE/ZOOM, e.g. 320/320, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not (64 <= base <= 1024 and 64 <= zoom <= 1024):
        raise argparse.ArgumentTypeError(f"sizes must lie in 64..1024, got {text!r}")
    return base, zoom


def heldout_objects(shared: Path, extra: int) -> tuple[list, list[str]]:
    """The held-out objects and, for each, the training folder it comes from.

    Split folder by folder (the split hashes each image name, so this is training's split):
    the pooled NoC weighs a source by its number of objects, and a source with many small
    components per image (CamVid) would otherwise decide a choice unseen.
    """
    roots = [shared / "datasets" / d for d in DEFAULT_DATASETS]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise SystemExit(f"training data not found: {', '.join(missing)}")
    samples, sources = [], []
    for root in roots:
        _, val = split_folders([root], TrainConfig.val_fraction)
        found = validation_samples(val, None, extra_per_image=extra)
        samples += found
        sources += [root.name] * len(found)
    return samples, sources


def per_source(result: dict, sources: list[str]) -> dict:
    """NoC@90 of each training folder's held-out objects, and their unweighted mean."""
    ious: dict[str, list] = {}
    for obj, src in zip(result["per_object"], sources, strict=True):
        ious.setdefault(src, []).append(obj["ious"])
    rows = {}
    for src, v in ious.items():
        got = summarize(v, result["max_clicks"])
        rows[src] = {"objects": len(v), "noc90": got["noc90"], "miou@1": round(got["miou@1"], 4)}
    return {"per_source": rows,
            "noc90_source_mean": sum(r["noc90"] for r in rows.values()) / len(rows)}


def first_click_text(result: dict) -> str:
    """`, far pieces 12%`: the share of first-click masks with a far piece (empty starts)."""
    first = result.get("first_click")
    return "" if first is None else f", far pieces {first['with_far']:.0%}"


def column_name(run: dict) -> str:
    """The label of a run's column (view sizes, progressive join, flip): `320/320 join 8 flip`."""
    join = run["progressive_join"]
    drop = run.get("drop_far", "off")
    return (f"{run['base_size']}/{run['zoom_size']}" + ("" if join is None else f" join {join:g}")
            + (" flip" if run["flip"] else "") + ("" if drop == "off" else f" drop-far {drop}"))


def differences(runs: list[dict]) -> list[str]:
    """Each later weights file against the first, column by column: NoC@90 change ± its
    paired standard error over the same objects (negative: fewer clicks than the first).
    Returns the printed lines and records each comparison in its run as `noc90_vs_first`."""
    first = runs[0]["weights"]
    reference = {column_name(r): r for r in runs if r["weights"] == first}
    lines = []
    for r in runs:
        ref = reference.get(column_name(r))
        if r["weights"] == first or ref is None:
            continue
        mean, se = paired_difference(ref["noc90_per_object"], r["noc90_per_object"])
        r["noc90_vs_first"] = {"weights": first, "mean": mean, "standard_error": se}
        lines.append(f"{r['weights']} vs {first} ({column_name(r)}): NoC@90 {mean:+.2f} +- "
                     f"{se:.2f} (paired standard error, {len(r['noc90_per_object'])} objects)")
    return lines


def drop_far_differences(runs: list[dict]) -> list[str]:
    """Each `--drop-far` column against the same weights' and settings' column without it:
    NoC@90 and IoU after one click, paired over the same objects (how drop-far is chosen: it
    stays off unless both improve)."""
    plain = {(r["weights"], column_name({**r, "drop_far": "off"})): r
             for r in runs if r["drop_far"] == "off"}
    lines = []
    for r in runs:
        ref = plain.get((r["weights"], column_name({**r, "drop_far": "off"})))
        if r["drop_far"] == "off" or ref is None:
            continue
        n_mean, n_se = paired_difference(ref["noc90_per_object"], r["noc90_per_object"])
        i_mean, i_se = paired_difference(ref["iou1_per_object"], r["iou1_per_object"])
        r["drop_far_vs_off"] = {"noc90": [n_mean, n_se], "iou1": [i_mean, i_se]}
        lines.append(f"{r['weights']} {column_name(r)} vs drop-far off: NoC@90 {n_mean:+.3f} +- "
                     f"{n_se:.3f}, IoU@1 {i_mean:+.4f} +- {i_se:.4f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", nargs="+", help="weights files (.pt) to compare")
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=[(320, 320)],
                    help="BASE/ZOOM network view sizes (default 320/320)")
    ap.add_argument("--mode", choices=["empty", "prior"], default="empty")
    ap.add_argument("--progressive", choices=["off", "on"], default="off")
    ap.add_argument("--joins", nargs="+", type=float,
                    help="progressive_join values to compare (network px; default: configured)")
    ap.add_argument("--flip", choices=["off", "on", "both"], default="off",
                    help="test-time flip averaging (both: one column each)")
    ap.add_argument("--drop-far", nargs="+", choices=DROP_FAR_MODES, default=["off"],
                    help="drop far pieces no positive click explains (cdnet.inference.pieces): "
                         "one column per mode")
    ap.add_argument("--extra", type=int, default=3, help="further objects per held-out image")
    ap.add_argument("--max-objects", type=int, help="only the first N objects (smoke runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto",
                    help="auto: ONNX Runtime where an ONNX file exported from those weights lies "
                         "beside them (about 3x faster; `clicksmith export-onnx --weights W`), "
                         "torch otherwise")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "heldout.json"))
    args = ap.parse_args(argv)
    if args.joins and args.progressive != "on":
        ap.error("--joins applies only with --progressive on (off, every join is the same run)")
    joins = args.joins or [None]
    flips = SWITCH_RUNS[args.flip]
    for w in args.weights:
        if not Path(w).is_file():
            print(f"no weights file {w}", file=sys.stderr)
            return 2
    samples, sources = heldout_objects(Path(args.shared), args.extra)
    samples, sources = samples[: args.max_objects], sources[: args.max_objects]
    progressive = args.progressive == "on"
    print(f"{len(samples)} held-out objects, mode {args.mode}, progressive {args.progressive}")
    runs = []
    for w in args.weights:
        base = load_predictor(w, progressive=progressive, backend=args.backend,
                              threads=args.threads, flip=False)
        row = [w + ":"]
        for (b, z), join, flip, drop in itertools.product(args.sizes, joins, flips,
                                                          args.drop_far):
            join = base.progressive_join if join is None else join
            runner = FlipAveraged(base.runner) if flip else base.runner
            p = dataclasses.replace(base, runner=runner, base_size=b, zoom_size=z,
                                    progressive_join=join, drop_far=drop)
            run = {"weights": w, "runner": type(base.runner).__name__,
                   "base_size": b, "zoom_size": z, "flip": flip, "drop_far": drop,
                   "progressive_join": join if progressive else None}
            name = column_name(run)
            r = evaluate(p, samples, args.mode, label=f"{w}@{name}", progressive=progressive)
            r.update(per_source(r, sources))
            objects = r.pop("per_object")
            r["noc90_per_object"] = [noc(o["ious"], 0.90, r["max_clicks"]) for o in objects]
            r["iou1_per_object"] = [o["ious"][0] for o in objects]
            runs.append({**run, **r})
            row.append(f"{name} {r['noc90']:.2f} (source mean {r['noc90_source_mean']:.2f}"
                       f", mIoU@1 {r['miou@1']:.3f}" + first_click_text(r) + ")")
        print("  ".join(row))
    for line in differences(runs) + drop_far_differences(runs):
        print(line)
    atomic_write_bytes(Path(args.out), json.dumps(runs, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
