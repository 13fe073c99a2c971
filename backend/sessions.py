"""Interactive sessions: per (project, task, image, label), the clicks and the current mask.

Why server-side state: with "auto-accept suggestions" Label Studio deletes the smart regions after
each answer, so the next request holds one click only; the backend must remember the previous
clicks and mask to refine instead of starting over. With REDIS_URL the state lives in Redis so
every gunicorn worker (and machine) sees the same session; otherwise an in-process LRU with TTL.

Why a per-session lock, and why its Redis form is short-lived: two quick clicks of one
annotator must both land, so requests of one session run one after the other. A lock that
outlives its request (a Redis stall made the release fail, the process was killed) would hold
up that annotator's next clicks, so the Redis lock has a short TTL that a keeper thread keeps
renewing while the request runs, is released in `finally` with a bounded retry, and, if Redis
still does not answer, is released in the background as soon as it does (or expires by its
TTL). A request that finds the lock taken waits at most `lock_wait` seconds and then answers a
503 saying so, well before Label Studio gives up on /predict (100 s).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from backend.errors import ApiError
from cdnet.clicks import Click

log = logging.getLogger(__name__)

KEY_PREFIX = "clicksmith:session:"
LOCK_TTL_S = 10.0  # a Redis lock's life without renewal (renewed every LOCK_TTL_S / 4)
LOCK_WAIT_S = 15.0  # how long a request waits for its session's lock before a 503

Box = tuple[float, float, float, float]  # y0, x0, y1, x1 in pixels


def new_region_id() -> str:
    """A fresh id for the Label Studio region a session's answers fill (10 hex digits, as the
    result builder's own ids: no '#', which Label Studio reserves for its annotation suffix)."""
    return uuid.uuid4().hex[:10]


@dataclass
class LassoState:
    """An open edge lasso: its points (y, x), the snapped path so far (pixels), its polarity."""

    points: list[list[float]] = field(default_factory=list)
    path: list[list[int]] = field(default_factory=list)
    positive: bool = True

    def to_json(self) -> dict:
        return {"points": self.points, "path": self.path, "positive": self.positive}

    @classmethod
    def from_json(cls, raw: object) -> LassoState:
        if not isinstance(raw, dict):
            return cls()
        return cls(list(raw.get("points") or []), list(raw.get("path") or []),
                   bool(raw.get("positive", True)))


@dataclass
class SessionRecord:
    """What a session remembers between requests of one annotator on one (image, label).

    Why each part exists (Label Studio's auto-accept deletes the smart regions after every
    answer, so the next request may hold only the newest click):
    - `clicks`: the logical clicks the current mask reflects, so a request can be told apart
      as an extension (all of them plus new ones), a deletion (some missing) or a fresh start;
    - `implicit`: the centre click a bare box implied, replayed when clicks are recomputed;
    - `box`: the box the session is confined to;
    - `state`: the predictor's `SessionState` bytes (its clicks, mask and quality);
    - `base`: the packed prior the clicks refine (the task's region plus strokes and tool
      edits), so a deleted click is recomputed from it;
    - `locks`: packed masks of pixels tools and edits fixed on / off (backend.tools.Locks);
    - `seen`: digests of masks this session answered, so the task's newest region is known to
      be an edit by the annotator (adopted) or our own answer (ignored);
    - `applied_strokes`, `points_done`, `refined`, `lasso`: the brush strokes, tool points and
      refine bands already applied, so a context that still holds them (auto-accept off) does
      not apply them twice, and the open lasso;
    - `region`: the id of the region every answer of this session carries, so that Label
      Studio replaces the region in place (an auto-accepted answer is stored under its id:
      refining clicks update one region instead of adding a copy per click) and a new object
      of the same label (a new session) gets a region of its own;
    - `accumulated`: a request held clicks of this session again (Auto-Accept off: the editor
      keeps the smart keypoints), so a later context holding none of them means they were
      removed: the suggestion was accepted (✓) or rejected (✗), and the session is over;
    - `scored_by`: the scorer (model version and score size, backend.pipeline.scorer_id) whose
      `score_mask` of the state's mask is the state's quality, so an answer that returns that
      mask again reuses it instead of running the network; "" (a record from before): never
      reused.
    """

    image: str
    shape: tuple[int, int]
    state: bytes
    clicks: list[Click] = field(default_factory=list)
    implicit: list[Click] = field(default_factory=list)
    box: Box | None = None
    base: bytes = b""
    locks: tuple[bytes, bytes] = (b"", b"")
    seen: list[str] = field(default_factory=list)
    applied_strokes: list[str] = field(default_factory=list)
    points_done: list[str] = field(default_factory=list)
    refined: list[str] = field(default_factory=list)
    lasso: LassoState = field(default_factory=LassoState)
    region: str = ""  # given when the session starts (backend.pipeline.load_session)
    accumulated: bool = False
    scored_by: str = ""

    def to_fields(self) -> dict[str, bytes]:
        meta = {
            "image": self.image,
            "shape": list(self.shape),
            "clicks": [c.to_dict() for c in self.clicks],
            "implicit": [c.to_dict() for c in self.implicit],
            "box": list(self.box) if self.box is not None else None,
            "seen": self.seen,
            "applied_strokes": self.applied_strokes,
            "points_done": self.points_done,
            "refined": self.refined,
            "lasso": self.lasso.to_json(),
            "region": self.region,
            "accumulated": self.accumulated,
            "scored_by": self.scored_by,
        }
        fields = {"meta": json.dumps(meta).encode(), "state": self.state, "base": self.base}
        if any(self.locks):  # only sessions a tool or eraser touched carry locks
            fields |= {"lock_on": self.locks[0], "lock_off": self.locks[1]}
        return fields

    @classmethod
    def from_fields(cls, fields: dict[bytes | str, bytes]) -> SessionRecord:
        get = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
        meta = json.loads(get["meta"])
        box = meta.get("box")
        return cls(
            image=meta["image"],
            shape=(int(meta["shape"][0]), int(meta["shape"][1])),
            state=bytes(get.get("state", b"")),
            clicks=[Click.from_dict(c) for c in meta.get("clicks") or []],
            implicit=[Click.from_dict(c) for c in meta.get("implicit") or []],
            box=tuple(float(v) for v in box) if box else None,  # type: ignore[arg-type]
            base=bytes(get.get("base", b"")),
            locks=(bytes(get.get("lock_on", b"")), bytes(get.get("lock_off", b""))),
            seen=list(meta.get("seen") or []),
            applied_strokes=list(meta.get("applied_strokes") or []),
            points_done=list(meta.get("points_done") or []),
            refined=list(meta.get("refined") or []),
            lasso=LassoState.from_json(meta.get("lasso")),
            region=str(meta.get("region") or ""),
            accumulated=bool(meta.get("accumulated", False)),
            scored_by=str(meta.get("scored_by") or ""),
        )


