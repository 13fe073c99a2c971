"""Evaluation datasets: a folder of `images/`, `masks/` and optional `ignore/`, one object per mask.

Why a folder convention instead of per-benchmark loaders: GrabCut, Berkeley and any folder a
user brings are read by the same code, so a number measured on one is measured the same way on
all. Names such as `grabcut` resolve to `../shared/datasets/<name>` beside the repository.

Layout: `masks/<stem>.png` (uint8, >127 = object) belongs to `images/<stem>.<jpg|png|...>`; in
multi-object folders `masks/<stem>_<k>.png` belongs to `images/<stem>.*`. `ignore/<stem>.png`
(>127 = ignore; GrabCut's unlabelled boundary band is stored as 255) is excluded from IoU.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATASETS = REPO_ROOT / ".." / "shared" / "datasets"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_MULTI = re.compile(r"^(?P<stem>.+)_(?P<k>\d+)$")


@dataclass(frozen=True)
class Sample:
    """One object to segment: the image (HxWx3 RGB uint8), its mask and ignore band."""

    name: str
    image: np.ndarray
    gt: np.ndarray
    ignore: np.ndarray | None


def resolve(dataset: str | Path) -> Path:
    """A dataset name (`grabcut`) or a folder path -> the folder, with a clear error if absent."""
    p = Path(dataset).expanduser()
    if p.is_dir():
        return p.resolve()
    named = SHARED_DATASETS / str(dataset)
    if not p.is_absolute() and len(p.parts) == 1 and named.is_dir():
        return named.resolve()
    raise ValueError(
        f"dataset {str(dataset)!r} is neither a folder nor a name under {SHARED_DATASETS.resolve()}"
    )


def _read_gray(path: Path) -> np.ndarray:
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise ValueError(f"cannot read {path}")
    if a.ndim == 3:  # masks saved as RGB(A): any channel above 127 counts
        a = a[..., :3].max(axis=2)
    return a


def read_image(path: Path) -> np.ndarray:
    """Read an image file as HxWx3 RGB uint8 (16-bit and alpha are reduced)."""
    a = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if a is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(a, cv2.COLOR_BGR2RGB)


class Dataset:
    """A dataset folder, iterated lazily as `Sample`s in sorted mask-name order."""

    def __init__(self, dataset: str | Path, max_objects: int | None = None) -> None:
        self.root = resolve(dataset)
        self.name = self.root.name
        masks_dir, images_dir = self.root / "masks", self.root / "images"
        if not masks_dir.is_dir() or not images_dir.is_dir():
            raise ValueError(f"{self.root} needs images/ and masks/ subfolders")
        images: dict[str, Path] = {}
        for p in sorted(images_dir.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                images.setdefault(p.stem, p)
        self._items: list[tuple[str, Path, Path, Path | None]] = []
        for m in sorted(masks_dir.glob("*.png")):
            image = images.get(m.stem)
            multi = _MULTI.match(m.stem)
            if image is None and multi:
                image = images.get(multi.group("stem"))
            if image is None:
                raise ValueError(f"mask {m.name} in {self.root} has no image in images/")
            ign = self.root / "ignore" / m.name
            self._items.append((m.stem, image, m, ign if ign.is_file() else None))
        if not self._items:
            raise ValueError(f"{masks_dir} holds no .png masks")
        if max_objects is not None:
            if max_objects < 1:
                raise ValueError(f"max_objects must be >= 1, got {max_objects}")
            self._items = self._items[:max_objects]

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, Path, Path, Path | None]]:
        """Each object's name, image file, mask file and ignore file (None when none)."""
        return list(self._items)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> Sample:
        name, image_path, mask_path, ignore_path = self._items[i]
        image = read_image(image_path)
        gt = _read_gray(mask_path) > 127
        if gt.shape != image.shape[:2]:
            raise ValueError(
                f"{mask_path.name}: mask {gt.shape} and image {image.shape[:2]} differ in size"
            )
        ignore = None
        if ignore_path is not None:
            ignore = _read_gray(ignore_path) > 127
            if ignore.shape != gt.shape:
                raise ValueError(f"{ignore_path.name}: ignore {ignore.shape} != mask {gt.shape}")
        return Sample(name, image, gt, ignore)
