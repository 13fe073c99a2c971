"""Real HTTP servers on 127.0.0.1 for the adapter tests: each records every request it gets
(method, path, Authorization header, body) and answers from a table of routes."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np


def png(h: int = 24, w: int = 32) -> bytes:
    """A small PNG with a bright square (its pixels are known: see `png_rgb`)."""
    return cv2.imencode(".png", png_rgb(h, w)[:, :, ::-1])[1].tobytes()


def png_rgb(h: int = 24, w: int = 32) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[4:12, 6:20] = (250, 120, 10)
    return img


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    auth: str | None
    body: bytes


class FakeHost:
    """A threaded HTTP server on 127.0.0.1:<free port>; `routes` maps a path (with its query)
    to an Answer or to a function of the request path returning one; anything else is 404."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer | Callable[[str], Answer]] = {}
        self.seen: list[Seen] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                host.seen.append(Seen(self.command, self.path,
                                      self.headers.get("Authorization"), body))
                route = host.routes.get(self.path)
                answer = route(self.path) if callable(route) else route
                if answer is None:
                    answer = Answer(404, b"not found")
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def image(self, path: str, data: bytes | None = None) -> str:
        """Serve a PNG at `path`; its full URL."""
        self.routes[path] = Answer(200, png() if data is None else data,
                                   {"Content-Type": "image/png"})
        return self.url + path

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.routes[path] = Answer(status, b"", {"Location": location})

    def json(self, path: str, obj: object, status: int = 200) -> None:
        self.routes[path] = Answer(status, json.dumps(obj).encode(),
                                   {"Content-Type": "application/json"})

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
