"""Annotation telemetry (clicksmith/telemetry.py) against the real Redis at 127.0.0.1:6379.

Database 15 (the backend tests' own), a project id of its own per test, its keys deleted
afterwards. Times are passed in (`at=`, `now=`), so no assert depends on the clock.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from clicksmith import telemetry as tm
from clicksmith.settings import load_settings
from tests.conftest import real_redis

REDIS_URL = "redis://127.0.0.1:6379/15"
A = tm.ObjectKey("image", "mask", "Object")
B = tm.ObjectKey("image", "mask", "Background")


@pytest.fixture
def conn():
    with real_redis(REDIS_URL) as r:
        yield r


@pytest.fixture
def project(conn):
    pid = 10**9 + uuid.uuid4().int % 10**9
    yield pid
    for key in conn.scan_iter(f"{tm.PREFIX}:{pid}:*"):
        conn.delete(key)


def store(**overrides) -> tm.Telemetry:
    overrides.setdefault("redis_url", REDIS_URL)
    return tm.Telemetry(load_settings(env={}, **overrides))


def deliver_at_once(event: dict, now: float, copies: int = 4) -> list:
    """`copies` of one webhook finished at the same moment, each by a store of its own (as
    separate worker processes would): what each `finish` returned."""
    results: list = []
    barrier = threading.Barrier(copies)

    def deliver() -> None:
        other = store()
        barrier.wait()
        results.append(other.finish(event, now=now))

    threads = [threading.Thread(target=deliver) for _ in range(copies)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def region(obj: tm.ObjectKey, rid: str) -> dict:
    return {"id": rid, "type": "brushlabels", "from_name": obj.control, "to_name": obj.image,
            "original_width": 96, "original_height": 72,
            "value": {"format": "rle", "rle": [0, 1, 2], "brushlabels": [obj.label]}}


def webhook(project: int, task: int, ann: int, regions: list[dict],
            action: str = "ANNOTATION_CREATED", updated_at: str | None = None) -> dict:
    annotation = {"id": ann, "task": task, "project": project, "was_cancelled": False,
                  "result": regions + [{"type": "choices", "from_name": "c", "to_name": "image",
                                        "value": {"choices": ["x"]}}],
                  "created_at": updated_at, "updated_at": updated_at, "lead_time": 12.5}
    return {"action": action, "annotation": annotation, "task": {"id": task},
            "project": {"id": project}}


def click(project: int, task: int, obj: tm.ObjectKey, kind: str = "extend",
          version: str = "v1", clicks: int = 1) -> tm.Interaction:
    return tm.Interaction(project, task, obj, kind, version, clicks)


def test_a_session_of_clicks_then_its_webhook_yields_the_right_counts(project):
    t = store()
    # object A on task 5: a first click, two more, a click deleted (recomputed over 2 clicks),
    # a repeat of the same context (no action), a brush stroke and a superpixel fill
    t.record([click(project, 5, A, "new")], at=1000.0)
    t.record([click(project, 5, A, "extend")], at=1004.0)
    t.record([click(project, 5, A, "extend")], at=1006.0)
    t.record([click(project, 5, A, "recompute", clicks=2)], at=1008.0)
    assert not t.record([click(project, 5, A, "repeat")], at=1009.0)
    t.record([click(project, 5, A, "stroke", clicks=0)], at=1010.0)
    t.record([click(project, 5, A, "superpixel", clicks=0)], at=1011.0)
    # object B on the same task: one box and one click in one request... then a click
    t.record([click(project, 5, B, "box"), click(project, 5, B, "extend", clicks=2)],
             at=1020.0)
    # object A on another task, never submitted
    t.record([click(project, 6, A, "new")], at=1030.0)

    done = t.finish(webhook(project, 5, 70, [region(A, "r1"), region(A, "r2"), region(B, "r3")],
                            updated_at="1970-01-01T00:17:40Z"), now=1065.0)  # 1060 s
    got = {r.label: (r.clicks, r.tools, r.seconds, r.model_version, r.regions, new)
           for r, new in done}
    assert got == {"Object": (4, 2, 60.0, "v1", ["r1", "r2"], True),
                   "Background": (3, 0, 40.0, "v1", ["r3"], True)}
    records = t.objects(project)
    assert sorted((r.task, r.annotation, r.label, r.clicks) for r in records) == [
        (5, 70, "Background", 3), (5, 70, "Object", 4)]
    assert {(r.label, r.lead_time, r.first) for r in records} == {
        ("Object", 12.5, 1000.0), ("Background", 12.5, 1020.0)}
    assert t.pending(project) == {"objects": 1, "tasks": 1}  # task 6's object waits
    [row] = tm.by_version(records)
    assert (row["model_version"], row["objects"], row["clicks_median"]) == ("v1", 2, 3.5)
    assert row["clicks_p90"] == pytest.approx(3.9)
    assert (row["seconds_median"], row["seconds_p90"]) == (50.0, pytest.approx(58.0))


def test_replayed_webhooks_do_not_double_count(project):
    t = store()
    t.record([click(project, 5, A, "new")], at=1000.0)
    t.record([click(project, 5, A, "extend")], at=1002.0)
    event = webhook(project, 5, 71, [region(A, "r1")], updated_at="1970-01-01T00:16:50Z")
    [(first, new)] = t.finish(event, now=1011.0)
    assert new and (first.clicks, first.seconds) == (2, 10.0)
    for _ in range(3):  # the same event again (a replayed job, a second backend process)
        assert t.finish(event, now=1500.0) == []
    # an update that changed no mask through the backend (a label fixed by hand): nothing
    assert t.finish(webhook(project, 5, 71, [region(A, "r1")], "ANNOTATION_UPDATED",
                            "1970-01-01T00:20:00Z"), now=1201.0) == []
    # two more clicks on the submitted object, then its update: added to the same object
    t.record([click(project, 5, A, "extend", version="v2")], at=1300.0)
    t.record([click(project, 5, A, "extend", version="v2")], at=1301.0)
    update = webhook(project, 5, 71, [region(A, "r1")], "ANNOTATION_UPDATED",
                     "1970-01-01T00:21:50Z")
    [(amended, new)] = t.finish(update, now=1311.0)
    assert not new
    assert (amended.clicks, amended.seconds, amended.updates) == (4, 310.0, 1)
    assert (amended.model_version, amended.first_model_version) == ("v2", "v1")
    assert t.finish(update, now=1400.0) == []
    [record] = t.objects(project)
    assert (record.clicks, record.updates) == (4, 1)


def test_racing_copies_of_a_webhook_finish_an_object_once(project):
    t0 = store()
    for i in range(5):
        t0.record([click(project, 8, A, "extend")], at=1000.0 + i)
    event = webhook(project, 8, 72, [region(A, "r1")])
    finished = [r for batch in deliver_at_once(event, 2000.0) for r in batch]
    assert [(r.clicks, new) for r, new in finished] == [(5, True)]
    assert [r.clicks for r in t0.objects(project)] == [5]


def test_missing_or_late_webhooks_never_break_anything(project, conn):
    t = store(telemetry_pending_ttl_seconds=600)
    assert t.record([click(project, 9, A, "new")], at=1000.0)
    ttl = conn.ttl(tm.pending_key(project, 9))
    assert 0 < ttl <= 600  # a webhook that never comes: the pending object expires
    # a webhook for a task nobody clicked on, and one naming objects never clicked
    assert t.finish(webhook(project, 10, 73, [region(A, "r1")])) == []
    assert t.finish(webhook(project, 9, 74, [region(B, "r1")])) == []
    # the pending object expired before its (late) webhook: nothing recorded, nothing raised
    conn.delete(tm.pending_key(project, 9))
    assert t.finish(webhook(project, 9, 75, [region(A, "r1")])) == []
    assert t.objects(project) == [] and t.pending(project) == {"objects": 0, "tasks": 0}
    # malformed or irrelevant payloads are passed over
    for payload in (None, [], {"action": "ANNOTATION_CREATED"},
                    {"action": "ANNOTATION_CREATED", "annotation": {"id": "x", "task": 9}},
                    {"action": "ANNOTATION_CREATED", "project": {"id": project},
                     "annotation": {"id": 1, "task": 9, "result": "oops"}},
                    {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}]},
                    {**webhook(project, 9, 76, [region(A, "r")]),
                     "annotation": {"id": 76, "task": 9, "was_cancelled": True,
                                    "result": [region(A, "r")]}}):
        assert t.finish(payload) == []
    # a late webhook is timed by the annotation's own time, not by its arrival
    t.record([click(project, 11, A, "new")], at=1000.0)
    [(rec, _)] = t.finish(webhook(project, 11, 77, [region(A, "r")],
                                  updated_at="1970-01-01T00:17:00Z"), now=90000.0)
    assert rec.seconds == 20.0
    # an annotation time before the first click (clocks apart): the arrival time is used
    t.record([click(project, 12, A, "new")], at=5000.0)
    [(rec, _)] = t.finish(webhook(project, 12, 78, [region(A, "r")],
                                  updated_at="1970-01-01T00:00:10Z"), now=5030.0)
    assert rec.seconds == 30.0


def test_a_broken_redis_never_raises_into_a_click_or_a_webhook(project):
    failed: list[str] = []
    t = tm.Telemetry(load_settings(env={}, redis_url="redis://127.0.0.1:1/0"),
                     on_failure=failed.append)
    assert t.record([click(project, 5, A, "new")]) is False
    assert t.finish(webhook(project, 5, 79, [region(A, "r1")])) == []
    assert failed == ["record", "finish"] and t.failures == 2
    # off without REDIS_URL or with TELEMETRY=false: nothing is tried
    for settings in (load_settings(env={}), load_settings(env={}, redis_url=REDIS_URL,
                                                          telemetry=False)):
        off = tm.Telemetry(settings, on_failure=failed.append)
        assert not off.enabled
        assert off.record([click(project, 5, A, "new")]) is False
        assert off.finish(webhook(project, 5, 79, [region(A, "r1")])) == []
    assert failed == ["record", "finish"]


def test_finished_records_are_capped_per_project(project, conn):
    t = store(telemetry_max_objects=3, telemetry_keep_days=2)
    for task in range(1, 6):
        t.record([click(project, task, A, "new")], at=1000.0 * task)
        t.finish(webhook(project, task, 100 + task, [region(A, "r")]), now=1000.0 * task + 5)
    assert [r.task for r in t.objects(project)] == [3, 4, 5]  # the newest three
    assert conn.hlen(tm.objects_key(project)) == 3 == conn.zcard(tm.order_key(project))
    assert 0 < conn.ttl(tm.objects_key(project)) <= 2 * 86400


def test_what_counts_as_a_click_and_as_a_tool_action():
    def counts(kind: str, clicks: int) -> tuple[int, int]:
        return tm.Interaction(1, 1, A, kind, "v", clicks).counts()

    assert [counts("new", 1), counts("new", 0), counts("extend", 2)] == [(1, 0)] * 2 + [(2, 0)]
    assert [counts("recompute", 4), counts("box", 1), counts("repeat", 0)] == [
        (1, 0), (1, 0), (0, 0)]
    assert [counts("stroke", 0), counts("adopt", 1), counts("superpixel", 0)] == [
        (0, 1), (1, 1), (0, 1)]
    assert counts("some_future_tool", 0) == (0, 1)


def test_quantiles_and_versions():
    assert tm.quantile([], 0.5) is None
    assert tm.quantile([3.0], 0.9) == 3.0
    assert tm.quantile([1, 2, 3, 4, 10], 0.5) == 3
    assert tm.quantile([1, 2, 3, 4, 10], 0.9) == pytest.approx(7.6)  # numpy's linear rule
    recs = [tm.ObjectRecord(1, t, t, "image", "mask", "Object", c, 0, 0.0, s, s, v)
            for t, (c, s, v) in enumerate([(5, 50.0, "old"), (7, 70.0, "old"),
                                           (2, 20.0, "new"), (3, 30.0, "new")])]
    rows = {r["model_version"]: r for r in tm.by_version(recs)}
    assert [r["model_version"] for r in tm.by_version(recs)] == ["old", "new"]
    assert (rows["old"]["clicks_median"], rows["new"]["clicks_median"]) == (6.0, 2.5)
    assert rows["new"]["seconds_p90"] == pytest.approx(29.0)


def test_project_report_shows_versions_and_the_retrain_gate_decisions(project, tmp_path):
    settings = load_settings(env={}, redis_url=REDIS_URL, model_registry=str(tmp_path))
    runs = tmp_path / "runs"
    runs.mkdir()
    gate = {"holdout": {"candidate": {"noc90": 2.1}, "serving": {"noc90": 2.4}},
            "grabcut": {"candidate": {"noc90": 3.3}, "serving": {"noc90": 2.9}}}
    records = [
        {"run": "r1", "project": project, "started_at": 100.0, "status": "promoted",
         "candidate_version": "cdnet-mnv2-aaaa", "serving_before": None,
         "metrics": {"holdout": gate["holdout"]}, "not_worse": {"holdout": True},
         "project_scale": {"adopted": True, "holdout_noc90": {"general": 14.5, "scaled": 9.8},
                           "scale": {"side": 25.0, "objects": 240, "first_view": 100,
                                     "zoom_min": 50}}},
        {"run": "r2", "project": None, "started_at": 200.0, "status": "rejected",
         "candidate_version": "cdnet-mnv2-bbbb", "serving_before": "cdnet-mnv2-aaaa",
         "metrics": gate, "not_worse": {"holdout": True, "grabcut": False},
         "worse_on": ["grabcut"]},
        {"run": "r3", "project": project + 1, "started_at": 300.0, "status": "promoted"},
        {"run": "r4", "project": project, "started_at": 400.0, "status": "failed",
         "error": "RetrainError: not enough corrections"},
    ]
    for rec in records:
        (runs / f"{rec['run']}.json").write_text(json.dumps(rec))
    (runs / "broken.json").write_text("{")
    t = tm.Telemetry(settings)
    t.record([click(project, 1, A, "new", version="cdnet-mnv2-aaaa")], at=10.0)
    t.finish(webhook(project, 1, 1, [region(A, "r")]), now=40.0)
    report = tm.project_report(settings, project)
    assert [r["run"] for r in report["retrains"]] == ["r4", "r2", "r1"]  # newest first
    assert report["retrains"][1]["noc90"]["grabcut"] == {"candidate": 3.3, "serving": 2.9,
                                                        "not_worse": False}
    assert report["objects"] == 1 and report["versions"][0]["seconds_median"] == 30.0
    text = "\n".join(tm.format_report(report))
    assert "cdnet-mnv2-aaaa" in text and "30.0" in text
    assert "rejected" in text and "grabcut NoC@90 3.30 vs 2.90 (worse)" in text
    assert "failed" in text and "not enough corrections" in text
    assert ("frames for 25 px objects (100/50 px), held-out NoC@90 9.80 vs 14.50: adopted"
            in text)
    assert report["retrains"][1]["frames"] is None  # a run over every project: not judged
    off = tm.project_report(load_settings(env={}, model_registry=str(tmp_path)), project)
    assert off["versions"] is None and len(off["retrains"]) == 3
    assert "needs REDIS_URL" in "\n".join(tm.format_report(off))


def test_a_bulk_event_finishes_only_the_objects_clicked(project):
    t = store()
    t.record([click(project, 30, A, "new")], at=1000.0)
    events = [webhook(project, task, 200 + task, [region(A, f"r{task}")])["annotation"]
              for task in range(25, 35)]
    bulk = {"action": "ANNOTATIONS_CREATED", "annotation": events, "project": {"id": project}}
    [(rec, new)] = t.finish(bulk, now=1010.0)
    assert (rec.task, rec.annotation, rec.clicks, rec.seconds, new) == (30, 230, 1, 10.0, True)
    assert t.finish(bulk, now=1020.0) == []


def test_two_objects_of_one_label_are_two_records(project):
    """An image with two objects of one label (issue 31): each session has a region id of its
    own, and the annotation's regions are matched by it, so each object gets its own counts
    (they were one record of the label, its clicks summed, before)."""
    t = store()
    a1, a2 = tm.ObjectKey("image", "mask", "Object", "ra"), tm.ObjectKey("image", "mask",
                                                                          "Object", "rb")
    t.record([click(project, 5, a1, "new")], at=1000.0)
    t.record([click(project, 5, a1, "extend")], at=1004.0)  # a refinement of the first
    t.record([click(project, 5, a2, "next")], at=1010.0)  # the second object's click
    assert t.pending(project) == {"objects": 2, "tasks": 1}
    event = webhook(project, 5, 80, [region(A, "ra"), region(A, "rb")],
                    updated_at="1970-01-01T00:17:00Z")  # 1020 s
    done = t.finish(event, now=1030.0)
    got = sorted((r.region, r.label, r.clicks, r.tools, r.first, r.seconds, r.regions, new)
                 for r, new in done)
    assert got == [("ra", "Object", 2, 0, 1000.0, 20.0, ["ra"], True),
                   ("rb", "Object", 1, 0, 1010.0, 10.0, ["rb"], True)]
    for _ in range(3):  # replays: nothing pending, nothing counted twice
        assert t.finish(event, now=1100.0) == []
    assert sorted((r.region, r.clicks) for r in t.objects(project)) == [("ra", 2), ("rb", 1)]
    assert t.pending(project) == {"objects": 0, "tasks": 0}
    # one more click on the second object, then the annotation's update: only it is amended
    t.record([click(project, 5, a2, "extend")], at=1200.0)
    update = webhook(project, 5, 80, [region(A, "ra"), region(A, "rb")], "ANNOTATION_UPDATED",
                     "1970-01-01T00:20:10Z")
    [(amended, new)] = t.finish(update, now=1215.0)
    assert (amended.region, amended.clicks, amended.updates, new) == ("rb", 2, 1, False)
    assert sorted((r.region, r.clicks) for r in t.objects(project)) == [("ra", 2), ("rb", 2)]
    [row] = tm.by_version(t.objects(project))
    assert (row["objects"], row["clicks_median"]) == (2, 2.0)


def test_regions_whose_id_is_not_ours_fall_back_to_the_label(project):
    """A region id the backend never issued (Label Studio re-ided the region, it was painted
    by hand) is matched by label: the pending objects of that label no id matched finish
    together, as one record. A session whose region is not in the annotation (a suggestion
    rejected with ✗) is discarded when every region is matched by id, and a replay does not
    take the regions already finished for regions of unknown origin."""
    t = store()
    ra, rb, rc, rd = (tm.ObjectKey("image", "mask", "Object", r) for r in ("ra", "rb", "rc", "rd"))
    t.record([click(project, 6, ra, "new")], at=1000.0)
    t.record([click(project, 6, rb, "next")], at=1010.0)
    t.record([click(project, 6, rb, "extend")], at=1011.0)
    t.record([click(project, 6, rc, "next")], at=1020.0)  # stored re-ided, as "x1"
    t.record([click(project, 6, rd, "next", clicks=2)], at=1030.0)  # rejected (✗)
    t.record([click(project, 6, B, "stroke", clicks=0)], at=1040.0)  # no region id (older)
    event = webhook(project, 6, 81, [region(A, "ra"), region(A, "rb"), region(A, "x1"),
                                     region(B, "rB")])
    done = {(r.label, r.region): (r.clicks, r.tools, r.regions, r.first)
            for r, _ in t.finish(event, now=1100.0)}
    assert done == {("Object", "ra"): (1, 0, ["ra"], 1000.0),
                    ("Object", "rb"): (2, 0, ["rb"], 1010.0),
                    ("Object", ""): (3, 0, ["x1"], 1020.0),  # rc and rd: one, by label
                    ("Background", ""): (0, 1, ["rB"], 1040.0)}
    assert t.pending(project) == {"objects": 0, "tasks": 0}
    assert t.finish(event, now=1200.0) == []

    # every region matched by id: the rejected session is finished as discarded (issue 28),
    # replays or not
    t.record([click(project, 7, ra, "new")], at=2000.0)
    t.record([click(project, 7, rd, "next", clicks=2)], at=2010.0)  # rejected (✗)
    event = webhook(project, 7, 82, [region(A, "ra")])
    assert sorted((r.region, r.clicks, r.discarded) for r, _ in t.finish(event, now=2100.0)
                  ) == [("ra", 1, False), ("rd", 2, True)]
    assert t.pending(project) == {"objects": 0, "tasks": 0}
    for _ in range(2):
        assert t.finish(event, now=2200.0) == []
    assert sorted((r.task, r.region, r.clicks, r.discarded) for r in t.objects(project)) == [
        (6, "", 0, False), (6, "", 3, False), (6, "ra", 1, False), (6, "rb", 2, False),
        (7, "ra", 1, False), (7, "rd", 2, True)]


# --- discarded work (issue 28): sessions clicked, then not in the submitted annotation ----------


def stamp(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def keys(*regions: str) -> list[tm.ObjectKey]:
    return [tm.ObjectKey("image", "mask", "Object", r) for r in regions]


def test_a_rejected_suggestion_becomes_a_discarded_record_once(project):
    t = store()
    ra, rd = keys("ra", "rd")
    t.record([click(project, 20, ra, "new")], at=1000.0)
    t.record([click(project, 20, ra, "extend")], at=1004.0)
    t.record([click(project, 20, rd, "next", version="v2", clicks=2)], at=1010.0)  # ✗ later
    t.record([click(project, 20, rd, "extend", version="v2")], at=1012.0)
    t.record([click(project, 20, rd, "stroke", version="v2", clicks=0)], at=1013.0)
    event = webhook(project, 20, 90, [region(A, "ra")], updated_at=stamp(1050.0))
    done = {r.region: (r.clicks, r.tools, r.first, r.seconds, r.model_version, r.regions,
                       r.discarded, new) for r, new in t.finish(event, now=1060.0)}
    assert done == {"ra": (2, 0, 1000.0, 50.0, "v1", ["ra"], False, True),
                    "rd": (3, 1, 1010.0, 40.0, "v2", [], True, True)}
    assert t.pending(project) == {"objects": 0, "tasks": 0}
    for _ in range(3):  # replays: nothing pending, nothing counted twice
        assert t.finish(event, now=1100.0) == []
    [rd_rec] = [r for r in t.objects(project) if r.discarded]
    assert (rd_rec.annotation, rd_rec.region, rd_rec.clicks, rd_rec.action) == (
        90, "rd", 3, "ANNOTATION_CREATED")
    assert len(t.objects(project)) == 2

    # an annotation without any mask region (every suggestion rejected) discards them all
    t.record([click(project, 21, ra, "new", clicks=3)], at=2000.0)
    [(rec, new)] = t.finish(webhook(project, 21, 91, [], updated_at=stamp(2030.0)), now=2031.0)
    assert (rec.region, rec.clicks, rec.discarded, new) == ("ra", 3, True, True)

    # racing copies of a webhook discard an object once
    t.record([click(project, 22, rd, "new", clicks=2)], at=3000.0)
    event = webhook(project, 22, 92, [], updated_at=stamp(3030.0))
    results = deliver_at_once(event, 3031.0)
    assert [(r.clicks, r.discarded, new) for batch in results for r, new in batch] == [
        (2, True, True)]


def test_an_interaction_after_the_annotation_time_stays_pending(project):
    t = store()
    ra, rb, rc = keys("ra", "rb", "rc")
    t.record([click(project, 23, ra, "new")], at=1000.0)
    t.record([click(project, 23, rb, "next")], at=1010.0)  # before the annotation: ✗
    t.record([click(project, 23, rc, "next")], at=1060.0)  # after it: still being worked on
    event = webhook(project, 23, 93, [region(A, "ra")], updated_at=stamp(1050.0))
    done = sorted((r.region, r.discarded) for r, _ in t.finish(event, now=1070.0))
    assert done == [("ra", False), ("rb", True)]
    assert t.pending(project) == {"objects": 1, "tasks": 1}
    assert t.finish(event, now=1080.0) == []  # a replay leaves rc pending too
    assert t.pending(project) == {"objects": 1, "tasks": 1}
    # the later update holds rc: an accepted record, nothing discarded
    update = webhook(project, 23, 93, [region(A, "ra"), region(A, "rc")], "ANNOTATION_UPDATED",
                     stamp(1090.0))
    [(rec, new)] = t.finish(update, now=1091.0)
    assert (rec.region, rec.discarded, new) == ("rc", False, True)

    # clocks: a missing annotation time is the arrival; one over CLOCK_SLACK_S ahead is not
    # believed (the arrival); one behind the last interaction (Label Studio's clock behind)
    # discards nothing
    for task, updated_at, now, expect in [(24, None, 1100.0, True),
                                          (25, stamp(1000.0 + 10**6), 1100.0, True),
                                          (26, stamp(1005.0), 1100.0, False)]:
        t.record([click(project, task, rb, "new")], at=1010.0)
        got = t.finish(webhook(project, task, 100 + task, [], updated_at=updated_at), now=now)
        assert [r.discarded for r, _ in got] == ([True] if expect else []), task
    assert t.pending(project) == {"objects": 1, "tasks": 1}  # task 26's
    # an interaction at the arrival time itself is not before it
    t.record([click(project, 27, rb, "new")], at=1100.0)
    assert t.finish(webhook(project, 27, 127, []), now=1100.0) == []


def test_an_accepted_object_is_never_discarded(project):
    """Matched by id (Auto-Accept on or off: the suggestion keeps the id of our answer, also
    relabelled), by label (re-ided), or ambiguous (a region of a label nobody clicked, which
    may be a re-ided and relabelled suggestion): nothing discarded. A bulk event (import)
    discards nothing; a region on another image does not hold this image's objects back."""
    t = store()
    ra, rb, rc = keys("ra", "rb", "rc")
    # relabelled by the annotator, id kept: matched by id
    t.record([click(project, 30, ra, "new")], at=1000.0)
    moved = tm.ObjectKey("image", "mask", "Background")
    [(rec, _)] = t.finish(webhook(project, 30, 130, [region(moved, "ra")],
                                  updated_at=stamp(1050.0)), now=1060.0)
    assert (rec.region, rec.discarded, rec.regions) == ("ra", False, ["ra"])
    # re-ided: matched by label, both sessions of that label together, none discarded
    t.record([click(project, 31, ra, "new")], at=1000.0)
    t.record([click(project, 31, rb, "next", clicks=2)], at=1010.0)
    [(rec, _)] = t.finish(webhook(project, 31, 131, [region(A, "x1")],
                                  updated_at=stamp(1050.0)), now=1060.0)
    assert (rec.region, rec.clicks, rec.discarded, rec.regions) == ("", 3, False, ["x1"])
    # a region of another label under an id that is not ours: which session made it cannot be
    # told (relabelled and re-ided?), so none of that image and control is discarded...
    t.record([click(project, 32, ra, "new")], at=1000.0)
    t.record([click(project, 32, rc, "next")], at=1010.0)
    event = webhook(project, 32, 132, [region(A, "ra"), region(moved, "x2")],
                    updated_at=stamp(1050.0))
    assert [(r.region, r.discarded) for r, _ in t.finish(event, now=1060.0)] == [("ra", False)]
    assert t.pending(project) == {"objects": 1, "tasks": 1}
    # ...while such a region on another image does not hold them back
    t.record([click(project, 33, ra, "new")], at=1000.0)
    t.record([click(project, 33, rc, "next")], at=1010.0)
    other = tm.ObjectKey("image2", "mask2", "Background")
    event = webhook(project, 33, 133, [region(A, "ra"), region(other, "x3")],
                    updated_at=stamp(1050.0))
    assert sorted((r.region, r.discarded) for r, _ in t.finish(event, now=1060.0)) == [
        ("ra", False), ("rc", True)]
    # an update of an annotation whose regions were finished before holds nothing back
    t.record([click(project, 33, rb, "next", clicks=4)], at=1100.0)
    update = webhook(project, 33, 133, [region(A, "ra"), region(other, "x3")],
                     "ANNOTATION_UPDATED", stamp(1150.0))
    [(rec, new)] = t.finish(update, now=1160.0)
    assert (rec.region, rec.clicks, rec.discarded, new) == ("rb", 4, True, True)
    # a bulk event (an import, annotations made from predictions) discards nothing
    t.record([click(project, 34, ra, "new")], at=1000.0)
    bulk = {"action": "ANNOTATIONS_CREATED", "project": {"id": project},
            "annotation": [webhook(project, 34, 134, [region(B, "x4")],
                                   updated_at=stamp(1050.0))["annotation"]]}
    assert t.finish(bulk, now=1060.0) == []
    assert t.pending(project) == {"objects": 2, "tasks": 2}  # tasks 32 and 34


