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

import json
import os
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from tests.e2e.conftest import FIXTURES, create_project
from tests.e2e.test_label_studio import deepest_point

pytestmark = pytest.mark.e2e
CHROMIUM = os.environ.get("CLICKSMITH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is in the test extra")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM}: install it with `bash scripts/install_chromium.sh`"
                    " (Debian's package, as root) or point CLICKSMITH_CHROMIUM at one")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Steps:
    """Screenshots of each step in a folder, for whoever has to debug a failure."""

    def __init__(self, page, folder: Path) -> None:
        self.page, self.folder, self.n = page, folder, 0

    def shot(self, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        return path


SELECTED_LABELS = """() => window.Htx.annotationStore.selected.names.get('click')
    .selectedLabels.map(l => l.value)"""


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
    h, w = gt.shape
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    steps = Steps(page, tmp_path)
    answers: list[dict] = []
    requests: list[dict] = []

    def on_response(resp):
        if "/interactive-annotating" in resp.url and resp.request.method == "POST":
            requests.append(json.loads(resp.request.post_data or "{}"))
            answers.append(resp.json())

    page.on("response", on_response)
    try:
        # log in
        page.goto(f"{ls_server.url}/user/login/")
        page.fill("input[name=email]", ls_server.username)
        page.fill("input[name=password]", ls_server.password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)
        steps.shot("logged-in")

        # open the task in the labeling editor
        page.goto(f"{ls_server.url}/projects/{project.id}/data?task={task_id}")
        page.wait_for_function("() => window.Htx && window.Htx.annotationStore"
                               " && window.Htx.annotationStore.selected", timeout=120_000)
        img = page.locator(".lsf-main-view img, [class*=image] img").first
        img.wait_for(state="visible", timeout=60_000)
        page.wait_for_function("(el) => el.complete && el.naturalWidth > 0",
                               arg=img.element_handle(), timeout=60_000)
        steps.shot("task-open")

        # Auto-Annotation on, auto-accept off (multi-click sessions)
        # (the test ids sit on the checkboxes themselves, styled as switches)
        page.get_by_test_id("bottombar-auto-annotation-toggle").set_checked(True, force=True)
        page.get_by_test_id("bottombar-auto-accept-toggle").set_checked(False, force=True)
        flags = page.evaluate("() => [window.Htx.autoAnnotation, window.Htx.autoAcceptSuggestions]")
        assert flags == [True, False], f"Auto-Annotation on, Auto-Accept off expected: {flags}"
        steps.shot("auto-annotation")

        # the keypoint label "Object" (hotkey 3 with config/labeling.xml: labels are numbered in
        # config order, mask 1-2, click 3-4, box 5-6), then the *smart* keypoint tool: "Auto-Detect"
        # lists the smart tools when hovered (a click on it would cycle through them)
        page.keyboard.press("3")
        if page.evaluate(SELECTED_LABELS) != ["Object"]:
            page.locator(".lsf-labels").nth(1).locator(".lsf-label", has_text="Object").click()
        page.locator(".lsf-toolbar__group > button.lsf-tool_smart").first.hover()
        page.locator(".lsf-toolbar__smart button[aria-label=key-point-tool]").click()
        page.mouse.move(10, 10)  # away from the toolbar: close the list
        steps.shot("smart-keypoint-selected")
        selected = page.evaluate(SELECTED_LABELS)
        assert selected == ["Object"], f"keypoint label not selected: {selected}"

        def at(y: float, x: float) -> tuple[float, float]:
            box = img.bounding_box()
            return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h

        py, px = deepest_point(gt)
        with page.expect_response(lambda r: "/interactive-annotating" in r.url,
                                  timeout=120_000):
            page.mouse.click(*at(py, px))
        page.wait_for_timeout(1500)  # let the editor draw the suggestion
        steps.shot("positive-click")
        assert answers and "data" in answers[-1], f"no mask came back: {answers[-1:]}"
        m1 = _mask_of(answers[-1])
        assert m1[py, px], "the mask must cover the clicked pixel"
        sent = requests[-1]["context"]["result"]
        assert [r["type"] for r in sent] == ["keypointlabels"]
        assert sent[0].get("is_positive", True) is True

        # Alt-click a negative point in the background the mask wrongly covers (or far away)
        wrong = m1 & ~gt
        ny, nx = deepest_point(wrong) if wrong.sum() > 50 else deepest_point(~gt)
        # Label Studio drops the label selection after each new region (unless "Keep label
        # selected after creating a region" is on in the editor settings): pick it again
        after_first = page.evaluate(SELECTED_LABELS)
        print(f"\nlabels selected after the first click: {after_first}")
        if after_first != ["Object"]:
            page.keyboard.press("3")
            assert page.evaluate(SELECTED_LABELS) == ["Object"]
        page.keyboard.down("Alt")
        try:
            with page.expect_response(lambda r: "/interactive-annotating" in r.url,
                                      timeout=120_000):
                page.mouse.click(*at(ny, nx))
        finally:
            page.keyboard.up("Alt")
        page.wait_for_timeout(1500)
        steps.shot("negative-click")
        sent = requests[-1]["context"]["result"]
        flags = [r.get("is_positive", True) for r in sent if r["type"] == "keypointlabels"]
        assert flags == [True, False], f"the Alt-click did not arrive as a negative: {sent}"
        m2 = _mask_of(answers[-1])
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
    except Exception:
        try:
            steps.shot("failure")
            (tmp_path / "page.html").write_text(page.content())
        except Exception:  # noqa: BLE001 - the original failure matters, not this one
            pass
        print(f"\nbrowser artifacts in {tmp_path}")
        raise
    finally:
        context.close()
