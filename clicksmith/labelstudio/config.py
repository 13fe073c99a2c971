"""What a Label Studio labeling config means to clicksmith: one parser for the HTTP backend and
the RQ workers.

Why a parsed summary instead of passing the XML around: every /predict carries the config, and
the interaction code only needs to know, per Image, which control receives the mask (BrushLabels),
which controls prompt it (KeyPointLabels, RectangleLabels, brush strokes) and whether a polygon is
wanted too; the workers need the first brush target (its control, Image, labels, data key).
Parsing is cached by the config text, since it repeats on every click.

Where the backend's parser (label_studio_sdk's LabelInterface) and the workers' former one
(xml.etree, the first <BrushLabels> and its Image) disagreed, one rule now holds:
- A config without any prompt control (KeyPointLabels/RectangleLabels) is refused for the
  interactive backend only (`interactive=True`, the default): Label Studio could send it no
  click. The workers pass `interactive=False`: pre-labelling, ranking and collecting corrections
  of a brush-only project need no prompt control, and they accepted it before.
- An Image value must name a task field (`value="$field"`); the backend used to strip any `$`
  and read a literal value such as `value="image"` as a field name, while Label Studio shows
  that literal, not the task's image: both now refuse it, as the workers did.
- A brush control named `refine…` (a tool: it paints bands to re-edge) never receives a mask,
  so it is never the workers' first brush either (they used to take whatever came first).
- A <BrushLabels> pointing to no Image is skipped when another one is usable (the backend's
  rule) instead of failing the whole project (the workers' rule).

Mask controls: <BrushLabels> (RLE) and, from Label Studio 1.20, <BitmaskLabels> (a PNG data URL)
both receive masks, and everything said of "brushes" here holds for either (`Control.tag` says
which format a control's result is written in: results.mask_value). An Image with only a
BitmaskLabels and a smart KeyPointLabels is usable. One rule picks the control a mask goes to,
whatever the mix: the first mask control of the Image, in document order, that lists the label
(`brush_for`); the workers' first brush is likewise the first mask control of either tag. A
BitmaskLabels is never a tool (the refine tool is a BrushLabels named `refine…`).

The tool-control naming convention lives here too, since the parser needs it to tell a tool
control from a plain one; backend.tools applies the tools.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from label_studio_sdk.label_interface import LabelInterface

SUPERPIXEL, LASSO, REFINE = "superpixel", "lasso", "refine"
_KEYPOINT_TOOLS = (SUPERPIXEL, LASSO)
_SIZE = re.compile(r"^superpixel[_-]?(\d+)$")


def tool_of(name: str, tag: str) -> str | None:
    """The tool a control stands for by its name, or None for a plain control.

    `KeyPointLabels` named `superpixel…` or `lasso…`, `BrushLabels` named `refine…` (see
    backend.tools for what each does)."""
    low = name.lower()
    if tag == "KeyPointLabels":
        return next((t for t in _KEYPOINT_TOOLS if low.startswith(t)), None)
    if tag == "BrushLabels" and low.startswith(REFINE):
        return REFINE
    return None


def superpixel_size(name: str, default: int) -> int:
    """The granularity of a superpixel control: `superpixel_<N>` → N, else `default`."""
    match = _SIZE.match(name.lower())
    return int(match.group(1)) if match else default


class ConfigError(ValueError):
    """The labeling config lacks what clicksmith needs; the message names what is missing."""


@dataclass(frozen=True)
class Control:
    """One control tag (BrushLabels, KeyPointLabels, ...) bound to an Image."""

    name: str
    tag: str
    labels: tuple[str, ...]
    tool: str | None = None  # superpixel | lasso | refine by the name (tool_of), else None


@dataclass(frozen=True)
class ImageTarget:
    """One Image tag with the controls that act on it."""

    name: str
    value_key: str  # the task data field holding the image URL
    brushes: tuple[Control, ...]  # mask controls: BrushLabels and BitmaskLabels, document order
    prompts: tuple[Control, ...]  # KeyPointLabels, RectangleLabels and tool controls
    polygons: tuple[Control, ...]

    def brush_for(self, label: str) -> Control | None:
        """The mask control (BrushLabels or BitmaskLabels) that can carry `label`: the first
        one, in document order, that lists it."""
        return next((c for c in self.brushes if label in c.labels), None)

    def polygon_for(self, label: str) -> Control | None:
        return next((c for c in self.polygons if label in c.labels), None)

    def superpixel_sizes(self, default: int) -> set[int]:
        """The granularities this Image's superpixel controls ask for (to precompute)."""
        return {superpixel_size(c.name, default) for c in self.prompts if c.tool == SUPERPIXEL}


