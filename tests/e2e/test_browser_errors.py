"""What the annotator sees in Label Studio 1.23's pages when the backend refuses (issue 30), in
headless chromium.

- Connect Model (Settings > Model) with a labeling config the backend cannot serve: the dialog
  shows an error box, "Runtime error / Validation error / Successfully connected to <url> but it
  doesn't look like a valid ML backend. Reason: 400 Client Error: <our reason> for url:
  <url>/setup. Check the ML backend server console logs ...". Our reason is in it, whole: the
  box puts the text in the page as sanitized HTML, so the reason phrase holds no "<Tag>"
  (backend/errors.py; before, "no <KeyPointLabels> or <RectangleLabels> control points" read
  "no  or  control points").
- A smart click the backend refuses (here: its image was removed from Label Studio's storage
  after the editor loaded it; a LABEL_STUDIO_API_KEY that stopped working takes the same path):
  Label Studio answers the editor's request with HTTP 200 and {"errors": [<the reason>]}, and
  the editor shows nothing at all: no toast, no modal, no suggestion; the keypoint just stays.
  The editor reads only `data` of that answer (`loadSuggestions(..., e => e.data ?
  e.data.result : null)`) and shows API errors only for HTTP errors. Nothing a backend answers
  can change that, so the README's Troubleshooting says where the reason is: the backend's log
  (one WARNING line with the task) and the browser's network panel. This test pins that down,
  so the README stays true when Label Studio changes.
"""

from __future__ import annotations

import pytest

from tests.e2e.browser import Editor, browser_page
from tests.e2e.conftest import create_project
from tests.e2e.test_label_studio import deepest_point
from tests.e2e.test_refusals import BRUSH_ONLY, logged

pytestmark = pytest.mark.e2e
REGION_TYPES = "() => window.Htx.annotationStore.selected.regions.map(r => r.type)"


def test_a_refused_click_shows_nothing_in_the_editor(ls, ls_server, backend, browser, tmp_path):
    project = create_project(ls, ls_server, backend, "clicksmith refused click",
                             stems=("figure",))
    ls.projects.update(project.id, show_collab_predictions=False)
    task_id, gt = project.tasks["figure"], project.masks["figure"]
    image = str(ls.tasks.get(id=task_id).data["image"])
    stored = ls_server.data_dir / "media" / "upload" / image.split("/data/upload/", 1)[1]
    assert stored.is_file(), stored
    with browser_page(browser, tmp_path) as (page, steps):
        editor = Editor(page, steps, gt.shape)
        editor.login(ls_server)
        editor.open(ls_server, project.id, task_id, auto_accept=False)
        before = page.inner_text("body")
        stored.unlink()  # the editor has the image; the backend cannot fetch it any more

        answer = editor.answer_to_click(*deepest_point(gt), "refused-click")
        page.wait_for_timeout(2000)  # a toast would be up by now
        steps.shot("refused-click-later")
        [reason] = answer.get("errors") or [None]
        print(f"\nLabel Studio answers the editor: {answer}")
        assert reason and "could not fetch image" in reason and image in reason, answer
        assert "data" not in answer

        # what the editor shows: nothing new but the keypoint's region in the Regions list
        shown = page.inner_text("body")
        new = [line for line in shown.splitlines() if line not in before.splitlines()]
        print(f"text that appeared on the page: {new}")
        assert not any(w in shown for w in ("could not fetch", "Error", "error")), new
        notices = page.evaluate("""() => Array.from(document.querySelectorAll(
            '[role=alert], [class*=toast], [class*=error-message], [class*=modal]'))
            .map(e => e.innerText.trim()).filter(Boolean)""")  # (empty toast viewports exist)
        assert notices == [], notices
        assert page.evaluate(REGION_TYPES) == ["keypointregion"]
        assert editor.suggestions() == 0

        # where the reason is: the backend's log, one WARNING line with the task
        print(f"backend log: {logged(backend, 'POST /predict', f'(task {task_id})', image)}")


def test_connect_model_dialog_shows_the_reason(ls, ls_server, backend, browser, tmp_path):
    project = ls.projects.create(title="clicksmith connect refused", label_config=BRUSH_ONLY)
    with browser_page(browser, tmp_path) as (page, steps):
        Editor(page, steps, (1, 1)).login(ls_server)
        page.goto(f"{ls_server.url}/projects/{project.id}/settings/ml")
        page.locator("button[aria-label='Add machine learning model']").click()
        page.fill("input[name=title]", "clicksmith")
        page.fill("input[name=url]", backend.url)
        page.locator("input[name=is_interactive]").set_checked(True, force=True)
        steps.shot("connect-model")
        page.locator("button[aria-label='Save machine learning form']").click()
        message = page.locator(".lsf-error-message__message").first
        message.wait_for(state="visible", timeout=60_000)
        steps.shot("connect-model-refused")
        shown = " ".join(message.inner_text().split())
        print(f"\nConnect Model shows: {shown!r}")
        reason = ("400 Client Error: no KeyPointLabels or RectangleLabels control points at "
                  "Image image: add a smart KeyPointLabels (clicks) or RectangleLabels (box)")
        assert f"Reason: {reason}" in shown, shown
        assert f"for url: {backend.url}/setup" in shown, shown
        assert ls.ml.list(project=project.id) == []  # refused: not connected
    print(f"backend log: {logged(backend, 'POST /setup', 'KeyPointLabels')}")
