"""An annotator's smart-click session in a real browser: Debian's chromium, headless, through
Playwright (which must never download a browser of its own: `executable_path` points at
/usr/bin/chromium). The test installs nothing: without chromium it skips, naming
scripts/install_chromium.sh (which .ci/run calls).

Log in, open a task, turn on Auto-Annotation (auto-accept off, so clicks accumulate), choose the
smart keypoint label, click the object, wait for the brush mask our backend returns, Alt-click a
negative point. Every step leaves a screenshot in the test's tmp folder, so a failure shows where
the editor stood. The test changes no file of the repository: the README's picture is refreshed
by scripts/refresh_screenshot.sh, which runs this test with CLICKSMITH_SCREENSHOT (where to copy
the final screenshot, the model version written into it) and optionally
CLICKSMITH_SCREENSHOT_IMAGES (a folder laid out as tests/fixtures, e.g. GrabCut, whose `sheep`
is then used instead of the drawn one).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from tests.e2e.browser import SELECTED_LABELS, Editor, browser_page
from tests.e2e.conftest import FIXTURES, create_project
from tests.e2e.test_label_studio import deepest_point

pytestmark = pytest.mark.e2e


def _mask_of(answer: dict) -> np.ndarray:
    data = answer["data"]
    brush = next(r for r in data["result"] if r["type"] == "brushlabels")
    h, w = brush["original_height"], brush["original_width"]
    return decode_rle(brush["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 127


def save_screenshot(source: Path, target: Path, model_version: str) -> None:
    """Copy the final screenshot to `target` with the model version in its PNG text, so the
    README's caption can be checked against the picture (tests/packaging/test_readme.py)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("model_version", model_version)
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as img:
        img.save(target, pnginfo=info, optimize=True)


def test_smart_keypoint_then_alt_click_in_chromium(ls, ls_server, backend, browser, tmp_path):
    images = Path(os.environ.get("CLICKSMITH_SCREENSHOT_IMAGES") or FIXTURES)
    project = create_project(ls, ls_server, backend, "clicksmith browser", stems=("sheep",),
                             folder=images)
    # Label Studio 1.23 asks the backend for a pre-label when a task without predictions opens
    # (show_collab_predictions, on by default; tests/e2e/test_retrieve.py covers it). This test
    # drives the click path from an empty annotation, so the project does not show predictions
    # (the editor copies the pre-label into the annotation as a region, and a click on a region
    # selects it instead of placing a keypoint: tests/e2e/test_prelabel_click.py).
    ls.projects.update(project.id, show_collab_predictions=False)
    task_id, gt = project.tasks["sheep"], project.masks["sheep"]
    with browser_page(browser, tmp_path) as (page, steps):
        editor = Editor(page, steps, gt.shape)
        editor.login(ls_server)
        steps.shot("logged-in")
        # Auto-Annotation on, auto-accept off (multi-click sessions); the smart keypoint tool
        editor.open(ls_server, project.id, task_id, auto_accept=False)
        selected = page.evaluate(SELECTED_LABELS)
        assert selected == ["Object"], f"keypoint label not selected: {selected}"

        py, px = deepest_point(gt)
        m1 = _mask_of(editor.click(py, px, "positive-click"))
        assert m1[py, px], "the mask must cover the clicked pixel"
        sent = editor.requests[-1]["context"]["result"]
        assert [r["type"] for r in sent] == ["keypointlabels"]
        assert sent[0].get("is_positive", True) is True

        # Alt-click a negative point in the background the mask wrongly covers (or far away)
        wrong = m1 & ~gt
        ny, nx = deepest_point(wrong) if wrong.sum() > 50 else deepest_point(~gt)
        # Label Studio drops the label selection after each new region (unless "Keep label
        # selected after creating a region" is on in the editor settings): the click picks it
        # again
        print(f"\nlabels selected after the first click: {page.evaluate(SELECTED_LABELS)}")
        m2 = _mask_of(editor.click(ny, nx, "negative-click", alt=True))
        sent = editor.requests[-1]["context"]["result"]
        flags = [r.get("is_positive", True) for r in sent if r["type"] == "keypointlabels"]
        assert flags == [True, False], f"the Alt-click did not arrive as a negative: {sent}"
        assert not m2[ny, nx] and m2[py, px]

        # the suggestion is on screen: the editor holds a brush region from our answer
        shown = page.evaluate("""() => {
            const a = window.Htx.annotationStore.selected;
            const extra = a.suggestions ? Array.from(a.suggestions.values()) : [];
            return [...a.regions, ...extra].map(r => r.type);
        }""")
        assert "brushregion" in shown, f"no brush region in the editor: {shown}"
        page.screenshot(path=str(tmp_path / "final.png"))
        if os.environ.get("CLICKSMITH_SCREENSHOT"):  # scripts/refresh_screenshot.sh
            save_screenshot(tmp_path / "final.png", Path(os.environ["CLICKSMITH_SCREENSHOT"]),
                            backend.model_version)
