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
from contextlib import contextmanager
from dataclasses import dataclass, field

from backend.errors import ApiError

KEY_PREFIX = "clicksmith:session:"


@dataclass
class SessionRecord:
    """What a session remembers between requests.

    `clicks` are the logical clicks the current mask reflects (dicts with y, x, positive in
    pixels); `base` is the packed prior the clicks were applied to (seed region plus strokes), so
    a deleted click can be recomputed from it; `state` is the predictor's SessionState bytes.
    """

    image: str
    shape: tuple[int, int]
    clicks: list[dict]
    box: list[float] | None
    strokes: str
    state: bytes
    base: bytes = b""
    extra: dict = field(default_factory=dict)
    locks: tuple[bytes, bytes] = (b"", b"")  # packed masks tools fixed on / off (backend.tools)

    def to_fields(self) -> dict[str, bytes]:
        meta = {
            "image": self.image,
            "shape": list(self.shape),
            "clicks": self.clicks,
            "box": self.box,
            "strokes": self.strokes,
            "extra": self.extra,
        }
        fields = {"meta": json.dumps(meta).encode(), "state": self.state, "base": self.base}
        if any(self.locks):  # only sessions a tool or eraser touched carry locks
            fields |= {"lock_on": self.locks[0], "lock_off": self.locks[1]}
        return fields

    @classmethod
    def from_fields(cls, fields: dict[bytes | str, bytes]) -> SessionRecord:
        get = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
        meta = json.loads(get["meta"])
        return cls(
            image=meta["image"],
            shape=(int(meta["shape"][0]), int(meta["shape"][1])),
            clicks=list(meta["clicks"]),
            box=meta["box"],
            strokes=meta["strokes"],
            state=bytes(get.get("state", b"")),
            base=bytes(get.get("base", b"")),
            extra=dict(meta.get("extra") or {}),
            locks=(bytes(get.get("lock_on", b"")), bytes(get.get("lock_off", b""))),
        )


def session_key(project: str, task: object, image: str, brush: str, label: str) -> str:
    """The session id; project holds Label Studio's "<id>.<created>" so a recreated project
    with a reused id never inherits old sessions."""
    parts = [str(project), str(task), image, brush, label]
    return ":".join(p.replace(":", "_") for p in parts)


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
