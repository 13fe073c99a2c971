"""What a person sees when the backend refuses, in a real Label Studio 1.23.

Label Studio shows `str()` of the requests HTTPError it gets from our answer ("<code> Client
Error: <reason phrase> for url: <url>"), never our JSON body (backend/errors.py says where): in
the Connect Model dialog for /setup, in the `errors` of an interactive-annotating answer for
/predict. Each case checks that the reason reaches that text, and that the backend logged it
(one WARNING line naming the endpoint and the task).
"""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import FIXTURES, REPO, api, raw_api, serving, wait_until
from tests.e2e.test_label_studio import keypoint

pytestmark = pytest.mark.e2e
LABEL_CONFIG = (REPO / "config" / "labeling.xml").read_text()
BRUSH_ONLY = ('<View><Image name="image" value="$image"/><BrushLabels name="mask" '
              'toName="image"><Label value="Object"/></BrushLabels></View>')


def strings(value) -> list[str]:
    """Every string inside a JSON value (Label Studio nests its validation errors)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def logged(backend, *words: str) -> str:
    """The backend's WARNING line holding every word (waits a moment for the log to flush)."""
    def find():
        for line in backend.proc.log.read_text(errors="replace").splitlines():
            if "WARNING backend.errors: refused" in line and all(w in line for w in words):
                return line
        return None

    return wait_until(find, 10, f"a refusal logged with {words}")


def click_errors(ls_server, ml_id: int, task_id: int, h: int, w: int, y: int, x: int) -> list:
    """The editor's smart click on a task; the `errors` Label Studio answers with."""
    body = {"task": task_id, "context": {"result": [keypoint(y, x, h, w, True)]}}
    answer = api(ls_server, "POST", f"/api/ml/{ml_id}/interactive-annotating", body)
    assert "errors" in answer, f"expected a refusal, Label Studio answered {answer}"
    return answer["errors"]


def test_connect_model_shows_why_the_config_is_refused(ls, ls_server, backend):
    project = ls.projects.create(title="clicksmith: no keypoints", label_config=BRUSH_ONLY)
    r = raw_api(ls_server, "POST", "/api/ml", {"project": project.id, "url": backend.url,
                                               "is_interactive": True, "title": "clicksmith"})
    assert r.status_code == 400, (r.status_code, r.text[:500])
    [shown] = [s for s in strings(r.json()) if "Reason:" in s]
    print(f"\nConnect Model shows: {shown!r}")
    assert "Reason: 400 Client Error: " in shown and "BAD REQUEST" not in shown, shown
    assert "KeyPointLabels" in shown and f"for url: {backend.url}/setup" in shown, shown
    line = logged(backend, "POST /setup", "KeyPointLabels")
    print(f"backend log: {line}")


def test_a_click_on_an_unfetchable_image_shows_why(ls, ls_server, backend):
    project = ls.projects.create(title="clicksmith: missing image",
                                 label_config=LABEL_CONFIG)
    gone = f"/data/upload/{project.id}/gone-{uuid.uuid4().hex[:6]}.png"
    api(ls_server, "POST", f"/api/projects/{project.id}/import", [{"data": {"image": gone}}])
    [task] = list(ls.tasks.list(project=project.id))
    ml = ls.ml.create(project=project.id, url=backend.url, is_interactive=True,
                      title="clicksmith")
    [shown] = click_errors(ls_server, ml.id, task.id, 240, 320, 120, 160)
    print(f"\nthe editor's click gets: {shown!r}")
    # Label Studio 1.23 answers a missing upload with HTTP 500, which the backend takes for a
    # failing image host (502): "502 Server Error: could not fetch image ...: HTTP 500 ..."
    assert shown.startswith(("400 Client Error: ", "502 Server Error: ")), shown
    assert "BAD REQUEST" not in shown and "BAD GATEWAY" not in shown, shown
    assert "could not fetch image" in shown and gone in shown, shown
    assert shown.endswith(f"for url: {backend.url}/predict"), shown
    line = logged(backend, "POST /predict", f"(task {task.id})", "could not fetch image")
    print(f"backend log: {line}")


def test_a_wrong_api_key_is_named(ls, ls_server, e2e_env, tmp_path):
    """A backend given a key Label Studio does not accept: Connect Model refuses it naming the
    key (its /health says why), or, where Label Studio connects it, the first click does."""
    env = {**e2e_env, "LABEL_STUDIO_API_KEY": "not-the-token-0123456789"}
    with serving(env, tmp_path / "serve.log") as wrong:
        project = ls.projects.create(title="clicksmith: wrong key", label_config=LABEL_CONFIG)
        path = FIXTURES / "images" / "figure.png"
        api(ls_server, "POST", f"/api/projects/{project.id}/import",
            files=[("file0", (path.name, path.read_bytes()))])
        [task] = list(ls.tasks.list(project=project.id))
        r = raw_api(ls_server, "POST", "/api/ml", {"project": project.id, "url": wrong.url,
                                                   "is_interactive": True, "title": "wrong"})
        if r.status_code == 400:  # refused at Connect Model
            [shown] = [s for s in strings(r.json()) if wrong.url in s]
            where = "Connect Model shows"
        else:
            assert r.status_code < 300, (r.status_code, r.text[:500])
            [shown] = click_errors(ls_server, r.json()["id"], task.id, 240, 320, 120, 160)
            where = "the editor's click gets"
            logged(wrong, "POST /predict", f"(task {task.id})", "LABEL_STUDIO_API_KEY")
        print(f"\n{where}: {shown!r}")
        assert "LABEL_STUDIO_API_KEY" in shown, shown
        assert not any(p in shown for p in ("BAD REQUEST", "BAD GATEWAY", "SERVICE UNAVAILABLE"))

        # a click reaching that backend (the key went bad after connecting): what Label Studio
        # makes of the answer (MLApi._request: raise_for_status, str() of the error)
        import requests

        body = {"tasks": [{"id": task.id, "data": dict(task.data), "annotations": [],
                           "drafts": [], "predictions": []}],
                "project": f"{project.id}.1", "label_config": LABEL_CONFIG,
                "params": {"context": {"result": [keypoint(120, 160, 240, 320, True)]}}}
        try:
            requests.post(f"{wrong.url}/predict", json=body, timeout=60).raise_for_status()
        except requests.HTTPError as exc:
            shown = str(exc)
        else:
            raise AssertionError("a wrong key must be refused")
        print(f"a click would get: {shown!r}")
        assert "LABEL_STUDIO_API_KEY" in shown and "BAD GATEWAY" not in shown, shown
        print(f"backend log: {logged(wrong, 'POST /predict', f'(task {task.id})', 'API_KEY')}")
