"""Why a click over a pre-label sent no /predict (issue 31): Label Studio 1.23's editor, not us.

With *Show predictions to annotators* on (the default), a task without predictions is
pre-labelled by the backend when it opens, and the editor copies that prediction into the
annotation as an ordinary region. A click *on* a region selects it, whatever tool is active, so
no keypoint is placed and nothing is sent. Hidden (the eye in the Regions list), the region no
longer takes the click: the keypoint is placed, the request goes out, and the backend refines
the pre-label it reads from the task. This test pins both halves down, so the README's account
of the cause and of the workaround stays true.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.browser import Editor, browser_page
from tests.e2e.conftest import FIXTURES, create_project, read_rgb
from tests.e2e.test_instances import _brush_of, _mask
from tests.e2e.test_label_studio import deepest_point

pytestmark = pytest.mark.e2e


def test_a_click_over_a_prelabel_selects_it_and_hidden_it_is_refined(
        ls, ls_server, backend, browser, tmp_path):
    project = create_project(ls, ls_server, backend, "clicksmith prelabel click",
                             stems=("pair",))
    assert ls.projects.get(id=project.id).show_collab_predictions  # Label Studio's default
    task_id = project.tasks["pair"]
    g1 = read_rgb(FIXTURES / "masks" / "pair-1.png")[:, :, 0] > 127
    with browser_page(browser, tmp_path) as (page, steps):
        editor = Editor(page, steps, g1.shape)
        editor.login(ls_server)
        editor.open(ls_server, project.id, task_id, auto_accept=False)
        page.wait_for_function("""() => window.Htx.annotationStore.selected.regions
            .some(r => r.type === 'brushregion')""", timeout=60_000)
        regions = page.evaluate("""() => window.Htx.annotationStore.selected.regions
            .map(r => [r.type, r.origin])""")
        assert regions == [["brushregion", "prediction"]], regions  # the pre-label, as a region
        pre = list(ls.predictions.list(task=task_id))
        assert len(pre) == 1
        prelabel = _mask(next(r for r in pre[0].result if r["type"] == "brushlabels"))
        y, x = deepest_point(g1 & prelabel)

        # a click over it: the editor selects the region; no keypoint, no request
        page.keyboard.press("3")
        page.mouse.click(*editor.at(y, x))
        page.wait_for_timeout(2000)
        steps.shot("click-over-prelabel")
        assert editor.requests == [], "a click over a region must not reach the backend"
        selected = page.evaluate("""() => window.Htx.annotationStore.selected.regions
            .filter(r => r.selected).map(r => r.type)""")
        assert selected == ["brushregion"], selected
        kinds = page.evaluate("""() => window.Htx.annotationStore.selected.regions
            .map(r => r.type)""")
        assert "keypointregion" not in kinds

        # hidden, the same click is a keypoint; the backend refines the pre-label
        page.keyboard.press("Escape")
        page.evaluate("""() => window.Htx.annotationStore.selected.regions
            .forEach(r => r.type === 'brushregion' && !r.hidden && r.toggleHidden())""")
        answer = editor.click(y, x, "click-over-hidden-prelabel")
        mask = _mask(_brush_of(answer))
        assert mask[y, x]
        # refined, not started afresh: the pre-label's pixels away from the click are kept
        far = prelabel & ~g1
        if far.sum() > 100:
            assert (mask & far).sum() >= 0.5 * far.sum()
        print(f"\npre-label {int(prelabel.sum())} px; after the click over the hidden "
              f"pre-label {int(mask.sum())} px, {int((mask & prelabel).sum())} of them in it")
        assert np.any(mask & prelabel)