def session_key(project: str, task: object, image: str, brush: str, label: str) -> str:
    """The session id; project holds Label Studio's "<id>.<created>" so a recreated project
    with a reused id never inherits old sessions."""
    parts = [str(project), str(task), image, brush, label]
    return ":".join(p.replace(":", "_") for p in parts)


class SessionStore(Protocol):
    """Where sessions live: in this process (`MemorySessionStore`) or in Redis (shared)."""

    kind: str

    def get(self, key: str) -> SessionRecord | None: ...

    def put(self, key: str, record: SessionRecord) -> None: ...

    def delete(self, key: str) -> None: ...

    def lock(self, key: str) -> AbstractContextManager[None]: ...

    def ping(self) -> str | None:
        """None when the store works, else why not (fast: for /health)."""
        ...


class MemorySessionStore:
    """In-process LRU with TTL, for a single-process server without Redis."""

    kind = "memory"

    def __init__(self, size: int, ttl: int, lock_wait: float = LOCK_WAIT_S) -> None:
        self.size = max(1, size)
        self.ttl = ttl
        self.lock_wait = lock_wait
        self._items: OrderedDict[str, tuple[float, dict[str, bytes]]] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: weakref.WeakValueDictionary[str, threading.Lock] = (
            weakref.WeakValueDictionary()
        )

    def get(self, key: str) -> SessionRecord | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            expires, fields = item
            if time.monotonic() > expires:
                del self._items[key]
                return None
            self._items.move_to_end(key)
        return SessionRecord.from_fields(fields)

    def put(self, key: str, record: SessionRecord) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl, record.to_fields())
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        with self._lock:
            key_lock = self._key_locks.get(key)
            if key_lock is None:
                key_lock = threading.Lock()
                self._key_locks[key] = key_lock
        if not key_lock.acquire(timeout=self.lock_wait):
            raise ApiError(503, _busy_message(self.lock_wait))
        try:
            yield
        finally:
            key_lock.release()

    def ping(self) -> str | None:
        return None


def _busy_message(wait: float) -> str:
    return (f"another request of this annotator's session has been running for over {wait:g} s "
            "(or the session store stalled); retry the click")


