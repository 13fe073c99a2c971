"""Pack the training part of `train_*` folders small enough to travel to a lent GPU machine.

Why: a device call carries at most 64 MiB of files and the training folders hold ~170 MB.
Training caches every image at `MAX_SIDE` anyway, so the pack stores each image already at that
size (re-encoded as WebP, about half JPEG's bytes at equal quality) and each mask at its image's
new size: the same pixels training would cache, minus the encoder's small loss. Masks are
written uncompressed and then packed into one `masks.tar.xz` (region masks shrink ~8x more
under xz than as separate PNGs). Held-out images (the split training validates on and
benchmarks/heldout.py chooses on) are left out, so nothing chosen on can leak into a GPU run;
because the pack holds training images only, train on it with `--val-fraction 0`.

    python scripts/pack_training_data.py --out .gpu_data [--quality 80] [folders...]
    # there: tar -xJf .gpu_data/masks.tar.xz -C .gpu_data && clicksmith train --datasets ...
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cdnet.eval.datasets import SHARED_DATASETS  # noqa: E402
from cdnet.train.cli import DEFAULT_DATASETS  # noqa: E402
from cdnet.train.data import _load, split_folders  # noqa: E402
from cdnet.train.loop import TrainConfig  # noqa: E402


def pack_folder(folder: Path, out: Path, quality: int) -> tuple[int, int]:
    """Write `folder`'s training entries under `out`; returns (images, image bytes)."""
    train_entries, _ = split_folders([folder], TrainConfig.val_fraction)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    written = 0
    for e in train_entries:
        img = _load(e.image, gray=False)
        ok, webp = cv2.imencode(".webp", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_WEBP_QUALITY, quality])
        if not ok:
            raise ValueError(f"cannot encode {e.image}")
        (out / "images" / f"{e.image.stem}.webp").write_bytes(webp.tobytes())
        written += len(webp)
        for m in e.masks:
            mask = _load(m, gray=True, size=img.shape[:2])
            cv2.imwrite(str(out / "masks" / m.name), mask, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    return len(train_entries), written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", default=DEFAULT_DATASETS,
                    help="names under ../shared/datasets or folder paths")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--quality", type=int, default=80, help="WebP quality of the images")
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        print(f"pack_training_data: {args.out} is not empty; choose a new folder")
        return 2
    total, names = 0, []
    for name in args.folders:
        folder = Path(name) if Path(name).is_dir() else SHARED_DATASETS / name
        if not folder.is_dir():
            print(f"pack_training_data: {name!r} not found (looked in {SHARED_DATASETS})")
            return 2
        n, size = pack_folder(folder, args.out / folder.name, args.quality)
        total += size
        names.append(folder.name)
        print(f"{folder.name}: {n} training images, {size / 2**20:.1f} MiB of images")
    masks = args.out / "masks.tar.xz"
    with tarfile.open(masks, "w:xz", preset=6) as tar:
        for name in names:
            tar.add(args.out / name / "masks", arcname=f"{name}/masks")
            shutil.rmtree(args.out / name / "masks")
    total += masks.stat().st_size
    print(f"total {total / 2**20:.1f} MiB in {args.out} (masks in {masks.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