@dataclass(frozen=True)
class ProjectConfig:
    """The usable Image targets of a config, by Image name (in document order), and its
    controls by name (in document order)."""

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
                f"Image {to_name!r} has no BrushLabels or BitmaskLabels control to receive "
                "the mask"
            )
        return control, target

    # --- the first brush target: what the workers read and write --------------------------
    @property
    def first_brush(self) -> tuple[ImageTarget, Control]:
        """The first BrushLabels/BitmaskLabels receiving masks, in document order, and its
        Image.

        The workers handle one mask per task, so they use this one (as they always did)."""
        for control in self.controls.values():
            for target in self.targets.values():
                if control in target.brushes:
                    return target, control
        raise ConfigError("the labeling config has no <BrushLabels> or <BitmaskLabels> "
                          "control on an <Image>")

    @property
    def image(self) -> ImageTarget:
        return self.first_brush[0]

    @property
    def brush(self) -> Control:
        return self.first_brush[1]

    @property
    def image_name(self) -> str:
        return self.image.name

    @property
    def image_key(self) -> str:
        """The task data field holding the image URL of the first brush target."""
        return self.image.value_key

    @property
    def brush_name(self) -> str:
        return self.brush.name

    @property
    def labels(self) -> tuple[str, ...]:
        """The first brush control's labels."""
        return self.brush.labels

    @property
    def default_label(self) -> str:
        """The label a mask gets when nothing names one: the first brush label."""
        return self.labels[0] if self.labels else "Object"


_PROMPT_TAGS = {"KeyPointLabels", "RectangleLabels"}
MASK_TAGS = ("BrushLabels", "BitmaskLabels")  # the controls that receive the mask
_ALL_TAGS = _PROMPT_TAGS | set(MASK_TAGS) | {"PolygonLabels"}


def parse_config(xml: str, interactive: bool = True) -> ProjectConfig:
    """Parse `xml`; ConfigError (a ValueError) when it is not usable, with the reason.

    `interactive`: also require a prompt control (KeyPointLabels or RectangleLabels) on an
    Image with a brush, which the interactive backend needs and the batch workers do not."""
    if not isinstance(xml, str) or not xml.strip():
        raise ConfigError("the labeling config is empty")
    config = _parse_cached(xml)
    if interactive and not any(t.prompts for t in config.targets.values()):
        names = ", ".join(sorted(config.targets))
        raise ConfigError(
            f"no <KeyPointLabels> or <RectangleLabels> control points at Image {names}: "
            "add a smart KeyPointLabels (clicks) or RectangleLabels (box) with the same labels"
        )
    return config


def project_config(client, project_id: int, interactive: bool = False) -> ProjectConfig:
    """The parsed labeling config of a Label Studio project (through a label_studio_sdk client)."""
    project = client.projects.get(project_id)
    xml = (project.get("label_config") if isinstance(project, dict)
           else getattr(project, "label_config", None))
    return parse_config(xml or "", interactive=interactive)


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
        bucket = ("RefineBrush" if control.tool == REFINE  # never receives the mask
                  else "Mask" if c.tag in MASK_TAGS else c.tag)  # either tag, document order
        for to_name in c.to_name or ():
            if to_name in by_image:
                by_image[to_name].setdefault(bucket, []).append(control)
    targets: dict[str, ImageTarget] = {}
    for name, tags in by_image.items():
        brushes = tuple(tags.get("Mask", ()))
        prompts = (tuple(tags.get("KeyPointLabels", ())) + tuple(tags.get("RectangleLabels", ()))
                   + tuple(tags.get("RefineBrush", ())))
        if not brushes:
            continue
        value = str(getattr(images[name], "value", "") or "")
        if not value.startswith("$") or not value.lstrip("$"):
            raise ConfigError(
                f"Image {name!r} value {value!r} names no task field (expected value=\"$field\")"
            )
        targets[name] = ImageTarget(
            name=name,
            value_key=value.lstrip("$"),
            brushes=brushes,
            prompts=prompts,
            polygons=tuple(tags.get("PolygonLabels", ())),
        )
    if not targets:
        raise ConfigError(
            "the labeling config has no <BrushLabels> or <BitmaskLabels> control on an "
            "<Image>: the backend answers with masks"
        )
    return ProjectConfig(targets=targets, controls=controls)