def test_a_discarded_object_accepted_in_an_update_and_the_reverse(project):
    t = store()
    ra, rd = keys("ra", "rd")
    t.record([click(project, 40, ra, "new")], at=1000.0)
    t.record([click(project, 40, rd, "next", clicks=2)], at=1010.0)
    t.finish(webhook(project, 40, 140, [region(A, "ra")], updated_at=stamp(1050.0)), now=1060.0)
    # more clicks on rd (its region back: undo), then the update holding it: accepted
    t.record([click(project, 40, rd, "extend")], at=1100.0)
    [(rec, new)] = t.finish(webhook(project, 40, 140, [region(A, "ra"), region(A, "rd")],
                                    "ANNOTATION_UPDATED", stamp(1150.0)), now=1160.0)
    assert (rec.region, rec.clicks, rec.discarded, rec.regions, rec.updates, new) == (
        "rd", 3, False, ["rd"], 1, False)
    # more clicks on ra, then ra deleted and the update submitted: discarded after all
    t.record([click(project, 40, ra, "extend", clicks=2)], at=1200.0)
    [(rec, new)] = t.finish(webhook(project, 40, 140, [region(A, "rd")],
                                    "ANNOTATION_UPDATED", stamp(1250.0)), now=1260.0)
    assert (rec.region, rec.clicks, rec.discarded, rec.updates, new) == ("ra", 3, True, 1, False)
    assert sorted((r.region, r.clicks, r.discarded) for r in t.objects(project)) == [
        ("ra", 3, True), ("rd", 3, False)]