class RedisSessionStore:
    """Sessions in Redis hashes under `clicksmith:session:<key>`, expiring after `ttl` seconds.

    Three connections: one for the session data (5 s timeouts), one for the locks (0.5 s: a
    stalled Redis must not hold a request, nor its lock's release, for long) and one for
    /health's ping (0.25 s, so /health answers within Label Studio's 1 s)."""

    kind = "redis"

    def __init__(self, url: str, ttl: int, prefix: str = KEY_PREFIX, *,
                 lock_ttl: float = LOCK_TTL_S, lock_wait: float = LOCK_WAIT_S,
                 lock_timeout: float = 0.5, ping_timeout: float = 0.25) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        # no retries on these two: a timeout must end the call, not start another one
        self._lock_redis = redis.Redis.from_url(url, socket_timeout=lock_timeout,
                                                socket_connect_timeout=lock_timeout,
                                                retry=Retry(NoBackoff(), 0))
        self._ping_redis = redis.Redis.from_url(url, socket_timeout=ping_timeout,
                                                socket_connect_timeout=ping_timeout,
                                                retry=Retry(NoBackoff(), 0))
        self.url = url
        self.ttl = ttl
        self.prefix = prefix
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait
        self.keeper = LockKeeper(lock_ttl)

    def _call(self, fn, *args, **kwargs):
        import redis

        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise ApiError(503, f"session store (Redis) unavailable: {exc}") from None

    def get(self, key: str) -> SessionRecord | None:
        fields = self._call(self.redis.hgetall, self.prefix + key)
        if not fields:
            return None
        self._call(self.redis.expire, self.prefix + key, self.ttl)
        return SessionRecord.from_fields(fields)

    def put(self, key: str, record: SessionRecord) -> None:
        def write() -> None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(self.prefix + key)
            pipe.hset(self.prefix + key, mapping=record.to_fields())
            pipe.expire(self.prefix + key, self.ttl)
            pipe.execute()

        self._call(write)

    def delete(self, key: str) -> None:
        self._call(self.redis.delete, self.prefix + key)

    def lock_name(self, key: str) -> str:
        return self.prefix + key + ":lock"

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Serialise requests of one session across workers: two quick clicks must both land.

        The lock lives `lock_ttl` seconds unless renewed; the keeper renews it while the block
        runs. Waiting for it gives up after `lock_wait` seconds with a 503."""
        import redis

        lock = self._lock_redis.lock(self.lock_name(key), timeout=self.lock_ttl,
                                     blocking_timeout=self.lock_wait, thread_local=False)
        token = uuid.uuid4().hex.encode()
        try:
            acquired = lock.acquire(token=token)
        except redis.RedisError as exc:
            # Redis may still carry out our SET when it answers again: release that token then
            lock.local.token = token
            self.keeper.release_later(HeldLock(lock, time.monotonic()))
            raise ApiError(503, f"session store (Redis) unavailable: {exc}") from None
        if not acquired:
            raise ApiError(503, _busy_message(self.lock_wait))
        held = self.keeper.hold(lock)
        try:
            yield
        finally:
            self.keeper.drop(held)
            if held.lost:
                log.warning("session lock %s expired while its request ran (Redis stalled "
                            "longer than %g s)", lock.name, self.lock_ttl)
            elif not _release(lock, attempts=3, pause=0.1):
                # Redis does not answer: the keeper releases it once it does; until then the
                # lock can live no longer than the TTL of its last renewal
                self.keeper.release_later(held)

    def ping(self) -> str | None:
        """None when Redis answers PING within the ping timeout, else the reason."""
        import redis

        try:
            self._ping_redis.ping()
        except redis.RedisError as exc:
            return f"Redis at {redact_url(self.url)} unreachable: {exc}"
        return None


def redact_url(url: str) -> str:
    """A Redis URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit(parts._replace(netloc=user + host))


def _release(lock, attempts: int, pause: float) -> bool:
    """Release `lock`; True when it is gone (released, or expired meanwhile)."""
    import redis
    from redis.exceptions import LockError

    for attempt in range(attempts):
        try:
            lock.release()
            return True
        except LockError:  # expired meanwhile (or already released): nothing left to do
            return True
        except redis.RedisError:
            if attempt + 1 < attempts:
                time.sleep(pause)
    return False


@dataclass(eq=False)
class HeldLock:
    """A Redis lock the keeper renews: `renewed` when it last succeeded, `lost` when the lock
    was found expired or taken by another request."""

    lock: object
    renewed: float
    lost: bool = False


class LockKeeper:
    """One thread per store that renews the held session locks every `ttl / 4` seconds and
    retries the releases that failed, until they succeed or the lock has expired anyway.

    The thread runs only while there is something to keep, and starts again on demand."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.every = ttl / 4
        self._held: set[HeldLock] = set()
        self._pending: set[HeldLock] = set()
        self._cv = threading.Condition()
        self._running = False

    def hold(self, lock) -> HeldLock:
        held = HeldLock(lock, time.monotonic())
        with self._cv:
            self._held.add(held)
            self._start()
        return held

    def drop(self, held: HeldLock) -> None:
        with self._cv:
            self._held.discard(held)

    def release_later(self, held: HeldLock) -> None:
        with self._cv:
            self._pending.add(held)
            self._start()
            self._cv.notify()

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._pending)

    def _start(self) -> None:  # with self._cv held
        if not self._running:
            self._running = True
            threading.Thread(target=self._run, name="clicksmith-lock-keeper",
                             daemon=True).start()

    def _run(self) -> None:
        import redis
        from redis.exceptions import LockError

        while True:
            with self._cv:
                if not self._held and not self._pending:
                    self._running = False
                    return
                # pending releases are retried more often than renewals are due
                self._cv.wait(min(self.every, 0.2) if self._pending else self.every)
                held, pending = list(self._held), list(self._pending)
            now = time.monotonic()
            for h in held:
                if h.lost:
                    continue
                try:
                    h.lock.reacquire()
                    h.renewed = time.monotonic()
                except LockError:
                    h.lost = True
                except redis.RedisError:
                    pass  # Redis stalled: try again next round, the TTL still runs
            for h in pending:
                if now > h.renewed + self.ttl or _release(h.lock, attempts=1, pause=0):
                    with self._cv:
                        self._pending.discard(h)
