"""Reading a Label Studio task's regions: the newest brush region, the newest mask, the newest
box, one label's regions merged.

One rule orders the work stored on a task, for every question asked here:
- Containers (drafts, annotations, predictions) are ordered by their time (`updated_at`, else
  `created_at`), newest first; times are compared as instants, not as strings, so a stamp
  with microseconds and one without order correctly (a missing or unreadable time is oldest).
- At the same time a draft beats an annotation, which beats a prediction: a draft is the newest
  work on the annotation it edits, and a person's work beats a model's.
- At the same time and kind, the later container in the task's list wins (Label Studio lists
  them in creation order), and within one container the later region wins: it was drawn last.
- Cancelled (skipped) annotations and drafts are never read: the annotator gave up on them.
- Malformed stored data (a container or region that is not an object, a result that is not a
  list, labels that are not a list, a corrupt or wrongly sized RLE) is skipped, never raised:
  a broken old region is no reason to refuse a click or fail a batch.

What differs between callers is only which work they read, given as parameters:
- the interactive backend (`task_regions`, `newest_region_mask`) reads drafts too (`ALL_WORK`):
  the annotator's own unsaved draft is what they are editing right now; it wants one control,
  Image and label, at the image's size.
- the batch workers (`newest_mask`, `newest_box`, default `SUBMITTED`) read annotations and
  predictions only: drafts are one annotator's unfinished, private work, not the project's
  record; pre-labelling skips its own model version's predictions (`skip_model_version`) so a
  rerun never feeds on its own output.
- a mask for a worker is one label's regions of the newest container merged (an annotator
  paints one object in several strokes); its label is that of the container's last region.

A "brush region" here is a mask region of either control that receives masks: `brushlabels`
(RLE in `value.rle`) or Label Studio 1.20+'s `bitmasklabels` (a PNG in `value.imageDataURL`,
labels in `value.bitmasklabels`; results.decode_mask reads both). The control name filters keep
one control's regions apart, so the newest region of a BitmaskLabels is that control's newest
bitmask region, exactly as for a BrushLabels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from clicksmith.labelstudio.results import decode_mask

ALL_WORK = ("drafts", "annotations", "predictions")
SUBMITTED = ("annotations", "predictions")
_RANK = {"predictions": 0, "annotations": 1, "drafts": 2}  # ties: the higher rank wins
_KIND = {"predictions": "prediction", "annotations": "annotation", "drafts": "draft"}


@dataclass(frozen=True)
class Container:
    """One draft, annotation or prediction of a task, with its result items (dicts only)."""

    kind: str  # "draft" | "annotation" | "prediction"
    id: object
    time: float  # seconds since the epoch; -inf when unknown
    result: tuple[dict, ...]

    @property
    def origin(self) -> str:
        """`annotation:<id>` and so on, for records and reports."""
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class FoundMask:
    """A mask read from a task: one label's brush regions of one container, merged."""

    label: str
    mask: np.ndarray
    origin: str


@dataclass(frozen=True)
class FoundBox:
    """A rectangle read from a task, in pixels: (y0, x0, y1, x1)."""

    label: str
    box: tuple[float, float, float, float]
    origin: str


def stamp_time(value: object) -> float:
    """An ISO 8601 time as seconds since the epoch (naive: UTC); -inf when missing or bad."""
    if not isinstance(value, str) or not value:
        return -math.inf
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return -math.inf
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def containers(task: object, kinds: Sequence[str] = ALL_WORK,
               skip_model_version: str | None = None) -> list[Container]:
    """The task's containers of `kinds`, newest first (the module's rule)."""
    if not isinstance(task, dict):
        return []
    keyed: list[tuple[tuple[float, int, int], Container]] = []
    for key in kinds:
        entries = task.get(key)
        if not isinstance(entries, list):
            continue
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict) or entry.get("was_cancelled"):
                continue
            if (key == "predictions" and skip_model_version is not None
                    and entry.get("model_version") == skip_model_version):
                continue
            result = entry.get("result")
            items = tuple(i for i in result if isinstance(i, dict)) if isinstance(
                result, list) else ()
            time = stamp_time(entry.get("updated_at") or entry.get("created_at"))
            container = Container(_KIND[key], entry.get("id"), time, items)
            keyed.append(((time, _RANK[key], position), container))
    keyed.sort(key=lambda k: k[0], reverse=True)
    return [c for _, c in keyed]


def _labels(value: dict, key: str) -> list[str]:
    labels = value.get(key)
    if not isinstance(labels, list):
        return []
    return [v for v in labels if isinstance(v, str)]


_MASK_DATA = {"brushlabels": "rle", "bitmasklabels": "imageDataURL"}  # type -> its mask key


def _brush_value(item: dict) -> dict | None:
    """The item's value when it is a mask region (brush RLE or bitmask PNG), else None."""
    data = _MASK_DATA.get(str(item.get("type", "")).lower())
    value = item.get("value")
    if data is None or not isinstance(value, dict) or data not in value:
        return None
    return value


def _mask_labels(item: dict, value: dict) -> list[str]:
    """A mask region's labels: under its type's key (`brushlabels` or `bitmasklabels`)."""
    return _labels(value, str(item.get("type", "")).lower())


