"""The README stays true to the project: its configuration table covers every setting in
config/defaults.toml (so the two cannot drift), and every local file or image it links exists.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
sys.path.insert(0, str(REPO / "scripts"))

import config_table  # noqa: E402


def _config_section() -> str:
    text = README.read_text()
    m = re.search(r"^## Configuration\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, "README has no '## Configuration' section"
    return m.group(1)


def test_every_default_key_is_in_the_readme_table():
    rows = config_table.rows()
    assert len(rows) >= 20  # the parser found the file's keys, not nothing
    section = _config_section()
    table_keys = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, re.M))
    missing = [k.upper() for k, _, _ in rows if k.upper() not in table_keys]
    assert not missing, ("README configuration table lacks " + ", ".join(missing)
                         + ": regenerate it with python scripts/config_table.py")
    unknown = table_keys - {k.upper() for k, _, _ in rows}
    assert not unknown, f"README lists settings defaults.toml does not have: {sorted(unknown)}"


def test_the_readme_defaults_match_defaults_toml():
    section = _config_section()
    for line in config_table.table().splitlines()[2:]:
        key = line.split("|")[1].strip()
        assert line in section, f"README row for {key} differs from: {line}"


def test_local_links_and_images_exist():
    text = README.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (REPO / target).exists(), f"README links {target}, which does not exist"


def test_the_screenshot_caption_names_the_model_that_took_it():
    """The picture carries the version of the model that answered in it (written by
    scripts/refresh_screenshot.sh); the caption must name it, and it must be the bundled
    model's, or the picture shows masks the served model does not make."""
    import hashlib

    from PIL import Image

    picture = REPO / "docs" / "label-studio-smart-click.png"
    with Image.open(picture) as img:
        taken = img.text.get("model_version")
    assert taken, f"{picture} does not say which model took it: bash scripts/refresh_screenshot.sh"
    text = README.read_text()
    m = re.search(r"\]\(docs/label-studio-smart-click\.png\)\s*\n\n(\*.*?\*)\n", text, re.S)
    assert m, "README shows docs/label-studio-smart-click.png without a caption below it"
    named = set(re.findall(r"cdnet-mnv2-[0-9a-f]{8}", m.group(1)))
    assert named == {taken}, f"the caption names {sorted(named)}, the picture shows {taken}"
    weights = REPO / "cdnet" / "weights" / "cdnet_mnv2.pt"
    bundled = "cdnet-mnv2-" + hashlib.sha256(weights.read_bytes()).hexdigest()[:8]
    assert taken == bundled, (f"the picture shows {taken}, the bundled weights are {bundled}: "
                              "bash scripts/refresh_screenshot.sh")
