"""Training samples: (image crop, object mask) pairs from the `train_*` folders.

Objects of every kind: whole objects and parts as given, plus background regions (an inverted
mask) and unions of two objects of one image, so "any class, parts or background" is learned.
Images are decoded once and kept in memory at a bounded size: on 2 CPU cores, JPEG decoding
would otherwise cost as much as the network.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MAX_SIDE = 512  # images are cached at most this large
VAL_FRACTION = 0.05  # the default held-out share of `split`: what training validates on, and
# what the retrain job's general check draws from and its replay leaves out
MIN_OBJECT_FRACTION = 0.002  # smaller masks (share of the image) are skipped in the base folders,
# whose per-class components include stray specks; folders named in SampleSource's
# `min_fraction` use their own minimum (the retrain job: 0, every correction is meant)


@dataclass(frozen=True)
class Entry:
    image: Path
    masks: tuple[Path, ...]


def scan(folder: Path) -> list[Entry]:
    """`images/<stem>.*` with `masks/<stem>.png` or `masks/<stem>_<k>.png`."""
    folder = Path(folder)
    if not (folder / "images").is_dir() or not (folder / "masks").is_dir():
        raise ValueError(f"{folder} needs images/ and masks/ subfolders")
    by_stem: dict[str, list[Path]] = {}
    for m in sorted((folder / "masks").glob("*.png")):
        by_stem.setdefault(m.stem, []).append(m)
        match = re.fullmatch(r"(.+)_(\d+)", m.stem)
        if match:
            by_stem.setdefault(match.group(1) + "\0multi", []).append(m)
    entries = []
    for img in sorted((folder / "images").iterdir()):
        masks = by_stem.get(img.stem) or by_stem.get(img.stem + "\0multi")
        if masks:
            entries.append(Entry(img, tuple(masks)))
    return entries


def split(entries: list[Entry], val_fraction: float) -> tuple[list[Entry], list[Entry]]:
    """Deterministic split by a hash of the image name: stable across runs and machines."""
    train, val = [], []
    for e in entries:
        h = zlib.crc32(e.image.name.encode()) % 1000
        (val if h < val_fraction * 1000 else train).append(e)
    return train, val


def split_folders(folders: list[str | Path],
                  val_fraction: float) -> tuple[list[Entry], list[Entry]]:
    """(training, held-out) entries of every folder: the one split that training validates on
    and that checkpoints are chosen on (benchmarks/heldout.py)."""
    return split([e for d in folders for e in scan(Path(d))], val_fraction)


def _load(path: Path, gray: bool, size: tuple[int, int] | None = None) -> np.ndarray:
    flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    a = cv2.imread(str(path), flag)
    if a is None:
        raise ValueError(f"cannot read {path}")
    if not gray:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    if size is not None:
        if a.shape[:2] != size:
            a = resize_mask_values(a, size)
    else:
        s = MAX_SIDE / max(a.shape[:2])
        if s < 1:
            a = cv2.resize(a, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return a


def resize_mask_values(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 0/255 uint8 mask resized to `size` (h, w) as the image is (area when shrinking, linear
    when growing): its values are then coverage, so `> 127` puts the boundary where the resized
    image has it. Why not nearest: it moves the boundary by up to half a source pixel and, grown
    3x, leaves 3 px stair steps, which a boundary loss then teaches as the object's outline."""
    h, w = size
    shrink = h * w < mask.shape[0] * mask.shape[1]
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def source_name(entry: Entry) -> str:
    """The training folder an image comes from (`<folder>/images/<file>`)."""
    return entry.image.parent.parent.name


def valid_weight(w: float) -> bool:
    """A usable sampling weight: finite and not negative (0 leaves a folder out)."""
    return bool(np.isfinite(w) and w >= 0)


def image_probabilities(entries: list[Entry], weights: dict[str, float]) -> np.ndarray:
    """Per-image sampling probabilities: every image of folder F weighs `weights[F]` (1 for
    folders not named), so a folder's share can be raised or lowered without copying data.

    Why: images are drawn uniformly by default, so the 800 polygon-outlined COCO-MVal images
    are a third of all samples; precisely outlined folders can be given more say.
    """
    names = {source_name(e) for e in entries}
    unknown = sorted(set(weights) - names)
    if unknown:
        raise ValueError(f"source weight for unknown training folder(s) {unknown}; "
                         f"folders: {sorted(names)}")
    bad = {k: v for k, v in weights.items() if not valid_weight(v)}
    if bad:
        raise ValueError(f"source weights must be finite and >= 0, got {bad}")
    w = np.array([weights.get(source_name(e), 1.0) for e in entries], dtype=np.float64)
    if w.sum() <= 0:
        raise ValueError("source weights leave no image to sample")
    return w / w.sum()