def _brush_matches(item: dict, control: str | None, image: str | None,
                   size: tuple[int, int] | None) -> dict | None:
    value = _brush_value(item)
    if value is None:
        return None
    if control is not None and item.get("from_name") != control:
        return None
    if image is not None and item.get("to_name") != image:
        return None
    if size is not None and (item.get("original_height"), item.get("original_width")) != size:
        return None
    return value


def task_regions(task: object, control: str, image: str, label: str, height: int,
                 width: int, kinds: Sequence[str] = ALL_WORK) -> list[dict]:
    """The brush regions of `label` by control `control` on Image `image` at `height` x `width`,
    newest first (regions of another image size are skipped). The items are Label Studio's own;
    their RLE is not decoded here (see `newest_region_mask`)."""
    found = []
    for container in containers(task, kinds):
        for item in reversed(container.result):
            value = _brush_matches(item, control, image, (height, width))
            if value is not None and label in _mask_labels(item, value):
                found.append(item)
    return found


def newest_region_mask(task: object, control: str, image: str, label: str, height: int,
                       width: int, kinds: Sequence[str] = ALL_WORK,
                       decode: Callable[[dict], np.ndarray] = decode_mask) -> np.ndarray | None:
    """The newest of `task_regions` that decodes, as a mask (corrupt regions are passed over).
    Only that one is decoded (and any newer that fail to), however many the task holds;
    `decode`: the decoder (the backend's keeps what it decoded, backend/region_cache.py)."""
    for item in task_regions(task, control, image, label, height, width, kinds):
        try:
            return decode(item)
        except ValueError:
            continue
    return None


def _decoded(results: Sequence[object], control: str | None, image: str | None,
             size: tuple[int, int] | None) -> Iterator[tuple[str, np.ndarray]]:
    """(label, mask) of each decodable brush region of `results`, in order."""
    for item in results or ():
        if not isinstance(item, dict):
            continue
        value = _brush_matches(item, control, image, size)
        if value is None:
            continue
        try:
            mask = decode_mask(item)
        except ValueError:
            continue
        labels = _mask_labels(item, value)
        yield (labels[0] if labels else ""), mask


def merge_brush_regions(results: object, control: str | None = None,
                        image: str | None = None) -> list[tuple[str, np.ndarray]]:
    """(label, mask) per label of a result list, each label's brush regions merged, labels in
    the order they first appear. Merging is what an annotator means by painting one object in
    several strokes. Regions of one label at another size than its last region are left out
    (the last region is the newest); a region without a label counts as label ""."""
    results = results if isinstance(results, list | tuple) else []
    regions = list(_decoded(results, control, image, None))
    shapes = {label: mask.shape for label, mask in regions}  # the last region's shape wins
    merged: dict[str, np.ndarray] = {}
    for label, mask in regions:
        if mask.shape != shapes[label]:
            continue
        merged[label] = merged[label] | mask if label in merged else mask
    return list(merged.items())


def newest_mask(task: object, control: str | None = None, image: str | None = None,
                size: tuple[int, int] | None = None, kinds: Sequence[str] = SUBMITTED,
                skip_model_version: str | None = None) -> FoundMask | None:
    """The newest container's mask: the label of its last decodable brush region, with all of
    that label's regions in the container merged. Filters: brush control name, Image name,
    (height, width) of the image. None when no container holds a usable brush region."""
    for container in containers(task, kinds, skip_model_version):
        regions = list(_decoded(container.result, control, image, size))
        if not regions:
            continue
        label, last = regions[-1]
        mask = last.copy()
        for other_label, other in regions[:-1]:
            if other_label == label and other.shape == mask.shape:
                mask |= other
        return FoundMask(label, mask, container.origin)
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _box_of(item: dict, control: str | None, image: str | None) -> FoundBox | None:
    """The item as a pixel box when it is a usable unrotated rectangle, else None."""
    if str(item.get("type", "")).lower() != "rectanglelabels":
        return None
    if control is not None and item.get("from_name") != control:
        return None
    if image is not None and item.get("to_name") != image:
        return None
    value = item.get("value")
    if not isinstance(value, dict) or value.get("rotation"):
        return None
    h, w = _number(item.get("original_height")), _number(item.get("original_width"))
    x, y = _number(value.get("x")), _number(value.get("y"))
    bw, bh = _number(value.get("width")), _number(value.get("height"))
    if None in (h, w, x, y, bw, bh) or h <= 0 or w <= 0 or bw <= 0 or bh <= 0:
        return None
    x0, y0 = x * w / 100, y * h / 100
    x1, y1 = x0 + bw * w / 100, y0 + bh * h / 100
    labels = _labels(value, "rectanglelabels")
    return FoundBox(labels[0] if labels else "", (y0, x0, y1, x1), "")


def newest_box(task: object, control: str | None = None, image: str | None = None,
               kinds: Sequence[str] = SUBMITTED,
               skip_model_version: str | None = None) -> FoundBox | None:
    """The newest usable rectangle (unrotated, with the image size), in pixels: from the newest
    container holding one, its last. Filters: rectangle control name, Image name."""
    for container in containers(task, kinds, skip_model_version):
        for item in reversed(container.result):
            box = _box_of(item, control, image)
            if box is not None:
                return FoundBox(box.label, box.box, container.origin)
    return None
