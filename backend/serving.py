"""How `clicksmith serve` runs the app: the gunicorn worker model and the request-body deadline.

Why gthread (threads in one process) rather than gunicorn's sync workers: a sync worker answers
one connection at a time, so two long /predict requests, or two clients sending their body
slowly, take every worker and /health misses Label Studio's 1 s timeout (measured, see
docs/backend.md "Serving"). In a gthread worker a thread pool answers; /health needs no model
and no body, and is answered by a free thread while others run clicks.
Why a deadline on reading the body (REQUEST_READ_TIMEOUT_SECONDS): a thread reads the body
itself, with blocking reads, so a client trickling its body holds that thread for as long as it
likes. `BodyDeadline` reads the whole body before the app sees it and, when the deadline passes,
shuts the connection's reading side: the blocked read returns, the client gets a 408 and the
thread is free again. (gunicorn waits for a new connection's first bytes without a thread; the
header lines are not covered by the deadline.)
"""

from __future__ import annotations

import heapq
import io
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


class _Watch:
    __slots__ = ("sock", "fired", "done")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fired = False
        self.done = False


class Deadlines:
    """One thread that shuts the reading side of sockets whose deadline passed (a blocked
    recv() then returns end-of-file); it runs only while something is watched."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Watch]] = []
        self._count = itertools.count()
        self._cv = threading.Condition()
        self._running = False

    def watch(self, sock: socket.socket, seconds: float) -> _Watch:
        watch = _Watch(sock)
        with self._cv:
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._count), watch))
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="clicksmith-read-deadline",
                                 daemon=True).start()
            self._cv.notify()
        return watch

    def cancel(self, watch: _Watch) -> bool:
        """Stop watching; True when the deadline had already fired."""
        with self._cv:
            watch.done = True
            return watch.fired

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._running = False
                    return
                due, _, watch = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)
                    continue
                heapq.heappop(self._heap)
                watch.fired = True
            try:
                watch.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass  # closed meanwhile


class BodyDeadline:
    """WSGI middleware: the request body is read in full, within `seconds`, before `app` runs;
    a body that is late gets a JSON 408 and the connection is closed. Bodies over `limit`
    bytes (by Content-Length) are passed on unread: the app refuses them with 413.

    The deadline needs the connection's socket (gunicorn's `gunicorn.socket`); without it (the
    development server) the body is passed on as it is."""

    def __init__(self, app: Callable, seconds: float, limit: int,
                 deadlines: Deadlines | None = None) -> None:
        self.app = app
        self.seconds = seconds
        self.limit = limit
        self.deadlines = deadlines or Deadlines()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if (self.seconds <= 0 or sock is None or length > self.limit
                or (length <= 0 and not chunked)):
            return self.app(environ, start_response)
        watch = self.deadlines.watch(sock, self.seconds)
        stream = environ["wsgi.input"]
        parts: list[bytes] = []
        got = 0
        error: BaseException | None = None
        try:
            while got < length or chunked:
                chunk = stream.read(min(CHUNK, length - got) if not chunked else CHUNK)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
                if chunked and got > self.limit:
                    break  # the app's 413 from what was read
        except Exception as exc:  # gunicorn's NoMoreData, OSError: the read side was shut
            error = exc
        fired = self.deadlines.cancel(watch)
        if fired and (error is not None or (not chunked and got < length)):
            log.warning("request body from %s not received within %g s (%d of %s bytes)",
                        environ.get("REMOTE_ADDR"), self.seconds, got,
                        length if not chunked else "chunked")
            return self._late(start_response, got, length if not chunked else None)
        if error is not None:
            raise error
        body = b"".join(parts)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)

    def _late(self, start_response: Callable, got: int, length: int | None) -> list[bytes]:
        of = f" of {length}" if length is not None else ""
        message = (f"the request body did not arrive within {self.seconds:g} s "
                   f"(REQUEST_READ_TIMEOUT_SECONDS; {got}{of} bytes received)")
        body = json.dumps({"error": message, "status": 408}).encode()
        start_response(f"408 request body not received within {self.seconds:g} s", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
        ])
        return [body]