class SampleSource:
    """Random (image, mask) crops of `size` x `size` with augmentation."""

    def __init__(self, entries: list[Entry], size: int = 288,
                 source_weights: dict[str, float] | None = None,
                 min_fraction: dict[str, float] | None = None):
        if not entries:
            raise ValueError("no training images with masks found")
        self.entries = entries
        self.size = size
        # None keeps the uniform draw (and its random stream) of runs made before weights
        self.p = image_probabilities(entries, source_weights) if source_weights else None
        # images annotated with exactly one object: their object is "the main object", the
        # target of a zero-click prediction (pre-labelling a task nobody has touched)
        self.single = [i for i, e in enumerate(entries) if len(e.masks) == 1
                       and (self.p is None or self.p[i] > 0)]
        # the zero-click draw's probabilities, normalised once rather than on every sample
        self._single_p = None
        if self.p is not None and self.single:
            self._single_p = self.p[self.single] / self.p[self.single].sum()
        self.min_fraction = dict(min_fraction or {})  # folder name -> minimum object share
        self._cache: dict[int, tuple[np.ndarray, list[np.ndarray]]] = {}

    def _pick(self, rng: np.random.Generator, main_object: bool) -> int:
        if main_object and self.single:
            if self._single_p is None:
                return self.single[int(rng.integers(len(self.single)))]
            return self.single[int(rng.choice(len(self.single), p=self._single_p))]
        if self.p is None:
            return int(rng.integers(len(self.entries)))
        return int(rng.choice(len(self.entries), p=self.p))

    def _get(self, i: int):
        if i not in self._cache:
            e = self.entries[i]
            img = _load(e.image, gray=False)
            # kept as coverage (0-255) until the crop is made: thresholded only once, at the
            # crop's own scale, a mask keeps the sub-pixel boundary its source had
            masks = [_load(m, gray=True, size=img.shape[:2]) for m in e.masks]
            least = self.min_fraction.get(e.image.parent.parent.name, MIN_OBJECT_FRACTION)
            masks = [m for m in masks if (m > 127).any() and (m > 127).mean() >= least]
            self._cache[i] = (img, masks)
        return self._cache[i]

    def object_mask(self, masks: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        m = masks[rng.integers(len(masks))]
        r = rng.random()
        if r < 0.1 and len(masks) > 1:
            m = np.maximum(m, masks[rng.integers(len(masks))])
        elif r < 0.18 and (m > 127).mean() < 0.7:
            m = 255 - m  # background region as the object
        return m

    def sample(self, rng: np.random.Generator,
               main_object: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A random object crop; `main_object`: an image's only annotated object, as is."""
        for _ in range(20):
            img, masks = self._get(self._pick(rng, main_object))
            if masks:
                break
        else:
            raise ValueError("could not find an image with a usable mask")
        mask = masks[0] if main_object else self.object_mask(masks, rng)
        img, mask = self._scale_crop(img, mask, rng)
        if rng.random() < 0.5:
            img, mask = img[:, ::-1], mask[:, ::-1]
        return self._jitter(np.ascontiguousarray(img), rng), np.ascontiguousarray(mask)

    def _scale_crop(self, img, mask, rng):
        """Scale so the object is 15-90% of the crop side, then crop around it. `mask` is
        coverage (uint8 0-255); the crop's mask is bool."""
        s = self.size
        ys, xs = np.nonzero(mask > 127)
        obj = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
        target = rng.uniform(0.15, 0.9) * s
        scale = np.clip(target / obj, s / max(img.shape[:2]) * 0.5, 3.0)
        scale = max(scale, s / min(img.shape[:2]) * 0.6)
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        mask = resize_mask_values(mask, img.shape[:2]) > 127
        h, w = mask.shape
        if h < s or w < s:
            ph, pw = max(0, s - h), max(0, s - w)
            img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
            mask = np.pad(mask, ((0, ph), (0, pw)))
            h, w = mask.shape
        ys, xs = np.nonzero(mask)
        k = int(rng.integers(len(ys))) if len(ys) else 0
        cy, cx = (ys[k], xs[k]) if len(ys) else (h // 2, w // 2)
        y0 = int(np.clip(cy - rng.integers(s // 4, 3 * s // 4), 0, h - s))
        x0 = int(np.clip(cx - rng.integers(s // 4, 3 * s // 4), 0, w - s))
        return img[y0 : y0 + s, x0 : x0 + s], mask[y0 : y0 + s, x0 : x0 + s]

    @staticmethod
    def _jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Brightness, contrast and saturation jitter of +-20%."""
        f = img.astype(np.float32)
        gray = f.mean(axis=2, keepdims=True)
        f = gray + (f - gray) * rng.uniform(0.8, 1.2)
        f = f.mean() + (f - f.mean()) * rng.uniform(0.8, 1.2)
        f = f * rng.uniform(0.8, 1.2)
        return np.clip(f, 0, 255).astype(np.uint8)
