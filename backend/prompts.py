"""Label Studio context regions → prompts in pixels, grouped by (image, label).

Why a separate parsing step: the context arrives as Label Studio result items in percent of the
image; validating them (known control, known label, coordinates inside the image, stroke of the
right size) before touching the predictor is what lets every bad input become a 400 with a reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from backend.errors import ApiError
from cdnet.clicks import Click
from clicksmith.labelstudio.config import Control, ImageTarget, ProjectConfig
from clicksmith.labelstudio.results import rle_to_mask

_TYPES = {"keypointlabels", "rectanglelabels", "brushlabels"}


@dataclass
class Stroke:
    """A brush stroke in the context: RLE at the image's original size, adding or erasing."""

    rle: list[int]
    width: int
    height: int
    positive: bool

    @property
    def digest(self) -> str:
        raw = json.dumps([self.positive, self.width, self.height, self.rle]).encode()
        return hashlib.sha1(raw).hexdigest()[:16]

    def mask(self, height: int, width: int) -> np.ndarray:
        if (self.height, self.width) != (height, width):
            raise ApiError(
                400,
                f"brush stroke is {self.width}x{self.height} but the image is {width}x{height}",
            )
        try:
            return rle_to_mask(self.rle, height, width)
        except ValueError as exc:
            raise ApiError(400, f"brush stroke: {exc}") from None


@dataclass
class ToolPoint:
    """A keypoint of a tool control (superpixel fill or lasso), in percent of the image."""

    tool: str
    control: str
    x: float
    y: float
    positive: bool

    def pixel(self, height: int, width: int) -> tuple[float, float]:
        return _to_pixel(self.y, height), _to_pixel(self.x, width)


@dataclass(frozen=True)
class PixelToolPoint:
    """A tool control's keypoint in pixels of the image."""

    tool: str
    control: str
    y: float
    x: float
    positive: bool


@dataclass(frozen=True)
class PixelPrompt:
    """One (image, label)'s prompt in pixels of the image: what the interaction pipeline reads.

    Built once per request (`Prompt.in_pixels`) when the image's size is known, so no later
    step converts percentages again. Strokes stay RLE until a step needs their pixels: a context
    that still holds strokes applied earlier (auto-accept off) costs no decoding.
    """

    shape: tuple[int, int]
    clicks: tuple[Click, ...]
    box: tuple[float, float, float, float] | None  # y0, x0, y1, x1
    strokes: tuple[Stroke, ...]
    tool_points: tuple[PixelToolPoint, ...]
    refines: tuple[Stroke, ...]


@dataclass
class Prompt:
    """Everything the context says about one (image, label): points, boxes, strokes (percent)."""

    target: ImageTarget
    brush: Control
    label: str
    points: list[tuple[float, float, bool]] = field(default_factory=list)  # x%, y%, positive
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # x, y, w, h %
    strokes: list[Stroke] = field(default_factory=list)
    tool_points: list[ToolPoint] = field(default_factory=list)  # superpixel / lasso controls
    refines: list[Stroke] = field(default_factory=list)  # refine-brush bands

    @property
    def has_points(self) -> bool:
        return bool(self.points)

    def in_pixels(self, height: int, width: int) -> PixelPrompt:
        """This prompt in pixels of a `height` x `width` image."""
        return PixelPrompt(
            shape=(height, width),
            clicks=tuple(self.clicks(height, width)),
            box=self.box(height, width),
            strokes=tuple(self.strokes),
            tool_points=tuple(
                PixelToolPoint(tp.tool, tp.control, *tp.pixel(height, width), tp.positive)
                for tp in self.tool_points),
            refines=tuple(self.refines),
        )

    def clicks(self, height: int, width: int) -> list[Click]:
        """The points as pixel clicks; percent 100 maps to the last pixel, not past it."""
        return [
            Click(_to_pixel(y, height), _to_pixel(x, width), positive)
            for x, y, positive in self.points
        ]

    def box(self, height: int, width: int) -> tuple[float, float, float, float] | None:
        """The newest rectangle as (y0, x0, y1, x1) pixels, or None."""
        if not self.boxes:
            return None
        x, y, w, h = self.boxes[-1]
        return (y * height / 100.0, x * width / 100.0, (y + h) * height / 100.0,
                (x + w) * width / 100.0)


