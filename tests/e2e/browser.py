"""Label Studio's labeling editor in headless chromium, driven as an annotator does: the helpers
the browser e2e tests share (test_browser, test_browser_errors, test_instances,
test_prelabel_click). The `browser` fixture itself is in conftest.py.

Chromium is Debian's (/usr/bin/chromium, or CLICKSMITH_CHROMIUM); Playwright never downloads one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from tests.e2e.conftest import wait_until

CHROMIUM = os.environ.get("CLICKSMITH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]
SELECTED_LABELS = """() => window.Htx.annotationStore.selected.names.get('click')
    .selectedLabels.map(l => l.value)"""


class Steps:
    """Screenshots of each step in a folder, for whoever has to debug a failure."""

    def __init__(self, page, folder: Path) -> None:
        self.page, self.folder, self.n = page, folder, 0

    def shot(self, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        return path


@contextlib.contextmanager
def browser_page(browser, folder: Path):
    """A fresh page (1400x900) and its Steps for a block; when the block fails, a last
    screenshot and the page's HTML in `folder` (named in the output); the context closed after."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    steps = Steps(page, folder)
    try:
        yield page, steps
    except BaseException:
        try:
            steps.shot("failure")
            (folder / "page.html").write_text(page.content())
        except Exception:  # noqa: BLE001 - the original failure matters, not this one
            pass
        print(f"\nbrowser artifacts in {folder}")
        raise
    finally:
        context.close()


class Editor:
    """Label Studio's labeling editor in a page: log in, open a task with Auto-Annotation on and
    the smart keypoint tool with the label "Object", click; every interactive request and
    answer is kept (`requests`, `answers`)."""

    def __init__(self, page, steps: Steps, shape: tuple[int, int]) -> None:
        self.page, self.steps, (self.h, self.w) = page, steps, shape
        self.requests: list[dict] = []
        self.answers: list[dict] = []
        page.on("response", self._on_response)

    def _on_response(self, resp) -> None:
        if "/interactive-annotating" in resp.url and resp.request.method == "POST":
            self.requests.append(json.loads(resp.request.post_data or "{}"))
            self.answers.append(resp.json())

    def login(self, server) -> None:
        page = self.page
        page.goto(f"{server.url}/user/login/")
        page.fill("input[name=email]", server.username)
        page.fill("input[name=password]", server.password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)

    def open(self, server, project: int, task: int, auto_accept: bool) -> None:
        """The task in the labeling editor, its image loaded; Auto-Annotation on, Auto-Accept
        as asked; the keypoint label "Object" and the *smart* keypoint tool chosen."""
        page = self.page
        page.goto(f"{server.url}/projects/{project}/data?task={task}")
        page.wait_for_function("() => window.Htx && window.Htx.annotationStore"
                               " && window.Htx.annotationStore.selected", timeout=120_000)
        self.img = page.locator(".lsf-main-view img, [class*=image] img").first
        self.img.wait_for(state="visible", timeout=60_000)
        page.wait_for_function("(el) => el.complete && el.naturalWidth > 0",
                               arg=self.img.element_handle(), timeout=60_000)
        # (the test ids sit on the checkboxes themselves, styled as switches)
        page.get_by_test_id("bottombar-auto-annotation-toggle").set_checked(True, force=True)
        page.get_by_test_id("bottombar-auto-accept-toggle").set_checked(auto_accept, force=True)
        flags = page.evaluate("() => [window.Htx.autoAnnotation, window.Htx.autoAcceptSuggestions]")
        assert flags == [True, auto_accept], f"Auto-Annotation on, Auto-Accept {auto_accept}: " \
                                             f"{flags}"
        # the keypoint label "Object" (hotkey 3 with config/labeling.xml: labels are numbered in
        # config order, mask 1-2, click 3-4, box 5-6), then the *smart* keypoint tool:
        # "Auto-Detect" lists the smart tools when hovered (a click on it cycles through them)
        page.keyboard.press("3")
        if page.evaluate(SELECTED_LABELS) != ["Object"]:
            page.locator(".lsf-labels").nth(1).locator(".lsf-label", has_text="Object").click()
        page.locator(".lsf-toolbar__group > button.lsf-tool_smart").first.hover()
        page.locator(".lsf-toolbar__smart button[aria-label=key-point-tool]").click()
        page.mouse.move(10, 10)  # away from the toolbar: close the list
        self.steps.shot("task-open")

    def at(self, y: float, x: float) -> tuple[float, float]:
        """The page position of image pixel (y, x)."""
        box = self.img.bounding_box()
        return (box["x"] + (x + 0.5) * box["width"] / self.w,
                box["y"] + (y + 0.5) * box["height"] / self.h)

    def answer_to_click(self, y: int, x: int, name: str, alt: bool = False) -> dict:
        """A smart keypoint at pixel (y, x) with the label "Object" (`alt`: Alt held, a negative
        point); Label Studio's answer to the interactive request, whatever it holds."""
        page = self.page
        if page.evaluate(SELECTED_LABELS) != ["Object"]:
            page.keyboard.press("3")  # the editor drops the label after each new region
        assert page.evaluate(SELECTED_LABELS) == ["Object"]
        before = len(self.answers)
        if alt:
            page.keyboard.down("Alt")
        try:
            with page.expect_response(lambda r: "/interactive-annotating" in r.url,
                                      timeout=120_000):
                page.mouse.click(*self.at(y, x))
        finally:
            if alt:
                page.keyboard.up("Alt")
        wait_until(lambda: len(self.answers) > before, 30, "the interactive answer")
        page.wait_for_timeout(1500)  # let the editor apply it
        self.steps.shot(name)
        return self.answers[-1]

    def click(self, y: int, x: int, name: str, alt: bool = False) -> dict:
        """answer_to_click, which must have brought a mask."""
        answer = self.answer_to_click(y, x, name, alt)
        assert "data" in answer, f"no mask came back: {answer}"
        return answer

    def sent_keypoints(self) -> int:
        return sum(r["type"] == "keypointlabels" for r in self.requests[-1]["context"]["result"])

    def accept(self, name: str) -> None:
        """✓ on the suggestion (Auto-Accept off)."""
        self.page.locator(".lsf-auto-accept__action_type_accept").click()
        self.page.wait_for_timeout(800)
        self.steps.shot(name)

    def brush_regions(self) -> list[str]:
        return self.page.evaluate("""() => window.Htx.annotationStore.selected.regions
            .filter(r => r.type === 'brushregion').map(r => r.id)""")

    def suggestions(self) -> int:
        return self.page.evaluate("""() => {
            const s = window.Htx.annotationStore.selected.suggestions;
            return s ? s.size : 0; }""")

    def submit(self) -> None:
        self.page.locator("button[aria-label='Submit current annotation']").click()
        self.page.wait_for_timeout(1500)
        self.steps.shot("submitted")
