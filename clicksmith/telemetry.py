"""Annotation telemetry: per annotated object, the clicks and tool actions it took, the seconds
from its first interaction to the submitted annotation, and the model version that served it.

What a project manager decides promotion from (`clicksmith status --project N`, the review
report, the backend's /metrics histograms): a model that needs fewer clicks and less time per
object is the better one for this project, whatever its NoC on a benchmark.

How an object is followed, all in Redis (REDIS_URL; without it telemetry is off, as the
webhooks that finish records are then ignored too):
- every answered /predict prompt is one interaction of an object (task, image, mask control,
  label and the session's region id: the interactive session's own identity, so the several
  objects of one label an image may hold are followed apart, see backend.pipeline.next_object):
  `Telemetry.record` adds it to the task's pending hash, one pipelined round trip (HINCRBY the
  counts, HSETNX the first time, HSET the last time and version, EXPIRE). It never raises: a
  failure is logged (at most once a minute) and counted, and the click is answered as if
  nothing happened;
- an ANNOTATION_CREATED / ANNOTATION_UPDATED webhook (`Telemetry.finish`) matches the
  annotation's mask regions to the task's pending objects, removes them from the pending hash
  and stores one finished record per object, in one optimistic transaction (WATCH), so two
  copies of a webhook racing each other finish an object once. A region is matched by its id
  (Label Studio 1.23 stores an accepted suggestion under the id of our answer's result item,
  with Auto-Accept on and off: the editor's `acceptSuggestion` keeps the suggestion's area id
  and `Result.serialize` writes it without its "#<annotation>" suffix); a region whose id was
  never ours (re-ided, painted by hand, pasted) falls back to its label: the pending objects of
  that image, control and label that no id matched finish as one record with those regions,
  as every object of a label did before sessions had region ids (`_match`). A record is
  identified by annotation id + object: a replayed webhook finds nothing pending and changes
  nothing; an update after more clicks on an object already submitted adds those clicks to its
  record (the object is counted once);
- discarded work (`_discarded`): an ANNOTATION_CREATED / ANNOTATION_UPDATED webhook also
  finishes, in the same transaction, the task's pending objects that no region matched (by id
  or by label) and whose last interaction came before the annotation's time: a suggestion
  rejected with ✗ (or never accepted, Auto-Accept off), a region deleted before submitting.
  Each becomes a record of the same shape with `discarded` true, its clicks, tools, seconds
  and model version kept, so a model whose suggestions are often rejected is not counted as
  cheaper than it is. The annotation's time is its updated_at/created_at, unless missing or
  over CLOCK_SLACK_S past the webhook's arrival (then the arrival), never later than the
  arrival (`_cutoff`); an object interacted with at or after it stays pending (the annotator
  may still be working on it, for a later ANNOTATION_UPDATED), and so do the objects last
  clicked within the lag when Label Studio's clock is behind the backend's. An accepted
  object is never discarded: it keeps its region id with Auto-Accept on and off, a region
  stored under another id takes the pending objects of its label, and a region that neither
  accounts for (painted by hand under a label nobody clicked, or a suggestion re-ided and
  relabelled: which session made it cannot be told) keeps every pending object of its image
  and control pending. Bulk
  ANNOTATIONS_CREATED (imports, annotations made from predictions) discards nothing, and
  neither does a skipped annotation. A discarded object whose region comes back in a later
  update of that annotation (after more clicks) becomes an accepted record again; an accepted
  object clicked again and then deleted becomes discarded. The pending hash is per task, not
  per annotator: a second annotator's objects on the task, clicked before the first one's
  submission, are discarded by it;
- bounds: a task's pending hash expires TELEMETRY_PENDING_TTL_SECONDS after its last
  interaction (a webhook that never comes, a task abandoned); a project keeps its newest
  TELEMETRY_MAX_OBJECTS finished records (the oldest are dropped), and all of them expire
  TELEMETRY_KEEP_DAYS after the project's last finished object.

Keys (`<p>`: the numeric project id, `<t>`: the task id):
    clicksmith:telemetry:<p>:pending:<t>   hash  "<object>#<name>" -> value (see _PENDING)
    clicksmith:telemetry:<p>:objects       hash  "<annotation>:<object>" -> record JSON
    clicksmith:telemetry:<p>:order         zset  "<annotation>:<object>" -> submitted time
`<object>` is the JSON list [image, control, label, region] (an object followed by its region
id), or [image, control, label] (interactions without a region id, and a record of the regions
matched by label).

Counting (`Interaction.counts`): clicks are the keypoint clicks the network ran, a box, or a
deleted click (recomputed: one); a tool action is a request whose mask came from anything else
(brush stroke or eraser, an edit of the answer adopted, superpixel, lasso point, refine), plus
any click it also ran. A request that repeats what the session already holds counts nothing.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clicksmith.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "clicksmith:telemetry"
CLICK_KINDS = frozenset({"new", "extend", "recompute", "box", "next"})
IDLE_KINDS = frozenset({"repeat"})
FINISH_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"})
DISCARD_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED"})  # an annotator's own
_MASK_TYPES = {"brushlabels", "bitmasklabels"}
_PENDING = ("clicks", "tools", "first", "last", "version", "first_version")
MAX_REGION_IDS = 20  # region ids kept per record (an object painted in many strokes)
WARN_EVERY_S = 60.0
CLOCK_SLACK_S = 60.0  # an annotation time this far past the webhook's arrival is not believed


@dataclass(frozen=True)
class ObjectKey:
    """One annotated object: the Image, the mask control, the label and the id of the region
    its session's answers fill (what a session is); `region` "": one label's objects together
    (interactions without a region id, regions matched by label)."""

    image: str
    control: str
    label: str
    region: str = ""

    @property
    def id(self) -> str:
        parts = [self.image, self.control, self.label] + ([self.region] if self.region else [])
        return json.dumps(parts, separators=(",", ":"))

    @property
    def by_label(self) -> ObjectKey:
        return ObjectKey(self.image, self.control, self.label)

    @classmethod
    def parse(cls, oid: str) -> ObjectKey | None:
        """The key of an `id` (None when it is not one)."""
        try:
            parts = json.loads(oid)
        except ValueError:
            return None
        if (not isinstance(parts, list) or len(parts) not in (3, 4)
                or not all(isinstance(p, str) for p in parts)):
            return None
        return cls(*parts)


@dataclass(frozen=True)
class Interaction:
    """One answered prompt of /predict."""

    project: int
    task: int
    obj: ObjectKey
    kind: str  # the pipeline's Kind value
    model_version: str
    clicks: int = 1  # clicks the request ran through the network (Outcome.clicks_run)

    def counts(self) -> tuple[int, int]:
        """(clicks, tool actions) this interaction adds: a new or extending request its new
        clicks (at least one), a recompute (a click deleted) or a box one, a tool's request one
        tool action plus the clicks it also ran (a click after an eraser edit is adopted)."""
        if self.kind in IDLE_KINDS:
            return 0, 0
        if self.kind in ("new", "extend", "next"):  # next: a new object's first clicks
            return max(1, self.clicks), 0
        if self.kind in CLICK_KINDS:
            return 1, 0
        return max(0, self.clicks), 1


@dataclass
class ObjectRecord:
    """A finished object: what it took, from its first interaction to its annotation."""

    project: int
    task: int
    annotation: int
    image: str
    control: str
    label: str
    clicks: int
    tools: int
    first: float  # time of the first interaction (epoch seconds, the backend's clock)
    submitted: float  # the annotation's updated_at/created_at, else when the webhook came
    seconds: float
    model_version: str
    first_model_version: str = ""  # set when the object's interactions spanned two versions
    regions: list[str] = field(default_factory=list)  # the annotation's region ids it holds
    action: str = ""
    updates: int = 0  # later submissions that added interactions
    lead_time: float | None = None  # Label Studio's own time on the annotation, for reference
    region: str = ""  # the session's region id it was matched by ("": matched by label)
    discarded: bool = False  # interacted with, not in the submitted annotation (rejected ✗)

    @property
    def key(self) -> str:
        obj = ObjectKey(self.image, self.control, self.label, self.region)
        return f"{self.annotation}:{obj.id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ObjectRecord:
        data = json.loads(raw)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def pending_key(project: int, task: int) -> str:
    return f"{PREFIX}:{int(project)}:pending:{int(task)}"


def objects_key(project: int) -> str:
    return f"{PREFIX}:{int(project)}:objects"


def order_key(project: int) -> str:
    return f"{PREFIX}:{int(project)}:order"


# --- reading webhook payloads -----------------------------------------------------------------


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _stamp(value: object) -> float | None:
    """labelstudio.regions.stamp_time's rule (naive: UTC), None instead of -inf; not imported
    from there because that module loads the SDK's converter (seconds), which `clicksmith
    status` should not pay for."""
    from datetime import UTC, datetime

    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class Submission:
    """One submitted annotation, as far as telemetry needs it."""

    project: int
    task: int
    annotation: int
    regions: list[tuple[ObjectKey, str]]  # (image, control, label) and id of each mask region
    stamp: float | None  # updated_at (else created_at), epoch seconds
    lead_time: float | None


def submissions(payload: object) -> list[Submission]:
    """The annotations of an ANNOTATION_CREATED/UPDATED (or bulk ANNOTATIONS_CREATED) payload
    with their mask regions; anything malformed is passed over, cancelled (skipped) annotations
    too."""
    if not isinstance(payload, dict) or payload.get("action") not in FINISH_ACTIONS:
        return []
    project = payload.get("project")
    project_id = _int(project.get("id") if isinstance(project, dict) else project)
    annotations = payload.get("annotation")
    if annotations is None:
        annotations = payload.get("annotations")
    if isinstance(annotations, dict):
        annotations = [annotations]
    out = []
    for ann in annotations if isinstance(annotations, list) else []:
        if not isinstance(ann, dict) or ann.get("was_cancelled"):
            continue
        ann_id, task_id = _int(ann.get("id")), _int(ann.get("task"))
        where = project_id if project_id is not None else _int(ann.get("project"))
        if ann_id is None or task_id is None or where is None:
            continue
        regions: list[tuple[ObjectKey, str]] = []
        for item in ann.get("result") if isinstance(ann.get("result"), list) else []:
            if not isinstance(item, dict):
                continue
            kind = str(item.get("type", "")).lower()
            value = item.get("value")
            if kind not in _MASK_TYPES or not isinstance(value, dict):
                continue
            labels = value.get(kind)
            label = labels[0] if isinstance(labels, list) and labels else ""
            obj = ObjectKey(str(item.get("to_name")), str(item.get("from_name")), str(label))
            rid = item.get("id")
            regions.append((obj, str(rid) if isinstance(rid, str | int) else ""))
        lead = ann.get("lead_time")
        lead = float(lead) if isinstance(lead, int | float) and not isinstance(lead, bool) \
            and math.isfinite(lead) else None
        out.append(Submission(where, task_id, ann_id, regions,
                              _stamp(ann.get("updated_at")) or _stamp(ann.get("created_at")),
                              lead))
    return out


# --- the store ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    pending_ttl: int
    max_objects: int
    keep_seconds: int

    @classmethod
    def of(cls, settings: Settings) -> Bounds:
        return cls(max(60, int(settings.telemetry_pending_ttl_seconds)),
                   max(1, int(settings.telemetry_max_objects)),
                   max(86400, int(settings.telemetry_keep_days) * 86400))


class Telemetry:
    """The telemetry store on one Redis connection; `enabled` False without REDIS_URL or with
    TELEMETRY=false (every method then does nothing)."""

    def __init__(self, settings: Settings, conn=None, timeout: float = 0.5,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.bounds = Bounds.of(settings)
        self.on_failure = on_failure  # called with "record" or "finish" (a metric)
        self.enabled = bool(settings.telemetry and (settings.redis_url or conn is not None))
        self._conn = conn
        self._url = settings.redis_url
        self._timeout = timeout
        self.failures = 0
        self._warned = -math.inf

    @property
    def conn(self):
        if self._conn is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # short timeouts, no retries: telemetry must never hold a click
            self._conn = redis.Redis.from_url(self._url, socket_timeout=self._timeout,
                                              socket_connect_timeout=self._timeout,
                                              retry=Retry(NoBackoff(), 0))
        return self._conn

    def _failed(self, op: str, what: str, exc: Exception) -> None:
        self.failures += 1
        if self.on_failure is not None:
            try:
                self.on_failure(op)
            except Exception:  # noqa: BLE001, S110 (a metric must not break the caller)
                pass
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning("telemetry: %s not recorded (%s: %s); clicks and webhooks are answered "
                        "as usual (%d telemetry failures so far)", what, type(exc).__name__, exc,
                        self.failures)

    # --- the click path ---------------------------------------------------------------------
    def record(self, interactions: Iterable[Interaction], at: float | None = None) -> bool:
        """Add a request's interactions to their tasks' pending objects, one round trip.
        True when stored; False when off, nothing to store, or failed (logged, never raised)."""
        if not self.enabled:
            return False
        at = time.time() if at is None else float(at)
        try:
            pipe = self.conn.pipeline(transaction=False)
            keys = set()
            for i in interactions:
                clicks, tools = i.counts()
                if not clicks and not tools:
                    continue
                key, oid = pending_key(i.project, i.task), i.obj.id
                pipe.hincrby(key, f"{oid}#clicks", clicks)
                pipe.hincrby(key, f"{oid}#tools", tools)
                pipe.hsetnx(key, f"{oid}#first", repr(at))
                pipe.hsetnx(key, f"{oid}#first_version", i.model_version)
                pipe.hset(key, mapping={f"{oid}#last": repr(at), f"{oid}#version":
                                        i.model_version})
                keys.add(key)
            if not keys:
                return False
            for key in keys:
                pipe.expire(key, self.bounds.pending_ttl)
            pipe.execute()
            return True
        except Exception as exc:  # noqa: BLE001 (telemetry never breaks a click)
            self._failed("record", "an interaction", exc)
            return False

    # --- the webhook path -------------------------------------------------------------------
    def finish(self, payload: object, now: float | None = None) -> list[tuple[ObjectRecord, bool]]:
        """Finish the pending objects an annotation webhook submitted, and those it discarded
        (`ObjectRecord.discarded`): [(record, new)], `new` False when the record was amended
        (an update after more interactions). Replays return []. Never raises: a failure is
        logged and counted, and ends the call (a bulk event on a stalled Redis must not cost a
        timeout per annotation: Label Studio waits 1 s).

        One round trip finds which annotations' tasks have pending objects at all (a bulk
        import of thousands has none); only those run their transaction."""
        if not self.enabled:
            return []
        now = time.time() if now is None else float(now)
        action = str(payload.get("action")) if isinstance(payload, dict) else ""
        # an annotation without mask regions finishes nothing, but may discard (every
        # suggestion rejected)
        subs = [s for s in submissions(payload) if s.regions or action in DISCARD_ACTIONS]
        out: list[tuple[ObjectRecord, bool]] = []
        if not subs:
            return out
        sub = subs[0]
        try:
            pipe = self.conn.pipeline(transaction=False)
            for sub in subs:
                pipe.exists(pending_key(sub.project, sub.task))
            waiting = [s for s, n in zip(subs, pipe.execute(), strict=True) if n]
            for sub in waiting:
                out += self._finish_one(sub, action, now)
        except Exception as exc:  # noqa: BLE001 (telemetry never breaks a webhook)
            self._failed("finish", f"annotation {sub.annotation}", exc)
        return out

    def _finish_one(self, sub: Submission, action: str,
                    now: float) -> list[tuple[ObjectRecord, bool]]:
        pkey, okey, zkey = (pending_key(sub.project, sub.task), objects_key(sub.project),
                            order_key(sub.project))
        result: list[tuple[ObjectRecord, bool]] = []
        cutoff = _cutoff(sub.stamp, now)

        def attempt(pipe) -> None:
            result.clear()
            pending = _parse_pending(pipe.hgetall(pkey))
            lookup = lambda keys: pipe.hmget(okey, keys)  # noqa: E731
            groups = _match(sub, pending, lookup)
            dropped = (_discarded(sub, pending, groups, cutoff, lookup)
                       if action in DISCARD_ACTIONS else {})
            work = [(key, oids, regions, False) for key, (oids, regions) in groups.items()]
            work += [(key, [oid], [], True) for key, oid in dropped.items()]
            if not work:
                return
            existing = pipe.hmget(okey, [f"{sub.annotation}:{key.id}" for key, *_ in work])
            records = []
            for (key, oids, regions, discarded), old in zip(work, existing, strict=True):
                p = _combined([pending[oid] for oid in oids])
                submitted = _submitted(sub.stamp, p["first"], now)
                if old is not None:
                    rec = ObjectRecord.from_json(old)
                    rec.clicks += p["clicks"]
                    rec.tools += p["tools"]
                    rec.submitted = max(rec.submitted, submitted)
                    rec.seconds = round(max(0.0, rec.submitted - rec.first), 3)
                    if rec.model_version != p["version"]:
                        rec.first_model_version = rec.first_model_version or rec.model_version
                        rec.model_version = p["version"]
                    rec.regions = regions[:MAX_REGION_IDS] if not discarded else rec.regions
                    rec.discarded = discarded  # the annotation's latest state decides
                    rec.updates += 1
                    rec.action = action
                    rec.lead_time = sub.lead_time if sub.lead_time is not None else rec.lead_time
                else:
                    rec = ObjectRecord(
                        sub.project, sub.task, sub.annotation, key.image, key.control,
                        key.label, p["clicks"], p["tools"], p["first"], submitted,
                        round(max(0.0, submitted - p["first"]), 3), p["version"],
                        p["first_version"] if p["first_version"] != p["version"] else "",
                        regions[:MAX_REGION_IDS], action, 0, sub.lead_time, key.region,
                        discarded)
                records.append((rec, old is None))
            pipe.multi()
            pipe.hdel(pkey, *[f"{oid}#{n}" for _, oids, _, _ in work for oid in oids
                              for n in _PENDING])
            pipe.hset(okey, mapping={rec.key: rec.to_json() for rec, _ in records})
            pipe.zadd(zkey, {rec.key: rec.submitted for rec, _ in records})
            pipe.expire(okey, self.bounds.keep_seconds)
            pipe.expire(zkey, self.bounds.keep_seconds)
            result.extend(records)

        self.conn.transaction(attempt, pkey, okey)
        if result:
            self._trim(sub.project)
        return list(result)

    def _trim(self, project: int) -> None:
        """Keep the project's newest `max_objects` records."""
        okey, zkey = objects_key(project), order_key(project)
        over = self.conn.zcard(zkey) - self.bounds.max_objects
        if over > 0:
            old = [k for k, _ in self.conn.zpopmin(zkey, over)]
            if old:
                self.conn.hdel(okey, *old)

    # --- reading ----------------------------------------------------------------------------
    def objects(self, project: int) -> list[ObjectRecord]:
        """The project's finished records, oldest submission first."""
        okey, zkey = objects_key(project), order_key(project)
        order = {k.decode() if isinstance(k, bytes) else k: s
                 for k, s in self.conn.zrange(zkey, 0, -1, withscores=True)}
        recs = []
        for raw in self.conn.hvals(okey):
            try:
                recs.append(ObjectRecord.from_json(raw))
            except (ValueError, TypeError):
                continue
        recs.sort(key=lambda r: (order.get(r.key, r.submitted), r.key))
        return recs

    def pending(self, project: int) -> dict[str, int]:
        """{"objects": n, "tasks": m} still waiting for their annotation webhook."""
        objects = tasks = 0
        for key in self.conn.scan_iter(match=f"{PREFIX}:{int(project)}:pending:*", count=500):
            n = len(_parse_pending(self.conn.hgetall(key)))
            objects += n
            tasks += 1 if n else 0
        return {"objects": objects, "tasks": tasks}


def _submitted(stamp: float | None, first: float, now: float) -> float:
    """When the object was submitted: the annotation's own time (right for a late webhook),
    unless it is missing or the two clocks disagree (before the object's first interaction,
    or over CLOCK_SLACK_S after the webhook arrived): then the webhook's arrival."""
    if stamp is None or not first <= stamp <= now + CLOCK_SLACK_S:
        return now
    return stamp


def _cutoff(stamp: float | None, now: float) -> float:
    """The annotation's time for telling work before it (discarded when not submitted) from
    work after it (still pending): its own time, unless missing or over CLOCK_SLACK_S after
    the webhook's arrival (then the arrival), and never later than the arrival."""
    if stamp is None or stamp > now + CLOCK_SLACK_S:
        return now
    return min(stamp, now)


def _discarded(sub: Submission, pending: dict[str, dict],
               groups: dict[ObjectKey, tuple[list[str], list[str]]], cutoff: float,
               lookup: Callable[[list[str]], list]) -> dict[ObjectKey, str]:
    """The pending objects the annotation discarded: {the record's object: its pending object
    id}. Those `_match` did not take (no region of the annotation has their region id, and
    none of their label fell back to them) whose last interaction came before `cutoff`. When
    a region of the annotation is accounted for by no session (not matched by id, its label
    matched no pending object, and its id names no record this annotation already finished:
    painted by hand, or one of our suggestions re-ided and relabelled), it could be any
    pending object's accepted region, so nothing on its image and control is discarded."""
    taken = {oid for oids, _ in groups.values() for oid in oids}
    candidates: dict[str, ObjectKey] = {}
    for oid, p in pending.items():
        key = ObjectKey.parse(oid)
        if key is not None and oid not in taken and p["last"] < cutoff:
            candidates[oid] = key
    if not candidates:
        return {}
    places = {(k.image, k.control) for k in candidates.values()}
    matched = {(k.image, k.control, rid) for k, (_, regions) in groups.items()
               for rid in regions}
    unsure = [(obj, rid) for obj, rid in sub.regions if (obj.image, obj.control) in places
              and obj not in groups and (obj.image, obj.control, rid) not in matched]
    blocked: set[tuple[str, str]] = set()
    if unsure:
        names = [f"{sub.annotation}:{ObjectKey(o.image, o.control, o.label, rid).id}"
                 for o, rid in unsure]
        names += [f"{sub.annotation}:{o.id}" for o, _ in unsure]
        found = lookup(names)
        n = len(unsure)
        for i, (obj, rid) in enumerate(unsure):
            if not ((rid and found[i] is not None) or found[n + i] is not None):
                blocked.add((obj.image, obj.control))
    return {key: oid for oid, key in candidates.items()
            if (key.image, key.control) not in blocked}


def _match(sub: Submission, pending: dict[str, dict],
           lookup: Callable[[list[str]], list]) -> dict[ObjectKey, tuple[list[str], list[str]]]:
    """Which pending objects the annotation's regions finish: {the record's object: (the
    pending object ids it takes, the region ids)}, in the annotation's order.

    A region whose id is a pending session's region id (on the same image and control) finishes
    that object: its own record. The other regions fall back to their label: the pending
    objects of that image, control and label that no id matched finish together, as one record
    of the label (which of them made which region cannot be told) - unless the region's id
    already names a finished record of this annotation (`lookup` reads records by key: a
    replay, or an update after another object was clicked), which is no region of unknown
    origin. A pending object no region matched is left to `_discarded`."""
    keys = {oid: ObjectKey.parse(oid) for oid in pending}
    by_region = {(k.image, k.control, k.region): oid for oid, k in keys.items()
                 if k is not None and k.region}
    groups: dict[ObjectKey, tuple[list[str], list[str]]] = {}
    unknown: list[tuple[ObjectKey, str]] = []
    for obj, rid in sub.regions:
        oid = by_region.get((obj.image, obj.control, rid)) if rid else None
        if oid is None:
            unknown.append((obj, rid))
            continue
        regions = groups.setdefault(keys[oid], ([oid], []))[1]  # type: ignore[index]
        if rid not in regions:
            regions.append(rid)
    taken = {oid for oids, _ in groups.values() for oid in oids}
    by_label: dict[ObjectKey, list[str]] = {}
    for oid, k in keys.items():
        if k is not None and oid not in taken:
            by_label.setdefault(k.by_label, []).append(oid)
    unknown = [(obj, rid) for obj, rid in unknown if obj in by_label]
    named = [(obj, rid) for obj, rid in unknown if rid]
    if named:
        found = lookup([f"{sub.annotation}:{ObjectKey(o.image, o.control, o.label, rid).id}"
                        for o, rid in named])
        done = {(o, rid) for (o, rid), rec in zip(named, found, strict=True) if rec is not None}
        unknown = [u for u in unknown if u not in done]
    for obj, rid in unknown:
        regions = groups.setdefault(obj, (by_label[obj], []))[1]
        if rid and rid not in regions:
            regions.append(rid)
    return groups


def _combined(parts: list[dict]) -> dict:
    """Pending objects taken together (regions matched by label): their counts summed, from
    the earliest first interaction to the latest, the version of the latest."""
    if len(parts) == 1:
        return parts[0]
    first = min(parts, key=lambda p: p["first"])
    last = max(parts, key=lambda p: p["last"])
    return {"clicks": sum(p["clicks"] for p in parts), "tools": sum(p["tools"] for p in parts),
            "first": first["first"], "last": last["last"], "version": last["version"],
            "first_version": first["first_version"]}


def _parse_pending(raw: dict) -> dict[str, dict]:
    """A task's pending hash as {object id: {clicks, tools, first, last, version, ...}}."""
    out: dict[str, dict] = {}
    for k, v in raw.items():
        k = k.decode() if isinstance(k, bytes) else k
        v = v.decode() if isinstance(v, bytes) else v
        oid, _, name = k.rpartition("#")
        if name in _PENDING and oid:
            out.setdefault(oid, {})[name] = v
    parsed = {}
    for oid, f in out.items():
        try:
            first = float(f["first"])
            parsed[oid] = {"clicks": int(f.get("clicks", 0)), "tools": int(f.get("tools", 0)),
                           "first": first, "last": float(f.get("last", first)),
                           "version": f.get("version", ""),
                           "first_version": f.get("first_version", f.get("version", ""))}
        except (KeyError, ValueError):
            continue  # a half-written object (its first interaction failed midway): skipped
    return parsed


# --- summaries ------------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def by_version(records: list[ObjectRecord]) -> list[dict]:
    """Per model version (in the order each first finished an object): the accepted objects
    (`objects`), their clicks and seconds per object (median, p90) and clicks (mean), tool
    actions per object (median, mean); the discarded objects (`discarded`: interacted with,
    not in the submitted annotation) and their clicks, and every click of the version over
    its accepted objects (`clicks_per_object_with_discarded`: what an accepted object cost,
    the rejected suggestions' clicks included). Per-object figures are None without an
    accepted object."""
    groups: dict[str, list[ObjectRecord]] = {}
    for r in records:
        groups.setdefault(r.model_version, []).append(r)
    rows = []
    for version, recs in groups.items():
        kept = [r for r in recs if not r.discarded]
        dropped = [r for r in recs if r.discarded]
        clicks = [float(r.clicks) for r in kept]
        tools = [float(r.tools) for r in kept]
        secs = [float(r.seconds) for r in kept]
        dropped_clicks = sum(r.clicks for r in dropped)
        rows.append({
            "model_version": version, "objects": len(kept),
            "clicks_median": quantile(clicks, 0.5), "clicks_p90": quantile(clicks, 0.9),
            "clicks_mean": sum(clicks) / len(clicks) if clicks else None,
            "tools_median": quantile(tools, 0.5),
            "tools_mean": sum(tools) / len(tools) if tools else None,
            "seconds_median": quantile(secs, 0.5), "seconds_p90": quantile(secs, 0.9),
            "discarded": len(dropped), "discarded_clicks": dropped_clicks,
            "clicks_per_object_with_discarded":
                (sum(clicks) + dropped_clicks) / len(clicks) if clicks else None,
            "first_submitted": min(r.submitted for r in recs),
            "last_submitted": max(r.submitted for r in recs),
        })
    return rows


def retrain_history(settings: Settings, project: int | None = None,
                    limit: int = 20) -> list[dict]:
    """The registry's retrain runs (runs/<run>.json, written by every retrain) for `project`
    (runs over every project's corrections included), newest first: when, the gate decision
    (promoted / rejected / failed), the candidate and the serving model, NoC@90 per set."""
    from clicksmith.registry import registry_root

    folder = registry_root(settings) / "runs"
    runs = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            rec = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict):
            continue
        if project is not None and rec.get("project") not in (None, project):
            continue
        runs.append(rec)
    runs.sort(key=lambda r: (float(r.get("started_at") or 0), str(r.get("run"))), reverse=True)
    return [gate_decision(r) for r in runs[:max(1, limit)]]


def gate_decision(rec: dict) -> dict:
    """One retrain run reduced to its gate decision."""
    sets = {}
    for name, m in (rec.get("metrics") or {}).items():
        try:
            sets[name] = {"candidate": float(m["candidate"]["noc90"]),
                          "serving": float(m["serving"]["noc90"]),
                          "not_worse": bool((rec.get("not_worse") or {}).get(name, True))}
        except (KeyError, TypeError, ValueError):
            continue
    return {"run": rec.get("run"), "project": rec.get("project"),
            "started_at": rec.get("started_at"), "finished_at": rec.get("finished_at"),
            "status": rec.get("status") or "running", "candidate": rec.get("candidate_version"),
            "serving_before": rec.get("serving_before"),
            "serving_after": rec.get("serving_after"), "noc90": sets,
            "worse_on": rec.get("worse_on") or [], "error": rec.get("error"),
            "frames": frames_summary(rec.get("project_scale"))}


def frames_summary(decision: object) -> str | None:
    """A retrain's decision on the project's frames in a few words (None: not judged)."""
    if not isinstance(decision, dict):
        return None
    scale, noc = decision.get("scale") or {}, decision.get("holdout_noc90") or {}
    if not scale:
        return "frames not judged: no object scale"
    try:
        what = (f"frames for {float(scale['side']):g} px objects ({scale['first_view']}/"
                f"{scale['zoom_min']} px)")
        if noc.get("scaled") is not None and noc.get("general") is not None:
            what += f", held-out NoC@90 {float(noc['scaled']):.2f} vs {float(noc['general']):.2f}"
    except (KeyError, TypeError, ValueError):
        return "frames: unreadable decision"
    return f"{what}: {'adopted' if decision.get('adopted') else 'not adopted'}"


def project_report(settings: Settings, project: int, conn=None) -> dict:
    """What `clicksmith status --project` and the review report show: per model version, the
    objects' clicks and seconds, the discarded objects (`by_version`); what is still pending;
    the retrain history. Telemetry parts are None without REDIS_URL (or with
    TELEMETRY=false)."""
    store = Telemetry(settings, conn=conn, timeout=5.0)
    report: dict = {"project": project, "versions": None, "objects": None, "discarded": None,
                    "pending": None, "bounds": asdict(store.bounds),
                    "retrains": retrain_history(settings, project)}
    if store.enabled:
        records = store.objects(project)
        dropped = sum(1 for r in records if r.discarded)
        report.update(versions=by_version(records), objects=len(records) - dropped,
                      discarded=dropped, pending=store.pending(project))
    return report


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _when(stamp: object) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(stamp)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "?"


def format_report(report: dict) -> list[str]:
    """The report as text lines (the CLI prints them; the review report's HTML has the same)."""
    lines = [f"project {report['project']}: annotation telemetry"]
    if report["versions"] is None:
        lines.append("  no telemetry: it needs REDIS_URL (and TELEMETRY=true)")
    elif not report["versions"]:
        lines.append("  no object finished yet (an object is counted when its annotation's "
                     "webhook arrives after clicks through this backend)")
    else:
        lines.append(f"  {'model version':<28} {'objects':>7}  {'clicks med':>10} {'p90':>5}  "
                     f"{'tools med':>9}  {'seconds med':>11} {'p90':>7}")
        for v in report["versions"]:
            lines.append(f"  {v['model_version']:<28} {v['objects']:>7}  "
                         f"{_num(v['clicks_median']):>10} {_num(v['clicks_p90']):>5}  "
                         f"{_num(v['tools_median']):>9}  {_num(v['seconds_median']):>11} "
                         f"{_num(v['seconds_p90']):>7}")
        lines.append("  discarded suggestions (clicked, not in the submitted annotation):")
        lines.append(f"  {'model version':<28} {'discarded':>9}  {'their clicks':>12}  "
                     f"{'clicks/object':>13}  {'incl. discarded':>15}")
        for v in report["versions"]:
            lines.append(f"  {v['model_version']:<28} {v.get('discarded', 0):>9}  "
                         f"{v.get('discarded_clicks', 0):>12}  "
                         f"{_num(v.get('clicks_mean')):>13}  "
                         f"{_num(v.get('clicks_per_object_with_discarded')):>15}")
    if report["pending"] is not None:
        lines.append(f"  waiting for their annotation: {report['pending']['objects']} object(s) "
                     f"on {report['pending']['tasks']} task(s)")
    lines.append("retrain history (newest first):")
    if not report["retrains"]:
        lines.append("  no retrain run in the registry")
    for r in report["retrains"]:
        line = f"  {_when(r['started_at'])}  {r['status']:<9}"
        if r["candidate"]:
            line += f" candidate {r['candidate']}"
        if r["serving_before"] or r["candidate"]:
            line += f" vs serving {r['serving_before'] or 'bundled'}"
        gates = [f"{name} NoC@90 {m['candidate']:.2f} vs {m['serving']:.2f} "
                 f"({'not worse' if m['not_worse'] else 'worse'})"
                 for name, m in r["noc90"].items()]
        if gates:
            line += ": " + ", ".join(gates)
        if r.get("frames"):
            line += f"; {r['frames']}"
        if r["error"]:
            line += f": {r['error']}"
        lines.append(line)
    return lines
