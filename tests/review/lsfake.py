"""A small stand-in for the Label Studio 1.23 API, served in a thread, recording every call.

It answers exactly the paths label_studio_sdk 2.1.2 requests (read from the SDK's raw clients):
GET api/projects/{id}/, PATCH api/projects/{id}/, GET api/tasks/ (page, page_size, project,
fields), GET api/tasks/{id}/, GET api/predictions/?task=, POST api/projects/{id}/import/predictions,
POST api/dm/views/, plus task images under /data/upload/. Requests without the right
`Authorization: Token <key>` get 401, as from LS with a legacy token.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from flask import Flask, abort, jsonify, request, send_file
from PIL import Image
from werkzeug.serving import make_server

API_KEY = "test-legacy-token"

LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image">
    <Label value="Object"/><Label value="Background"/>
  </BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true"><Label value="Object"/></KeyPointLabels>
  <RectangleLabels name="box" toName="image"><Label value="Object"/></RectangleLabels>
</View>"""


def blob_image(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with one bright ellipse: (RGB image, its true mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    ry, rx = rng.uniform(0.15, 0.3, 2) * size
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    img[mask] = np.clip(rng.integers(150, 255, 3) + rng.integers(-20, 20, (mask.sum(), 3)),
                        0, 255).astype(np.uint8)
    return img, mask


@dataclass
class FakeLabelStudio:
    """State of the fake server; tests read `calls` and `predictions`, and may set hooks."""

    projects: dict[int, dict] = field(default_factory=dict)
    tasks: dict[int, dict] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    predictions: list[dict] = field(default_factory=list)
    views: list[dict] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    # Set by a test to stall the next import after storing it (to kill a worker right then).
    stall_next_import: threading.Event | None = None
    import_stored: threading.Event = field(default_factory=threading.Event)
    release_import: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- building a project ---------------------------------------------------------------
    def add_project(self, pid: int, n_tasks: int, size: int = 96, first_task: int = 1) -> None:
        self.projects[pid] = {"id": pid, "title": f"project {pid}", "label_config": LABEL_CONFIG,
                              "model_version": ""}
        for k in range(n_tasks):
            tid = first_task + k
            img, _ = blob_image(size, seed=tid)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            name = f"{pid}/img{tid}.png"
            self.images[name] = buf.getvalue()
            self.tasks[tid] = {"id": tid, "project": pid, "data": {"image": f"/data/upload/{name}"},
                               "annotations": [], "predictions": [],
                               "created_at": "2026-01-01T00:00:00Z"}

    def predictions_of(self, task_id: int) -> list[dict]:
        return [p for p in self.predictions if p["task"] == task_id]

    # --- app -------------------------------------------------------------------------------
    def app(self) -> Flask:
        app = Flask("lsfake")

        @app.before_request
        def record_and_auth():
            self.calls.append((request.method, request.path))
            if request.headers.get("Authorization") != f"Token {API_KEY}":
                return jsonify({"detail": "Authentication credentials were not provided."}), 401
            return None

        @app.get("/api/projects/<int:pid>/")
        def get_project(pid):
            return jsonify(self.projects.get(pid) or abort(404))

        @app.patch("/api/projects/<int:pid>/")
        def update_project(pid):
            if pid not in self.projects:
                abort(404)
            self.projects[pid].update(request.get_json())
            return jsonify(self.projects[pid])

        @app.get("/api/tasks/")
        def list_tasks():
            pid = int(request.args["project"])
            page = int(request.args.get("page", 1))
            size = int(request.args.get("page_size", 100))
            everything = [self._full(t) for t in self.tasks.values() if t["project"] == pid]
            chunk = everything[(page - 1) * size: page * size]
            if page > 1 and not chunk:
                return jsonify({"detail": "Invalid page."}), 404  # DRF's answer past the end
            return jsonify({"tasks": chunk, "total": len(everything), "total_annotations": 0,
                            "total_predictions": sum(len(t["predictions"]) for t in chunk)})

        @app.get("/api/tasks/<int:tid>/")
        def get_task(tid):
            return jsonify(self._full(self.tasks.get(tid) or abort(404)))

        @app.get("/api/predictions/")
        def list_predictions():
            return jsonify(self.predictions_of(int(request.args["task"])))

        @app.post("/api/projects/<int:pid>/import/predictions")
        def import_predictions(pid):
            body = request.get_json()
            with self.lock:
                for p in body:
                    if p["task"] not in self.tasks:
                        return jsonify({"detail": f"task {p['task']} not found"}), 400
                for p in body:
                    self.predictions.append({**p, "id": len(self.predictions) + 1,
                                             "project": pid,
                                             "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")})
            stall = self.stall_next_import
            if stall is not None and stall.is_set():
                stall.clear()
                self.import_stored.set()
                self.release_import.wait(30)
            return jsonify({"created": len(body)}), 201

        @app.post("/api/dm/views/")
        def create_view():
            body = request.get_json()
            view = {"id": len(self.views) + 1, **body}
            self.views.append(view)
            return jsonify(view), 201

        @app.get("/data/upload/<path:name>")
        def upload(name):
            data = self.images.get(name) or abort(404)
            return send_file(io.BytesIO(data), mimetype="image/png")

        return app

    def _full(self, task: dict) -> dict:
        return {**task, "predictions": self.predictions_of(task["id"])}


class ServerThread:
    """Runs a FakeLabelStudio on 127.0.0.1:<free port> until `stop()`."""

    def __init__(self, fake: FakeLabelStudio) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.fake = fake
        self.server = make_server("127.0.0.1", 0, fake.app(), threaded=True)
        fake.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.fake.release_import.set()
        self.server.shutdown()
        self.thread.join(5)
