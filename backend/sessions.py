"""Interactive sessions: per (project, task, image, label), the clicks and the current mask.

Why server-side state: with "auto-accept suggestions" Label Studio deletes the smart regions after
each answer, so the next request holds one click only; the backend must remember the previous
clicks and mask to refine instead of starting over. With REDIS_URL the state lives in Redis so
every gunicorn worker (and machine) sees the same session; otherwise an in-process LRU with TTL.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from backend.errors import ApiError
from cdnet.clicks import Click

KEY_PREFIX = "clicksmith:session:"

Box = tuple[float, float, float, float]  # y0, x0, y1, x1 in pixels


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
      not apply them twice, and the open lasso.
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


class MemorySessionStore:
    """In-process LRU with TTL, for a single-process server without Redis."""

    kind = "memory"

    def __init__(self, size: int, ttl: int) -> None:
        self.size = max(1, size)
        self.ttl = ttl
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
        with key_lock:
            yield


class RedisSessionStore:
    """Sessions in Redis hashes under `clicksmith:session:<key>`, expiring after `ttl` seconds."""

    kind = "redis"

    def __init__(self, url: str, ttl: int, prefix: str = KEY_PREFIX) -> None:
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.ttl = ttl
        self.prefix = prefix

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

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Serialise requests of one session across workers: two quick clicks must both land."""
        import redis

        lock = self.redis.lock(self.prefix + key + ":lock", timeout=60, blocking_timeout=30)
        acquired = self._call(lock.acquire)
        if not acquired:
            raise ApiError(503, "another request of this session is still running; retry")
        try:
            yield
        finally:
            try:
                lock.release()
            except redis.RedisError:
                pass  # expired meanwhile: nothing left to release