def _to_pixel(percent: float, size: int) -> float:
    return min(percent * size / 100.0, size - 0.5)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ApiError(400, f"{what} must be a finite number, got {value!r}")
    return float(value)


def _percent(value: object, what: str) -> float:
    v = _number(value, what)
    if not 0.0 <= v <= 100.0:
        raise ApiError(400, f"{what} = {v} is outside the image (0..100 percent)")
    return v


def parse_context(context: object, config: ProjectConfig) -> list[Prompt]:
    """Group the context's smart regions into prompts; ApiError 400 on anything malformed."""
    if context is None:
        return []
    if not isinstance(context, dict):
        raise ApiError(400, "params.context must be an object with a 'result' list")
    items = context.get("result") or []
    if not isinstance(items, list):
        raise ApiError(400, "params.context.result must be a list of regions")
    prompts: dict[tuple[str, str], Prompt] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ApiError(400, f"context region {i} is not an object")
        kind = str(item.get("type", "")).lower()
        if kind not in _TYPES:
            continue  # other smart tools or plain regions: not prompts for this backend
        value = item.get("value")
        if not isinstance(value, dict):
            raise ApiError(400, f"context region {i} has no 'value' object")
        from_name, to_name = item.get("from_name"), item.get("to_name")
        try:
            control, target = config.target_of(str(from_name), str(to_name))
        except ValueError as exc:
            raise ApiError(400, f"context region {i}: {exc}") from None
        labels = value.get(kind) or value.get("labels") or []
        if not isinstance(labels, list) or not labels:
            raise ApiError(400, f"context region {i} has no {kind} label")
        label = str(labels[0])
        if label not in control.labels:
            raise ApiError(
                400, f"label {label!r} is not one of {list(control.labels)} of {control.name!r}"
            )
        brush = target.brush_for(label)
        if brush is None:
            raise ApiError(
                400,
                f"label {label!r} is not a label of any BrushLabels on Image {target.name!r}, "
                "so there is no mask to return for it",
            )
        if item.get("image_rotation") not in (None, 0, 0.0):
            raise ApiError(400, "rotated images are not supported: reset the image rotation")
        prompt = prompts.setdefault((target.name, label), Prompt(target, brush, label))
        positive = item.get("is_positive") is not False
        if kind == "keypointlabels" and control.tool is not None:
            prompt.tool_points.append(ToolPoint(
                control.tool, control.name, _percent(value.get("x"), f"region {i} x"),
                _percent(value.get("y"), f"region {i} y"), positive))
        elif kind == "keypointlabels":
            prompt.points.append(
                (_percent(value.get("x"), f"region {i} x"), _percent(value.get("y"),
                 f"region {i} y"), positive)
            )
        elif kind == "rectanglelabels":
            x = _percent(value.get("x"), f"region {i} x")
            y = _percent(value.get("y"), f"region {i} y")
            w = _number(value.get("width"), f"region {i} width")
            h = _number(value.get("height"), f"region {i} height")
            if w <= 0 or h <= 0 or x + w > 100.001 or y + h > 100.001:
                raise ApiError(400, f"rectangle region {i} is empty or leaves the image")
            if value.get("rotation") not in (None, 0, 0.0):
                raise ApiError(400, "rotated rectangles are not supported as box prompts")
            prompt.boxes.append((x, y, min(w, 100.0 - x), min(h, 100.0 - y)))
        else:
            if value.get("format", "rle") != "rle" or "rle" not in value:
                raise ApiError(400, f"brush region {i} is not in RLE format")
            width = int(_number(item.get("original_width"), f"region {i} original_width"))
            height = int(_number(item.get("original_height"), f"region {i} original_height"))
            stroke = Stroke(value["rle"], width, height, positive)
            (prompt.refines if control.tool == "refine" else prompt.strokes).append(stroke)
    return list(prompts.values())
