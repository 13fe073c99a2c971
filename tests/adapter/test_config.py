"""clicksmith.labelstudio.config: the one labeling-config parser, on the shipped configs and on
every refusal, including where the backend's and the workers' former parsers disagreed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clicksmith.labelstudio.config import (
    ConfigError,
    parse_config,
    project_config,
    superpixel_size,
    tool_of,
)

REPO = Path(__file__).resolve().parents[2]
PLAIN = (REPO / "config" / "labeling.xml").read_text()
TOOLS = (REPO / "config" / "labeling-tools.xml").read_text()
WEBHOOK = REPO.parent / "shared" / "fixtures" / "label-studio-1.23.2" / \
    "webhook-annotation_created.json"

IMAGE = '<Image name="image" value="$image"/>'
BRUSH = '<BrushLabels name="mask" toName="image"><Label value="A"/><Label value="B"/></BrushLabels>'
CLICK = '<KeyPointLabels name="kp" toName="image"><Label value="A"/></KeyPointLabels>'


def view(*tags: str) -> str:
    return "<View>" + "".join(tags) + "</View>"


def test_the_shipped_labeling_xml():
    config = parse_config(PLAIN)
    assert list(config.targets) == ["image"]
    target = config.targets["image"]
    assert target.value_key == "image"
    assert [b.name for b in target.brushes] == ["mask"]
    assert [(p.name, p.tag, p.tool) for p in target.prompts] == [
        ("click", "KeyPointLabels", None), ("box", "RectangleLabels", None)]
    assert target.polygons == ()
    assert target.brush_for("Background").name == "mask" and target.brush_for("Car") is None
    assert target.polygon_for("Object") is None
    # what the workers read: the first brush target
    assert (config.brush_name, config.image_name, config.image_key) == ("mask", "image", "image")
    assert config.labels == ("Object", "Background") and config.default_label == "Object"


def test_the_shipped_tools_config():
    config = parse_config(TOOLS)
    target = config.targets["image"]
    assert [b.name for b in target.brushes] == ["mask"]  # refine never receives the mask
    assert {p.name: p.tool for p in target.prompts} == {
        "click": None, "superpixel": "superpixel", "superpixel_8": "superpixel",
        "lasso": "lasso", "box": None, "refine": "refine"}
    assert target.polygon_for("Background").name == "poly"
    assert target.superpixel_sizes(16) == {16, 8}
    assert config.target_of("lasso", "image")[0].tool == "lasso"
    assert config.brush_name == "mask"


def test_target_of_names_the_gap():
    config = parse_config(PLAIN)
    with pytest.raises(ConfigError, match="no control named 'nope'"):
        config.target_of("nope", "image")
    with pytest.raises(ConfigError, match="Image 'other' has no BrushLabels"):
        config.target_of("click", "other")


@pytest.mark.parametrize("xml,message", [
    ("", "the labeling config is empty"),
    ("   ", "the labeling config is empty"),
    (None, "the labeling config is empty"),
    ("<View><Image", "not valid XML"),
    ('<View><Text name="t" value="$t"/></View>', "has no <Image> tag"),
    (view(IMAGE, CLICK), "no <BrushLabels> or <BitmaskLabels> control on an <Image>"),
    (view(IMAGE, '<BrushLabels name="m" toName="elsewhere"><Label value="A"/></BrushLabels>',
          CLICK), "no <BrushLabels> or <BitmaskLabels> control on an <Image>"),
    (view('<Image name="image" value="image"/>', BRUSH, CLICK), "names no task field"),
    (view('<Image name="image" value="$"/>', BRUSH, CLICK), "names no task field"),
])
def test_refusals_with_their_reason(xml, message):
    for interactive in (True, False):
        with pytest.raises(ConfigError, match=message):
            parse_config(xml, interactive=interactive)


def test_a_prompt_control_is_required_for_interactive_use_only():
    brush_only = view(IMAGE, BRUSH)
    with pytest.raises(ConfigError, match="no <KeyPointLabels> or <RectangleLabels> control "
                                          "points at Image image"):
        parse_config(brush_only)
    config = parse_config(brush_only, interactive=False)  # pre-labelling needs no prompt
    assert config.brush_name == "mask" and config.labels == ("A", "B")


def test_the_first_brush_is_in_document_order_and_never_a_refine_brush():
    xml = view('<Image name="a" value="$a"/>', '<Image name="b" value="$bee"/>',
               '<BrushLabels name="refine" toName="b"><Label value="R"/></BrushLabels>',
               '<BrushLabels name="m2" toName="b"><Label value="X"/></BrushLabels>',
               '<BrushLabels name="m1" toName="a"><Label value="Y"/></BrushLabels>')
    config = parse_config(xml, interactive=False)
    assert list(config.targets) == ["a", "b"]
    assert (config.brush_name, config.image_name, config.image_key) == ("m2", "b", "bee")
    assert config.labels == ("X",)


def test_a_brush_pointing_nowhere_is_skipped_when_another_is_usable():
    xml = view(IMAGE, '<BrushLabels name="lost" toName="nowhere"><Label value="A"/></BrushLabels>',
               BRUSH, CLICK)
    config = parse_config(xml)
    assert config.brush_name == "mask"
    assert "lost" in config.controls  # known as a control, never a mask receiver


def test_default_label_without_labels():
    xml = view(IMAGE, '<BrushLabels name="mask" toName="image"/>')
    config = parse_config(xml, interactive=False)
    assert config.labels == () and config.default_label == "Object"


def test_the_recorded_webhook_config():
    if not WEBHOOK.is_file():
        pytest.skip(f"recorded Label Studio payloads not found at {WEBHOOK}")
    xml = json.loads(WEBHOOK.read_text())["body"]["project"]["label_config"]
    config = parse_config(xml)
    assert (config.brush_name, config.image_name, config.labels) == ("tag", "image", ("obj",))
    assert [p.name for p in config.targets["image"].prompts] == ["kp"]


class _Project:
    def __init__(self, xml):
        self.label_config = xml


class _Client:
    def __init__(self, project):
        self.projects = self
        self.project = project
        self.asked = []

    def get(self, project_id):
        self.asked.append(project_id)
        return self.project


def test_project_config_reads_sdk_models_and_dicts():
    client = _Client(_Project(view(IMAGE, BRUSH)))
    assert project_config(client, 7).brush_name == "mask"  # a worker's: no prompt needed
    assert client.asked == [7]
    assert project_config(_Client({"label_config": PLAIN}), 1).image_key == "image"
    with pytest.raises(ConfigError, match="empty"):
        project_config(_Client({"label_config": None}), 1)
    with pytest.raises(ConfigError, match="KeyPointLabels"):
        project_config(_Client(_Project(view(IMAGE, BRUSH))), 1, interactive=True)


@pytest.mark.parametrize("name,tag,tool", [
    ("superpixel", "KeyPointLabels", "superpixel"),
    ("Superpixel_8", "KeyPointLabels", "superpixel"),
    ("lasso2", "KeyPointLabels", "lasso"),
    ("lasso", "BrushLabels", None),
    ("refine_edges", "BrushLabels", "refine"),
    ("refine", "KeyPointLabels", None),
    ("click", "KeyPointLabels", None),
])
def test_tool_naming_convention(name, tag, tool):
    assert tool_of(name, tag) == tool


def test_superpixel_size_by_name():
    assert superpixel_size("superpixel_8", 16) == 8
    assert superpixel_size("superpixel-32", 16) == 32
    assert superpixel_size("superpixel", 16) == 16
    assert superpixel_size("superpixel_big", 16) == 16
