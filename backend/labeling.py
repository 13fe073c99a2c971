"""What a Label Studio labeling config means for this backend.

Why a parsed summary instead of passing the XML around: every /predict carries the config, and
the interaction code only needs to know, per Image, which control receives the mask (BrushLabels),
which controls prompt it (KeyPointLabels, RectangleLabels, brush strokes) and whether a polygon is
wanted too. Parsing is cached by the config text, since it repeats on every click.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from label_studio_sdk.label_interface import LabelInterface

from backend.tools import superpixel_size, tool_of


class ConfigError(ValueError):
    """The labeling config lacks what the backend needs; the message names what is missing."""


@dataclass(frozen=True)
class Control:
    """One control tag (BrushLabels, KeyPointLabels, ...) bound to an Image."""

    name: str
    tag: str
    labels: tuple[str, ...]
    tool: str | None = None  # superpixel | lasso | refine by the name (backend.tools), else None


@dataclass(frozen=True)
class ImageTarget:
    """One Image tag with the controls that act on it."""

    name: str
    value_key: str  # the task data field holding the image URL
    brushes: tuple[Control, ...]
    prompts: tuple[Control, ...]  # KeyPointLabels, RectangleLabels and tool controls
    polygons: tuple[Control, ...]

    def brush_for(self, label: str) -> Control | None:
        """The BrushLabels control that can carry `label` (the first one that lists it)."""
        return next((c for c in self.brushes if label in c.labels), None)

    def polygon_for(self, label: str) -> Control | None:
        return next((c for c in self.polygons if label in c.labels), None)

    def superpixel_sizes(self, default: int) -> set[int]:
        """The granularities this Image's superpixel controls ask for (to precompute)."""
        return {superpixel_size(c.name, default) for c in self.prompts if c.tool == "superpixel"}


@dataclass(frozen=True)
class ProjectConfig:
    """The usable Image targets of a config, by Image name."""

    targets: dict[str, ImageTarget]
    controls: dict[str, Control]

    def target_of(self, control_name: str, to_name: str) -> tuple[Control, ImageTarget]:
        """The control and Image a context region refers to, or ConfigError naming the gap."""
        control = self.controls.get(control_name)
        if control is None:
            raise ConfigError(f"the labeling config has no control named {control_name!r}")
        target = self.targets.get(to_name)
        if target is None:
            raise ConfigError(
                f"Image {to_name!r} has no BrushLabels control to receive the mask"
            )
        return control, target


_PROMPT_TAGS = {"KeyPointLabels", "RectangleLabels"}
_ALL_TAGS = _PROMPT_TAGS | {"BrushLabels", "PolygonLabels"}


def parse_config(xml: str) -> ProjectConfig:
    """Parse `xml`; ConfigError (a ValueError) when it is not usable, with the reason."""
    if not isinstance(xml, str) or not xml.strip():
        raise ConfigError("the labeling config is empty")
    return _parse_cached(xml)


@functools.lru_cache(maxsize=32)
def _parse_cached(xml: str) -> ProjectConfig:
    try:
        interface = LabelInterface(xml)
    except Exception as exc:  # the SDK raises several XML/validation error types
        raise ConfigError(f"the labeling config is not valid XML: {exc}") from None
    images = {o.name: o for o in interface.objects if o.tag == "Image"}
    if not images:
        raise ConfigError("the labeling config has no <Image> tag")
    by_image: dict[str, dict[str, list[Control]]] = {n: {} for n in images}
    controls: dict[str, Control] = {}
    for c in interface.controls:
        if c.tag not in _ALL_TAGS:
            continue
        control = Control(c.name, c.tag, tuple(c.labels or ()), tool_of(c.name, c.tag))
        controls[c.name] = control
        bucket = "RefineBrush" if control.tool == "refine" else c.tag  # never receives the mask
        for to_name in c.to_name or ():
            if to_name in by_image:
                by_image[to_name].setdefault(bucket, []).append(control)
    targets: dict[str, ImageTarget] = {}
    for name, tags in by_image.items():
        brushes = tuple(tags.get("BrushLabels", ()))
        prompts = (tuple(tags.get("KeyPointLabels", ())) + tuple(tags.get("RectangleLabels", ()))
                   + tuple(tags.get("RefineBrush", ())))
        if not brushes:
            continue
        value = str(getattr(images[name], "value", "") or "")
        targets[name] = ImageTarget(
            name=name,
            value_key=value.lstrip("$"),
            brushes=brushes,
            prompts=prompts,
            polygons=tuple(tags.get("PolygonLabels", ())),
        )
    if not targets:
        raise ConfigError(
            "the labeling config has no <BrushLabels> control on an <Image>: "
            "the backend answers with brush masks"
        )
    if not any(t.prompts for t in targets.values()):
        names = ", ".join(sorted(targets))
        raise ConfigError(
            f"no <KeyPointLabels> or <RectangleLabels> control points at Image {names}: "
            "add a smart KeyPointLabels (clicks) or RectangleLabels (box) with the same labels"
        )
    for t in targets.values():
        if not t.value_key:
            raise ConfigError(f"Image {t.name!r} has no value (expected value=\"$field\")")
    return ProjectConfig(targets=targets, controls=controls)
