"""`clicksmith train`: the training config is the TrainConfig defaults plus these flags."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cdnet.eval.datasets import SHARED_DATASETS

DEFAULT_DATASETS = ["train_coco_mval", "train_coco128seg", "train_ccp_clothing", "train_humanseg",
                    "train_feralcats", "train_weizmann_horse", "train_camvid",
                    "train_ade20k_sample", "train_bsds500", "train_msrc"]


def parse_weight(text: str) -> float | None:
    """`text` as a weight (finite, >= 0: `valid_weight`), or None when it is not one."""
    from cdnet.train.data import valid_weight

    try:
        value = float(text)
    except ValueError:
        return None
    return value if valid_weight(value) else None


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (the rule sampling weights follow too)."""
    value = parse_weight(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    from cdnet.train.data import VAL_FRACTION

    parser.add_argument("--run-dir", default="runs/mnv2")
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS,
                        help="names under ../shared/datasets or folders (images/, masks/)")
    parser.add_argument("--iterations", type=int, default=7000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--val-every", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads; 1 is faster when other jobs share the cores")
    parser.add_argument("--max-error-clicks", type=int, default=3,
                        help="simulated clicks from the model's own errors per batch (0..N)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU is lent")
    parser.add_argument("--workers", type=int, default=0,
                        help="sampling processes (0: sample in the training process)")
    parser.add_argument("--minutes", type=float,
                        help="stop after this many minutes; the learning rate follows the clock")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0,
                        help="how often last.pt and latest_model.pt are written")
    parser.add_argument("--keep-snapshots", action="store_true",
                        help="keep each checkpoint's weights as <run-dir>/snapshots/it_<N>.pt "
                             "(to average the last few)")
    parser.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                        help="share of images held out for validation (0 for a pack of training "
                             "images only: scripts/pack_training_data.py)")
    parser.add_argument("--init-weights", help="start from these weights instead of ImageNet")
    parser.add_argument("--fine-head", action="store_true",
                        help="add the stride-2 refinement head (to --init-weights without one)")
    parser.add_argument("--fine-trunk", action="store_true",
                        help="also feed that head the trunk's stride-2 features (adds the head "
                             "where --init-weights has none)")
    parser.add_argument("--teacher", help="a larger checkpoint to distil from")
    parser.add_argument("--boundary-weight", type=non_negative_float,
                        help="weight of the BCE over the object's 3 px boundary band against "
                             "the main loss's 1 (default: the loss's own, BOUNDARY_WEIGHT in "
                             "cdnet/train/losses.py)")
    parser.add_argument("--source-weight", action="append", default=[], metavar="FOLDER=W",
                        help="sampling weight of each image of a training folder (default 1; "
                             "repeatable), e.g. train_coco_mval=0.5")
    parser.add_argument("--resume", action="store_true", help="continue <run-dir>/last.pt")
    parser.add_argument("--publish", action="store_true",
                        help="copy the best weights into cdnet/weights/ when done")


def parse_source_weights(items: list[str]) -> dict[str, float]:
    """`["train_x=0.5", ...]` -> `{"train_x": 0.5}`; ValueError naming the bad item."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        w = parse_weight(value)
        if not sep or not name or w is None:
            raise ValueError(f"--source-weight {item!r}: expected FOLDER=W with W >= 0")
        out[Path(name).name] = w
    return out


def run(args: argparse.Namespace) -> int:
    from cdnet.model.io import BUNDLED_WEIGHTS
    from cdnet.train.loop import TrainConfig, train

    try:
        source_weights = parse_source_weights(args.source_weight)
    except ValueError as exc:
        print(f"clicksmith train: {exc}")
        return 2
    folders = []
    for d in args.datasets:
        p = Path(d) if Path(d).is_dir() else SHARED_DATASETS / d
        if not p.is_dir():
            print(f"clicksmith train: dataset {d!r} not found (looked in {SHARED_DATASETS})")
            return 2
        folders.append(str(p))
    cfg = TrainConfig(run_dir=args.run_dir, datasets=folders, iterations=args.iterations,
                      batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                      val_every=args.val_every, init_weights=args.init_weights,
                      teacher=args.teacher, threads=args.threads,
                      max_error_clicks=args.max_error_clicks, device=args.device,
                      workers=args.workers, minutes=args.minutes,
                      checkpoint_minutes=args.checkpoint_minutes,
                      val_fraction=args.val_fraction, keep_snapshots=args.keep_snapshots,
                      fine_head=args.fine_head, fine_trunk=args.fine_trunk,
                      source_weights=source_weights,
                      boundary_weight=TrainConfig.boundary_weight if args.boundary_weight is None
                      else args.boundary_weight)
    try:
        best = train(cfg, resume=args.resume)
    except (FileNotFoundError, ValueError) as exc:
        print(f"clicksmith train: {exc}")
        return 2
    print(f"best weights: {best}")
    if args.publish:
        shutil.copyfile(best, BUNDLED_WEIGHTS)
        print(f"published to {BUNDLED_WEIGHTS}; run `clicksmith export-onnx` next")
    return 0
