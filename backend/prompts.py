"""Label Studio context regions → prompts in pixels, grouped by (image, label).

Why a separate parsing step: the context arrives as Label Studio result items in percent of the
image; validating them (known control, known label, coordinates inside the image, stroke of the
right size) before touching the predictor is what lets every bad input become a 400 with a reason.

Every count and size is bounded before any per-element work (`ContextLimits`, from the
settings): the regions of a context, its keypoints (each one a network run), the values of one
brush RLE (decoding costs ~3 us a value) and the image size a brush region claims. Numbers are
read with `_number`: bools, NaN, infinities and integers beyond any float are refused with the
field named, never passed on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from backend.errors import ApiError
from cdnet.clicks import Click
from clicksmith.labelstudio.config import Control, ImageTarget, ProjectConfig
from clicksmith.labelstudio.ids import body_project_id
from clicksmith.labelstudio.results import rle_to_mask
from clicksmith.settings import Settings, load_settings

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


@dataclass(frozen=True)
class ContextLimits:
    """How much one /predict context may hold; each refusal names its setting."""

    regions: int  # MAX_CONTEXT_REGIONS: result items of the context, of any type
    clicks: int  # MAX_CLICKS_PER_REQUEST: keypoints, tool controls' points included
    rle_values: int  # MAX_RLE_VALUES: values of one brush RLE list
    image_pixels: int  # MAX_IMAGE_PIXELS: bounds a brush region's original_width/height

    @classmethod
    def of(cls, settings: Settings) -> ContextLimits:
        return cls(settings.max_context_regions, settings.max_clicks_per_request,
                   settings.max_rle_values, settings.max_image_pixels)


@functools.cache
def default_limits() -> ContextLimits:
    """The limits of config/defaults.toml (for callers that pass none)."""
    return ContextLimits.of(load_settings(env={}))


def _to_pixel(percent: float, size: int) -> float:
    return min(percent * size / 100.0, size - 0.5)


def _shown(value: object, limit: int = 60) -> str:
    """`value` for an error message, cut short: a refusal never echoes a megabyte back."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else "a huge int"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: object, what: str) -> float:
    """A JSON number as a finite float; ApiError 400 naming `what` for anything else (bools,
    strings, NaN, infinities, integers too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"{what} must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float (JSON allows any number of digits)
        number = math.inf
    if not math.isfinite(number):
        raise ApiError(400, f"{what} must be a finite number, got {_shown(value)}")
    return number


def _pixels(value: object, what: str, limit: int) -> int:
    """An image side in pixels: a whole number from 1 to `limit` (no side of an image within
    MAX_IMAGE_PIXELS is longer)."""
    number = _number(value, what)
    if number != int(number) or not 1 <= number <= limit:
        raise ApiError(400, f"{what} must be a whole number of pixels from 1 to {limit} "
                            f"(MAX_IMAGE_PIXELS), got {_shown(value)}")
    return int(number)


def _brush_rle(value: dict, i: int, limits: ContextLimits) -> list[int]:
    """A brush region's RLE list, its length checked before any per-element work."""
    rle = value["rle"]
    if not isinstance(rle, list) or not rle:
        raise ApiError(400, f"brush region {i}: RLE must be a non-empty list of byte values")
    if len(rle) > limits.rle_values:
        raise ApiError(413, f"brush region {i}: RLE holds {len(rle)} values, over the limit of "
                            f"{limits.rle_values} (MAX_RLE_VALUES)")
    return rle


def _percent(value: object, what: str) -> float:
    v = _number(value, what)
    if not 0.0 <= v <= 100.0:
        raise ApiError(400, f"{what} = {v} is outside the image (0..100 percent)")
    return v


def parse_context(context: object, config: ProjectConfig,
                  limits: ContextLimits | None = None) -> list[Prompt]:
    """Group the context's smart regions into prompts; ApiError 400 on anything malformed,
    413 over a limit of `limits` (default: those of config/defaults.toml)."""
    limits = limits or default_limits()
    if context is None:
        return []
    if not isinstance(context, dict):
        raise ApiError(400, "params.context must be an object with a 'result' list")
    items = context.get("result") or []
    if not isinstance(items, list):
        raise ApiError(400, "params.context.result must be a list of regions")
    keypoints = sum(1 for item in items if isinstance(item, dict)
                    and str(item.get("type", "")).lower() == "keypointlabels")
    if keypoints > limits.clicks:
        raise ApiError(413, f"the context holds {keypoints} keypoints, over the limit of "
                            f"{limits.clicks} (MAX_CLICKS_PER_REQUEST): accept or delete "
                            "regions to start a new interaction")
    if len(items) > limits.regions:
        raise ApiError(413, f"the context holds {len(items)} regions, over the limit of "
                            f"{limits.regions} (MAX_CONTEXT_REGIONS)")
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
                400,
                f"label {_shown(label)} is not one of {list(control.labels)} of {control.name!r}",
            )
        brush = target.brush_for(label)
        if brush is None:
            raise ApiError(
                400,
                f"label {_shown(label)} is not a label of any BrushLabels on Image "
                f"{target.name!r}, "
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
            w = _percent(value.get("width"), f"region {i} width")
            h = _percent(value.get("height"), f"region {i} height")
            if w <= 0 or h <= 0 or x + w > 100.001 or y + h > 100.001:
                raise ApiError(400, f"rectangle region {i} is empty or leaves the image")
            if value.get("rotation") not in (None, 0, 0.0):
                raise ApiError(400, "rotated rectangles are not supported as box prompts")
            prompt.boxes.append((x, y, min(w, 100.0 - x), min(h, 100.0 - y)))
        else:
            if value.get("format", "rle") != "rle" or "rle" not in value:
                raise ApiError(400, f"brush region {i} is not in RLE format")
            width = _pixels(item.get("original_width"), f"region {i} original_width",
                            limits.image_pixels)
            height = _pixels(item.get("original_height"), f"region {i} original_height",
                             limits.image_pixels)
            stroke = Stroke(_brush_rle(value, i, limits), width, height, positive)
            (prompt.refines if control.tool == "refine" else prompt.strokes).append(stroke)
    return list(prompts.values())


def project_id(body: dict) -> int:
    """The numeric project id of a webhook or /train body ({"project": {...}} or "<id>.<ts>")."""
    try:
        project = body_project_id(body)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if project is None:
        raise ApiError(400, "the body names no project id ('project'): a whole number")
    return project
