"""The API client against real servers on 127.0.0.1: the token it sends (legacy or personal
access token, decided once and shared with the image fetcher), no redirects, tasks as dicts."""

from __future__ import annotations

import time

import pytest
from label_studio_sdk.core.api_error import ApiError

from clicksmith.labelstudio.client import (
    LabelStudioError,
    as_dict,
    client_for,
    describe_error,
    get_task,
    list_tasks,
    settings_token,
)
from clicksmith.labelstudio.images import ImageFetcher
from clicksmith.settings import load_settings
from tests.review.lsfake import API_KEY

PROJECT = {"id": 1, "title": "p", "label_config": "<View></View>"}


def settings(url: str, key: str):
    return load_settings(env={}, label_studio_url=url, label_studio_api_key=key)


def test_url_and_key_are_required():
    with pytest.raises(ValueError, match="LABEL_STUDIO_URL"):
        client_for(settings("", "k"))
    with pytest.raises(ValueError, match="LABEL_STUDIO_API_KEY"):
        client_for(settings("http://127.0.0.1:9", ""))


def test_a_legacy_token_is_sent_as_token(ls):
    ls.json("/api/projects/1/", PROJECT)
    project = as_dict(client_for(settings(ls.url, "legacy-1")).projects.get(1))
    assert project["label_config"] == "<View></View>"
    assert [(s.path, s.auth) for s in ls.seen] == [("/api/projects/1/", "Token legacy-1")]


def test_a_personal_access_token_is_exchanged_once_for_api_and_images(ls):
    jwt = pytest.importorskip("jwt")
    pat = jwt.encode({"token_type": "refresh", "exp": int(time.time()) + 3600}, "p" * 32)
    access = jwt.encode({"token_type": "access", "exp": int(time.time()) + 300}, "p" * 32)
    ls.json("/api/token/refresh/", {"access": access})
    ls.json("/api/projects/1/", PROJECT)
    ls.image("/data/upload/1/a.png")
    s = settings(ls.url, pat)
    assert settings_token(s).personal
    client_for(s).projects.get(1)
    client_for(s).projects.get(1)
    ImageFetcher(s).load("/data/upload/1/a.png")
    assert [(s.method, s.path, s.auth) for s in ls.seen] == [
        ("POST", "/api/token/refresh/", None),
        ("GET", "/api/projects/1/", f"Bearer {access}"),
        ("GET", "/api/projects/1/", f"Bearer {access}"),
        ("GET", "/data/upload/1/a.png", f"Bearer {access}"),
    ]


def test_an_expiring_access_token_is_renewed(ls):
    jwt = pytest.importorskip("jwt")
    pat = jwt.encode({"token_type": "refresh", "exp": int(time.time()) + 3600}, "r" * 32)
    # expires within the 30 s safety margin: each use fetches a fresh one
    access = jwt.encode({"token_type": "access", "exp": int(time.time()) + 10}, "r" * 32)
    ls.json("/api/token/refresh/", {"access": access})
    ls.json("/api/projects/1/", PROJECT)
    client = client_for(settings(ls.url, pat))
    client.projects.get(1)
    client.projects.get(1)
    assert ls.paths() == ["/api/token/refresh/", "/api/projects/1/"] * 2


def test_a_refused_personal_access_token_says_so(ls):
    jwt = pytest.importorskip("jwt")
    pat = jwt.encode({"token_type": "refresh", "exp": int(time.time()) + 3600}, "x" * 32)
    ls.json("/api/token/refresh/", {"detail": "invalid"}, status=401)
    with pytest.raises(LabelStudioError) as info:
        client_for(settings(ls.url, pat)).projects.get(1)
    assert info.value.status == 502 and not info.value.transient
    assert "LABEL_STUDIO_API_KEY" in describe_error(info.value)
    assert ls.paths() == ["/api/token/refresh/"]


def test_api_calls_follow_no_redirect(ls, other):
    other.json("/api/projects/1/", PROJECT)
    ls.redirect("/api/projects/1/", f"{other.url}/api/projects/1/")
    with pytest.raises(ApiError) as info:
        client_for(settings(ls.url, "legacy-2")).projects.get(1)
    assert info.value.status_code == 302
    assert other.seen == []


def test_tasks_are_listed_by_total_and_read_as_dicts(fake_ls):
    fake_ls.add_project(3, 5)
    client = client_for(settings(fake_ls.url, API_KEY))
    tasks = list_tasks(client, 3, page_size=2)
    assert [t["id"] for t in tasks] == [1, 2, 3, 4, 5]
    assert all(isinstance(t, dict) for t in tasks)
    # three pages for five tasks, and no request past the last one
    assert [c for c in fake_ls.calls if c[1] == "/api/tasks/"] == [("GET", "/api/tasks/")] * 3
    fake_ls.predictions.append({"id": 1, "task": 2, "result": [], "model_version": "v"})
    task = get_task(client, 2)
    assert task["id"] == 2 and [p["model_version"] for p in task["predictions"]] == ["v"]
    with pytest.raises(ApiError) as info:
        get_task(client, 999)
    assert describe_error(info.value).startswith("Label Studio answered HTTP 404")