def test_versions_count_discarded_work_apart():
    def rec(clicks: int, version: str, discarded: bool = False) -> tm.ObjectRecord:
        return tm.ObjectRecord(1, 1, 1, "image", "mask", "Object", clicks, 0, 0.0, 10.0, 10.0,
                               version, discarded=discarded)

    rows = {r["model_version"]: r for r in tm.by_version(
        [rec(2, "a"), rec(4, "a"), rec(5, "a", True), rec(1, "a", True), rec(3, "b", True)])}
    a, b = rows["a"], rows["b"]
    assert (a["objects"], a["clicks_median"], a["clicks_mean"]) == (2, 3.0, 3.0)
    assert (a["discarded"], a["discarded_clicks"], a["clicks_per_object_with_discarded"]) == (
        2, 6, 6.0)  # (2 + 4 + 5 + 1) / 2
    assert (b["objects"], b["discarded"], b["discarded_clicks"]) == (0, 1, 3)
    assert (b["clicks_median"], b["clicks_mean"], b["clicks_per_object_with_discarded"]) == (
        None, None, None)
    report = {"project": 1, "versions": list(rows.values()), "pending": None, "retrains": []}
    text = "\n".join(tm.format_report(report))
    assert "discarded suggestions" in text
    line_a = [ln for ln in text.splitlines() if ln.strip().startswith("a ")]
    assert line_a[1].split() == ["a", "2", "6", "3.0", "6.0"]
