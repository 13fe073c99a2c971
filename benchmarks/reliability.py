"""Reliability: hostile requests, starvation, a Redis outage and a killed worker, end to end.

Everything real and local (127.0.0.1 only): `clicksmith serve` (its default server model) on a
free port, `clicksmith worker --preload` processes, a private `redis-server` on a spare port
(sessions and queue; killed in (c)), the recording Label Studio stand-in of tests/review/lsfake.py
(with 0.3 s of latency on its prediction list, so a corrections job takes long enough to be
killed mid-way), corrections under a temporary CORRECTIONS_ROOT.

  (a) fuzz        `--fuzz` generated hostile requests across every endpoint (malformed JSON,
                  wrong types, huge numbers, deep nesting, huge/invalid RLE, thousands of
                  keypoints, unknown labels, bad image URLs incl. redirects to other ports and
                  file:// paths, long headers/paths/action strings, oversized bodies, wrong
                  methods), interleaved with valid clicks; counted as 2xx/4xx/5xx/hang (no
                  answer within `--request-timeout`); the RSS of the server's processes
                  (/proc/<pid>/status) before and after; then a second pass of as many,
                  to tell a leak (RSS grows again) from the allocator's high-water mark.
  (b) starvation  /health probed every 0.25 s with Label Studio's 1 s timeout for `--window`
                  seconds while two clients send heavy /predict requests (4000x3000, 6 clicks)
                  and two send a /predict body at 2 bytes/s.
  (c) redis       a click session; redis-server SIGKILLed; a click, a webhook and /health
                  during the outage (each should be 503 with a reason, none 5xx otherwise nor a
                  hang); Redis restarted (empty) on the same port; the session's next clicks
                  and a webhook after it (stored by the workers, which must have survived).
  (d) worker      `--webhooks` ANNOTATION_CREATED webhooks posted to /webhook, two workers;
                  one SIGKILLed (with its process group) while it runs a corrections job;
                  time from the kill until the killed job is re-run and until every
                  correction is stored; rows lost and duplicated in the manifest.

Targets: 0 5xx and 0 hangs in (a); /health >= 99% within 1 s in (b); RSS growth < 100 MB in (a);
(c) outage errors are 503 with a reason and the next clicks work; (d) 0 lost, 0 duplicated,
every correction stored < 60 s after the kill. One table is printed, JSON written to `--out`.

    python benchmarks/reliability.py [--fuzz 360] [--window 20] [--webhooks 30]
        [--request-timeout 30] [--seed 0] [--out benchmarks/results/reliability.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.http_latency import CONFIG, free_port, make_image  # noqa: E402
from clicksmith.labelstudio.results import mask_to_rle  # noqa: E402

HOST = "127.0.0.1"
PROBE_EVERY, PROBE_TIMEOUT = 0.25, 1.0
TARGETS = {"5xx": 0, "hangs": 0, "health_ok_pct": 99.0, "rss_growth_mb": 100.0, "lost": 0,
           "duplicated": 0, "recovery_s": 60.0}


# --- processes ----------------------------------------------------------------------------------
class RedisServer:
    """A private redis-server on 127.0.0.1:`port`, no persistence; kill() and start() again."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log, self.proc = port, log, None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no"], stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        from redis import Redis

        deadline = time.time() + 20
        while True:
            try:
                Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except Exception:
                if time.time() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def start_group(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(proc: subprocess.Popen | None, sig=signal.SIGKILL) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out += [int(c) for c in text.split()]
    except OSError:
        pass
    return out


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def server_memory(master: int) -> dict:
    """RSS of the server's worker processes (gunicorn's children), or of the process itself."""
    pids = children(master) or [master]
    return {"pids": pids, "rss_mb": {str(p): round(rss_mb(p), 1) for p in pids},
            "total_mb": round(sum(rss_mb(p) for p in pids), 1)}


# --- HTTP ---------------------------------------------------------------------------------------
def send(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None, timeout: float = 30.0) -> dict:
    """One request on a fresh connection: status (or "hang" / "conn_error"), seconds, body."""
    headers = dict(headers or {})
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    start = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        try:
            conn.request(method, path, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (413, 400) before reading all of the body: read that
        response = conn.getresponse()
        data = response.read()
        return {"status": response.status, "s": time.perf_counter() - start, "body": data}
    except TimeoutError:
        return {"status": "hang", "s": time.perf_counter() - start, "body": b""}
    except (OSError, http.client.HTTPException) as exc:
        return {"status": "conn_error", "s": time.perf_counter() - start,
                "body": repr(exc).encode()}
    finally:
        conn.close()


def category(status) -> str:
    if isinstance(status, int):
        return f"{status // 100}xx"
    return {"hang": "hang"}.get(status, "conn_error")


def reason_of(body: bytes) -> str:
    """The reason an error answer gives (its JSON message fields, else its text)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:200]
    if isinstance(data, dict):
        for key in ("error", "message", "detail", "reason", "errors"):
            if data.get(key):
                return str(data[key])[:200]
    return ""


def kp(x: float, y: float, w: int, h: int, i: int, label: str = "Object",
       positive: bool = True) -> dict:
    return {"original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": 0.3, "keypointlabels": [label]},
            "is_positive": positive, "id": f"k{i}", "from_name": "click", "to_name": "image",
            "type": "keypointlabels", "origin": "manual"}


def predict_doc(image: str, task_id: int, context: list | None, *, config: str = CONFIG,
                project="1.1") -> dict:
    return {"tasks": [{"id": task_id, "data": {"image": image}, "annotations": [],
                       "drafts": [], "predictions": []}],
            "project": project, "label_config": config,
            "params": {"login": None, "password": None, "context": {"result": context or []}}}


def clicks(n: int, w: int, h: int, start: int = 0) -> list[dict]:
    pts = [(50.0, 50.0, True)] + [(50 + (30 if i % 2 else 15) * np.cos(2.4 * i),
                                   50 + (24 if i % 2 else 12) * np.sin(2.4 * i), i % 2 == 0)
                                  for i in range(1, n)]
    return [kp(x, y, w, h, start + i, positive=p) for i, (x, y, p) in enumerate(pts)]


# --- helper servers: a redirector for image URLs ----------------------------------------------
class Redirector:
    """Answers every GET with a redirect to `?to=<url>` (default: Redis' port), or a loop."""

    def __init__(self, default_target: str) -> None:
        target = default_target

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                from urllib.parse import parse_qs, urlparse

                to = parse_qs(urlparse(self.path).query).get("to", [target])[0]
                self.send_response(302)
                self.send_header("Location", to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- (a) fuzz -----------------------------------------------------------------------------------
def nested(depth: int, kind: str = "list") -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" +
                                                                "}" * depth)


def fuzz_cases(n: int, rng: random.Random, ctx: dict):
    """`n` hostile requests (every family at least once), generated one at a time."""
    img, w, h = ctx["image"], ctx["w"], ctx["h"]
    redis_port, closed, redir = ctx["redis_port"], ctx["closed_port"], ctx["redirector"]
    good = json.dumps(predict_doc(img, 9000, clicks(2, w, h))).encode()

    def pred(doc) -> bytes:
        return doc if isinstance(doc, bytes) else json.dumps(doc).encode()

    def with_context(ctx_items, **kw):
        return predict_doc(img, rng.randint(1, 10**6), ctx_items, **kw)

    def brush(rle, ow=w, oh=h, label="Object"):
        return {"original_width": ow, "original_height": oh, "image_rotation": 0,
                "value": {"format": "rle", "rle": rle, "brushlabels": [label]},
                "from_name": "mask", "to_name": "image", "type": "brushlabels", "id": "b1",
                "origin": "manual"}

    valid_rle = mask_to_rle(np.pad(np.ones((h // 2, w // 2), bool),
                                   ((h // 4, h - h // 2 - h // 4), (w // 4, w - w // 2 - w // 4))))

    def hook(doc) -> bytes:
        return doc if isinstance(doc, bytes) else json.dumps(doc).encode()

    families = {
        "valid_click": lambda: ("POST", "/predict", pred(with_context(clicks(rng.randint(1, 3),
                                                                               w, h))), {}),
        "json_truncated": lambda: ("POST", "/predict", good[:rng.randint(1, len(good) - 1)], {}),
        "json_garbage": lambda: ("POST", rng.choice(["/predict", "/webhook", "/setup", "/train"]),
                                 rng.choice([b"", b"null", b"[]", b'"x"', b"1e999", b"NaN",
                                             b"\xff\xfe\x00{", b"{'a': 1}", b"{\"a\":}",
                                             bytes(rng.getrandbits(8) for _ in range(200))]), {}),
        "wrong_types": lambda: ("POST", "/predict", pred(rng.choice([
            {"tasks": "x"}, {"tasks": 5}, {"tasks": [1, 2]}, {"tasks": [{"data": "x"}]},
            {"tasks": [{"id": "a", "data": {"image": 5}}], "label_config": CONFIG},
            {**with_context(clicks(1, w, h)), "params": "x"},
            {**with_context(clicks(1, w, h)), "params": {"context": []}},
            {**with_context(clicks(1, w, h)), "params": {"context": {"result": {"a": 1}}}},
            with_context([1, "x", None]), with_context([{"type": "keypointlabels", "value": "x"}]),
            with_context([{**kp(50, 50, w, h, 0), "value": {"x": "50", "y": [1],
                                                            "keypointlabels": "Object"}}]),
            {**with_context(clicks(1, w, h)), "label_config": 5},
            {**with_context(clicks(1, w, h)), "label_config": "<View><Image name="},
            {**with_context(clicks(1, w, h)), "project": {"x": 1}},
            {**with_context(clicks(1, w, h)), "tasks": []},
        ])), {}),
        "huge_numbers": lambda: ("POST", "/predict", pred(with_context([
            {**kp(50, 50, w, h, 0), "value": {**kp(50, 50, w, h, 0)["value"],
                                              "x": rng.choice([10**20, -10**20, 1e308, -1e308,
                                                               float("inf"), float("nan")]),
                                              "y": rng.choice([10**20, 50, -1])},
             "original_width": rng.choice([w, 10**20, 0, -5]),
             "original_height": rng.choice([h, 10**20, 0])}])), {}),
        "huge_task_id": lambda: ("POST", "/predict", pred(predict_doc(
            img, rng.choice([10**20, -1, 0, 2**63]), clicks(1, w, h))), {}),
        "deep_nesting": lambda: ("POST", rng.choice(["/predict", "/webhook", "/setup"]),
                                 nested(rng.choice([100, 1000, 20000, 100000]),
                                        rng.choice(["list", "dict"])).encode(), {}),
        "deep_context": lambda: ("POST", "/predict", json.dumps(with_context([])).replace(
            '"result": []', '"result": ' + nested(rng.choice([200, 5000]))).encode(), {}),
        "rle_huge": lambda: ("POST", "/predict", pred(with_context(
            [brush([rng.randint(0, 255) for _ in range(1000)] * rng.choice([2000, 1200]))]
            + clicks(1, w, h))), {}),
        "rle_invalid": lambda: ("POST", "/predict", pred(with_context([rng.choice([
            brush([-1, -5, 3]), brush([1.5, "x", None]), brush("abc"), brush([]),
            brush([10**20, 2, 3]), brush(valid_rle, ow=10**5, oh=10**5),
            brush(valid_rle[:len(valid_rle) // 2]), brush(valid_rle, ow=w + 1),
            brush([rng.randint(0, 255) for _ in range(5000)]),
        ])] + clicks(1, w, h))), {}),
        "many_keypoints": lambda: ("POST", "/predict", pred(with_context(
            [kp(rng.uniform(0, 100), rng.uniform(0, 100), w, h, i)
             for i in range(rng.choice([1000, 5000, 10000]))])), {}),
        "unknown_labels": lambda: ("POST", "/predict", pred(with_context([rng.choice([
            {**kp(50, 50, w, h, 0), "value": {"x": 50, "y": 50, "keypointlabels": ["Nope"]}},
            {**kp(50, 50, w, h, 0), "from_name": "no-such-control"},
            {**kp(50, 50, w, h, 0), "to_name": "no-such-image"},
            {**kp(50, 50, w, h, 0), "type": "polygonlabels"},
            brush(valid_rle, label="???"),
        ])])), {}),
        "bad_image_url": lambda: ("POST", "/predict", pred(predict_doc(rng.choice([
            "file:///etc/passwd", "file:///proc/self/environ", "/etc/passwd",
            img + "/../../../../etc/passwd", str(Path(img).parent / "missing.png"),
            f"http://{HOST}:{closed}/a.png", f"http://{HOST}:{redis_port}/a.png",
            f"http://{HOST}:{redir}/r",  # -> Redis' port
            f"http://{HOST}:{redir}/r?to=http://{HOST}:{redis_port}/",
            f"http://{HOST}:{redir}/r?to=http://{HOST}:{redir}/loop",  # a redirect loop
            f"http://{HOST}:{redir}/r?to=file:///etc/passwd",
            f"gopher://{HOST}:{redis_port}/_INFO", "data:image/png;base64,iVBORw0KGgo=",
            "s3://bucket/x.png", "", "x" * 100_000, "\x00\n\r", f"http://{HOST}:0/",
            f"http://[{HOST}]:{redis_port}/", "/data/upload/1/nope.png",
        ]), rng.randint(1, 10**6), clicks(1, w, h))), {}),
        "long_header": lambda: (rng.choice(["GET", "POST"]), rng.choice(["/health", "/predict"]),
                                good, {rng.choice(["X-Long", "User-Agent", "Authorization"]):
                                       "a" * rng.choice([4000, 9000, 70000])}),
        "many_headers": lambda: ("GET", "/health", None,
                                 {f"X-H{i}": "v" for i in range(rng.choice([120, 300]))}),
        "long_path": lambda: ("GET", "/" + "a" * rng.choice([5000, 9000, 20000]), None, {}),
        "long_query": lambda: ("GET", "/health?" + "q=" + "b" * rng.choice([3000, 10000]),
                               None, {}),
        "odd_method_path": lambda: (rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS",
                                                "POST"]),
                                    rng.choice(["/predict", "/webhook", "/health", "/",
                                                "/metrics", "/versions", "/train", "/setup",
                                                "/../../etc/passwd", "/%00", "/%ff%fe",
                                                "/predict/../health", "//", "/nope"]),
                                    None, {}),
        "content_type": lambda: ("POST", "/predict", good, {"Content-Type": rng.choice([
            "text/plain", "multipart/form-data; boundary=x",
            "application/json; charset=utf-16", "application/x-www-form-urlencoded"]),
            **({"Content-Encoding": "gzip"} if rng.random() < 0.5 else {})}),
        "oversized_body": lambda: ("POST", rng.choice(["/predict", "/webhook"]),
                                   b'{"a": "' + b"x" * ctx["max_body"] + b'"}', {}),
        "long_action": lambda: ("POST", "/webhook", hook({"action": rng.choice(
            ["A" * 1_000_000, "ANNOTATION_CREATED" * 1000, "\u202e" * 1000, ""]),
            "project": {"id": 1}}), {}),
        "webhook_types": lambda: ("POST", "/webhook", hook(rng.choice([
            {"action": 5}, {"action": ["ANNOTATION_CREATED"]}, {"action": None},
            {"action": "ANNOTATION_CREATED"},
            {"action": "ANNOTATION_CREATED", "annotation": "x", "project": 1},
            {"action": "ANNOTATION_CREATED", "annotation": {"id": "x"}, "project": "abc"},
            {"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "task": 1},
             "project": {"id": 10**20}},
            {"action": "ANNOTATIONS_CREATED", "annotation": [{"id": i} for i in range(5000)],
             "project": 1},
            {"action": "ANNOTATIONS_DELETED", "annotations": ["x", None, {"a": 1}], "project": 1},
            {"action": "ANNOTATION_UPDATED", "annotation": {"id": 1, "task": 1, "result": [
                brush([rng.randint(0, 255) for _ in range(100_000)])]}, "project": -1},
            {"action": "PROJECT_UPDATED", "project": {"id": 1}},
        ])), {}),
        "train": lambda: ("POST", "/train", hook(rng.choice([
            {"project": "abc"}, {"project": -3}, {"project": 10**20}, {"project": {"id": None}},
            {}, {"project": "1.2.3"}])), {}),
        "setup": lambda: ("POST", "/setup", hook(rng.choice([
            {"project": "1.1", "schema": "<View>", "label_config": "<View"},
            {"project": "1.1", "label_config": "x" * 1_000_000},
            {"project": "1.1", "schema": 5},
            {"project": 10**20, "label_config": CONFIG},
            {"project": "1.1", "label_config": CONFIG, "extra_params": nested(50)},
        ])), {}),
        "status_endpoints": lambda: ("GET", rng.choice(["/health", "/metrics", "/versions", "/"])
                                     + rng.choice(["", "?x=" + "%" * 50, "?a=1&" * 200]),
                                     None, {}),
    }
    names = list(families)
    order = names + [rng.choice(names) for _ in range(max(0, n - len(names)))]
    for name in order:
        method, path, body, headers = families[name]()
        yield {"family": name, "method": method, "path": path, "body": body,
               "headers": headers}


def run_fuzz(port: int, master: int, cases, timeout: float) -> dict:
    before = server_memory(master)
    counts = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, "hang": 0, "conn_error": 0}
    by_family: dict[str, dict[str, int]] = {}
    bad: list[dict] = []
    started = time.time()
    sent = 0
    for case in cases:
        sent += 1
        r = send(port, case["method"], case["path"], case["body"], case["headers"], timeout)
        cat = category(r["status"])
        counts[cat] += 1
        fam = by_family.setdefault(case["family"], {})
        fam[cat] = fam.get(cat, 0) + 1
        if cat in ("5xx", "hang", "conn_error") and len(bad) < 40:
            bad.append({"family": case["family"], "method": case["method"],
                        "path": case["path"][:80], "status": r["status"],
                        "seconds": round(r["s"], 2), "answer": reason_of(r["body"])[:160]})
    time.sleep(1.0)
    after = server_memory(master)
    return {"requests": sent, "seconds": round(time.time() - started, 1),
            "counts": counts, "by_family": by_family, "bad_examples": bad,
            "rss_before": before, "rss_after": after,
            "rss_growth_mb": round(after["total_mb"] - before["total_mb"], 1),
            "server_processes_replaced": sorted(set(before["pids"]) ^ set(after["pids"]))}


# --- (b) starvation -----------------------------------------------------------------------------
def run_starvation(port: int, big_image: str, window: float) -> dict:
    stop = threading.Event()
    heavy: dict = {"done": 0, "statuses": {}, "seconds": []}
    slow = {"connections": 0, "bytes": 0}
    probes: list[tuple[bool, float, object]] = []
    lock = threading.Lock()
    W, H = 4000, 3000  # noqa: N806

    def heavy_client(k: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            doc = predict_doc(big_image, 700000 + 1000 * k + i, clicks(6, W, H))
            r = send(port, "POST", "/predict", json.dumps(doc).encode(), timeout=120)
            with lock:
                heavy["done"] += 1
                heavy["seconds"].append(r["s"])
                key = str(r["status"])
                heavy["statuses"][key] = heavy["statuses"].get(key, 0) + 1

    def slow_client() -> None:
        while not stop.is_set():
            try:
                s = socket.create_connection((HOST, port), timeout=5)
            except OSError:
                time.sleep(0.5)
                continue
            with lock:
                slow["connections"] += 1
            try:
                s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                          b"\r\nContent-Length: 1000000\r\n\r\n")
                while not stop.is_set():
                    s.sendall(b"  ")
                    with lock:
                        slow["bytes"] += 2
                    stop.wait(1.0)
            except OSError:
                pass  # the server gave up on us: reconnect
            finally:
                s.close()

    def prober() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            r = send(port, "GET", "/health", timeout=PROBE_TIMEOUT)
            ok = r["status"] == 200 and r["s"] <= PROBE_TIMEOUT
            probes.append((ok, r["s"], r["status"]))
            stop.wait(max(0.0, PROBE_EVERY - (time.perf_counter() - t0)))

    threads = [threading.Thread(target=heavy_client, args=(k,), daemon=True) for k in range(2)]
    threads += [threading.Thread(target=slow_client, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(2.0)  # let the load build up
    probe = threading.Thread(target=prober, daemon=True)
    probe.start()
    time.sleep(window)
    stop.set()
    probe.join(5)
    for t in threads:
        t.join(0.1)  # heavy clients may be inside a request; they are daemons
    with lock:  # a heavy client may still be inside its last request
        secs = list(heavy["seconds"])
        heavy_out = {"done": heavy["done"], "statuses": dict(heavy["statuses"]),
                     "median_s": round(statistics.median(secs), 2) if secs else None}
    ok = sum(1 for p in probes if p[0])
    lat = sorted(p[1] for p in probes)
    failures: dict[str, int] = {}
    for p in probes:
        if not p[0]:
            failures[str(p[2])] = failures.get(str(p[2]), 0) + 1
    return {"window_s": window, "probes": len(probes), "ok": ok,
            "ok_pct": round(100.0 * ok / len(probes), 1) if probes else 0.0,
            "probe_median_ms": round(1000 * statistics.median(lat), 1) if lat else None,
            "probe_max_ms": round(1000 * lat[-1], 1) if lat else None,
            "probe_failures": failures, "heavy_predicts": heavy_out, "slow_clients": dict(slow)}


# --- Label Studio stand-in with latency ---------------------------------------------------------
def slow_fake_ls(delay: float):
    from flask import jsonify, request

    from tests.review.lsfake import FakeLabelStudio, ServerThread

    class SlowFake(FakeLabelStudio):
        def app(self):
            app = super().app()

            @app.before_request
            def latency():
                if request.path.startswith("/api/predictions/"):
                    time.sleep(delay)

            @app.get("/api/current-user/whoami")
            def whoami():  # what the backend's /health asks Label Studio
                return jsonify({"id": 1, "username": "bench"})

            return app

    fake = SlowFake()
    return fake, ServerThread(fake).start()


def webhook_doc(fake, project: int, task_id: int, ann_id: int) -> dict:
    from clicksmith.labelstudio.config import parse_config
    from clicksmith.labelstudio.results import brush_item
    from tests.review.lsfake import LABEL_CONFIG, blob_image

    cfg = parse_config(LABEL_CONFIG, interactive=False)
    _img, mask = blob_image(96, seed=task_id)
    item = brush_item(mask, brush=cfg.brush_name, image=cfg.image_name, label="Object",
                      score=1.0)
    stamp = "2026-03-01T10:00:00Z"
    task = {k: v for k, v in fake.tasks[task_id].items() if k != "predictions"}
    return {"action": "ANNOTATION_CREATED",
            "annotation": {"id": ann_id, "task": task_id, "project": project, "result": [item],
                           "was_cancelled": False, "created_at": stamp, "updated_at": stamp,
                           "parent_prediction": None},
            "task": task, "project": {"id": project, "label_config": LABEL_CONFIG}}


def manifest_state(folder: Path) -> dict:
    path = folder / "manifest.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] \
        if path.is_file() else []
    keys = [r["key"] for r in lines]
    masks = {p.name for p in (folder / "masks").glob("*.png")} if (folder / "masks").is_dir() \
        else set()
    referenced = {Path(r["mask"]).name for r in lines}
    return {"rows": len(lines), "annotations": {r["annotation"] for r in lines},
            "duplicate_rows": len(keys) - len(set(keys)),
            "orphan_masks": len(masks - referenced)}


class Workers:
    """`clicksmith worker --preload` processes with known names (name -> process)."""

    def __init__(self, env: dict, logdir: Path) -> None:
        self.env, self.logdir, self.procs = env, logdir, {}

    def start(self, n: int) -> list[str]:
        names = [f"rel-{uuid.uuid4().hex[:6]}" for _ in range(n)]
        for name in names:
            self.procs[name] = start_group(
                [sys.executable, "-m", "clicksmith.cli", "worker", "--preload", "--name", name],
                self.env, self.logdir / f"worker-{name}.log")
        return names

    def alive(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is None]

    def wait_ready(self, conn, names: list[str], timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while not all(conn.exists(f"rq:worker:{name}") for name in names):
            if time.time() > deadline or any(self.procs[n].poll() is not None for n in names):
                raise RuntimeError("workers did not start (see worker-*.log)")
            time.sleep(0.5)

    def stop(self) -> None:
        for p in self.procs.values():
            kill_group(p, signal.SIGTERM)


# --- (c) Redis outage ---------------------------------------------------------------------------
def run_redis_outage(port: int, redis: RedisServer, img: str, w: int, h: int, fake,
                     corrections: Path, workers: Workers, outage_s: float) -> dict:
    task = 880001
    first = send(port, "POST", "/predict",
                 json.dumps(predict_doc(img, task, clicks(1, w, h))).encode())
    redis.kill()
    killed_at = time.time()
    during: list[dict] = []
    fake.add_project(55, 2, first_task=55001)
    n = 1
    while time.time() - killed_at < outage_s:
        n = min(n + 1, 8)
        for what, method, path, body in (
                ("click", "POST", "/predict",
                 json.dumps(predict_doc(img, task, clicks(n, w, h))).encode()),
                ("webhook", "POST", "/webhook",
                 json.dumps(webhook_doc(fake, 55, 55001, 5500101)).encode()),
                ("health", "GET", "/health", None)):
            r = send(port, method, path, body, timeout=30)
            during.append({"what": what, "status": r["status"], "seconds": round(r["s"], 2),
                           "reason": reason_of(r["body"]) if r["status"] != 200 else ""})
        time.sleep(1.0)
    redis.start()
    restarted_at = time.time()
    after_click = None
    while time.time() - restarted_at < 30:
        r = send(port, "POST", "/predict",
                 json.dumps(predict_doc(img, task, clicks(min(n + 1, 9), w, h))).encode(),
                 timeout=30)
        if r["status"] == 200:
            after_click = round(time.time() - restarted_at, 2)
            break
        time.sleep(0.5)
    hook = send(port, "POST", "/webhook",
                json.dumps(webhook_doc(fake, 55, 55002, 5500201)).encode(), timeout=30)
    stored_after = None
    deadline = time.time() + 60
    while time.time() < deadline:
        if 5500201 in manifest_state(corrections / "55")["annotations"]:
            stored_after = round(time.time() - restarted_at, 1)
            break
        time.sleep(0.5)
    errors = [d for d in during if d["status"] != 200]
    by_what: dict[str, dict[str, int]] = {}
    for d in during:
        k = by_what.setdefault(d["what"], {})
        k[str(d["status"])] = k.get(str(d["status"]), 0) + 1
    return {"first_click": first["status"], "outage_s": outage_s, "requests": len(during),
            "by_endpoint": by_what,
            "errors_503_with_reason": sum(1 for d in errors if d["status"] == 503 and d["reason"]),
            "errors_other": [d for d in errors if not (d["status"] == 503 and d["reason"])][:10],
            "errors": len(errors), "reason_example": next((d["reason"] for d in errors), ""),
            "click_ok_after_restart_s": after_click, "webhook_after_restart": hook["status"],
            "webhook_stored_after_restart_s": stored_after,
            "workers_alive": len(workers.alive())}


# --- (d) worker killed mid-burst ----------------------------------------------------------------
def run_worker_kill(port: int, fake, corrections: Path, workers: Workers, conn,
                    queue_name: str, n: int) -> dict:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job
    from rq.registry import StartedJobRegistry

    project = 77
    fake.add_project(project, n, first_task=77001)
    folder = corrections / str(project)
    statuses: dict[str, int] = {}
    posted_at = time.time()
    for k in range(n):
        doc = webhook_doc(fake, project, 77001 + k, 7700000 + k)
        r = send(port, "POST", "/webhook", json.dumps(doc).encode(), timeout=30)
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    registry = StartedJobRegistry(queue_name, connection=conn)
    victim = job_id = None
    deadline = time.time() + 120
    while time.time() < deadline and victim is None:
        if manifest_state(folder)["rows"] >= 3:
            for jid in registry.get_job_ids(cleanup=False):
                try:
                    name = Job.fetch(jid, connection=conn).worker_name
                except NoSuchJobError:
                    continue
                if name in workers.alive():
                    victim, job_id = name, jid
                    break
        time.sleep(0.05)
    if victim is None:
        return {"error": "no worker was seen running a job", "posted": statuses}
    kill_group(workers.procs[victim])
    killed_at = time.time()
    state_at_kill = Job.fetch(job_id, connection=conn).get_status().value
    requeued = all_stored = None
    deadline = killed_at + 150
    while time.time() < deadline:
        job = Job.fetch(job_id, connection=conn)
        status = job.get_status().value
        if requeued is None and (status != "started" or job.worker_name != victim):
            requeued = round(time.time() - killed_at, 1)
        m = manifest_state(folder)
        if len(m["annotations"]) >= n and status == "finished":
            all_stored = round(time.time() - killed_at, 1)
            break
        time.sleep(0.25)
    m = manifest_state(folder)
    return {"webhooks": n, "posted": statuses, "killed_job": job_id, "killed_worker": victim,
            "killed_job_state_at_kill": state_at_kill,
            "killed_job_final_state": Job.fetch(job_id, connection=conn).get_status().value,
            "stored_before_kill_s": round(killed_at - posted_at, 1),
            "requeued_after_s": requeued, "all_stored_after_s": all_stored,
            "stored": len(m["annotations"]), "lost": n - len(m["annotations"]),
            "duplicated": m["duplicate_rows"] + m["orphan_masks"]}


# --- main ---------------------------------------------------------------------------------------
def start_server(port: int, env: dict, log: Path) -> subprocess.Popen:
    proc = start_group([sys.executable, "-m", "clicksmith.cli", "serve", "--port", str(port),
                        "--log-level", "warning"], env, log)
    deadline = time.time() + 180
    while True:
        r = send(port, "GET", "/health", timeout=2)
        try:  # the model is what we wait for (a degraded /health says 503 and why)
            if json.loads(r["body"]).get("model_state") == "ready":
                return proc
        except (ValueError, AttributeError):
            pass
        if proc.poll() is not None or time.time() > deadline:
            kill_group(proc)
            raise RuntimeError("server did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.3)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuzz", type=int, default=360, help="hostile requests (>= 300)")
    ap.add_argument("--window", type=float, default=20.0, help="starvation probe window, s")
    ap.add_argument("--webhooks", type=int, default=30, help="webhooks in the kill burst")
    ap.add_argument("--outage", type=float, default=6.0, help="Redis outage length, s")
    ap.add_argument("--request-timeout", type=float, default=30.0,
                    help="a fuzz request unanswered this long is a hang")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "reliability.json"))
    args = ap.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("reliability: redis-server is not installed", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    report: dict = {"cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg(),
                    "seed": args.seed}
    tmp = Path(tempfile.mkdtemp(prefix="clicksmith-reliability-"))
    redis = RedisServer(free_port(), tmp / "redis.log")
    fake, fake_server = slow_fake_ls(0.3)
    redirector = server = workers = None
    try:
        redis.start()
        redirector = Redirector(f"http://{HOST}:{redis.port}/")
        w, h = 640, 480
        img = tmp / "img.jpg"
        make_image(h, w, img)
        big = tmp / "big.jpg"
        make_image(3000, 4000, big)
        corrections = tmp / "corrections"
        queue_name = f"reliability-{uuid.uuid4().hex[:8]}"
        from tests.review.lsfake import API_KEY

        env = dict(os.environ, REDIS_URL=redis.url, QUEUE_NAME=queue_name,
                   LABEL_STUDIO_URL=fake.url, LABEL_STUDIO_API_KEY=API_KEY,
                   LOCAL_IMAGE_ROOTS=str(tmp), ALLOWED_IMAGE_HOSTS=f"{HOST}:{redirector.port}",
                   CORRECTIONS_ROOT=str(corrections), MODEL_REGISTRY=str(tmp / "models"),
                   TORCH_THREADS="1", PYTHONPATH=str(REPO))
        from clicksmith.settings import load_settings

        max_body = load_settings(env).max_request_bytes
        port = free_port()
        t0 = time.time()
        server = start_server(port, env, tmp / "server.log")
        report["server_start_s"] = round(time.time() - t0, 1)
        for i in range(4):  # warm up: every server process has run the model once
            send(port, "POST", "/predict",
                 json.dumps(predict_doc(str(img), 100 + i, clicks(2, w, h))).encode())
        print(f"server up on {port} in {report['server_start_s']} s; (a) fuzz...", flush=True)
        fuzz_ctx = {"image": str(img), "w": w, "h": h, "redis_port": redis.port,
                    "closed_port": free_port(), "redirector": redirector.port,
                    "max_body": max_body}
        cases = fuzz_cases(args.fuzz, rng, fuzz_ctx)
        report["fuzz"] = run_fuzz(port, server.pid, cases, args.request_timeout)
        # the same families again: RSS that keeps growing is a leak, one that levels off is
        # the allocator's high-water mark (not counted in the table's request totals)
        again = run_fuzz(port, server.pid, fuzz_cases(args.fuzz, random.Random(args.seed + 1),
                                                      fuzz_ctx), args.request_timeout)
        report["fuzz"]["second_pass"] = {k: again[k] for k in (
            "requests", "counts", "rss_after", "rss_growth_mb", "server_processes_replaced",
            "bad_examples")}
        print("(b) starvation...", flush=True)
        report["starvation"] = run_starvation(port, str(big), args.window)

        from redis import Redis

        conn = Redis.from_url(redis.url)
        conn.flushdb()  # the jobs the fuzz queued (webhooks, a retrain) are not for the workers
        workers = Workers(env, tmp)
        workers.wait_ready(conn, workers.start(2))
        print("(c) Redis outage...", flush=True)
        report["redis_outage"] = run_redis_outage(port, redis, str(img), w, h, fake,
                                                  corrections, workers, args.outage)
        print("(d) worker killed mid-burst...", flush=True)
        conn = Redis.from_url(redis.url)
        alive = workers.alive()
        workers.wait_ready(conn, alive + workers.start(max(0, 2 - len(alive))))
        report["worker_kill"] = run_worker_kill(port, fake, corrections, workers, conn,
                                                queue_name, args.webhooks)
        report["server_alive_at_end"] = server.poll() is None
    finally:
        if workers is not None:
            workers.stop()
        kill_group(server, signal.SIGTERM)
        redis.kill()
        if redirector is not None:
            redirector.close()
        fake_server.stop()
        report["logs_kept_in"] = str(tmp)
    report["load_avg_end"] = os.getloadavg()
    report["targets"] = TARGETS
    report["table"] = print_table(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp_out, out)
    print(f"written {out}")
    return 0


def print_table(r: dict) -> list[dict]:
    fz, st, ro, wk = r["fuzz"], r["starvation"], r["redis_outage"], r["worker_kill"]
    fz2 = fz["second_pass"]
    c = {k: fz["counts"][k] + fz2["counts"][k] for k in fz["counts"]}
    before = fz["rss_before"]["total_mb"]
    after1, after2 = fz["rss_after"]["total_mb"], fz2["rss_after"]["total_mb"]
    growth = max(after1, after2) - before
    replaced = fz["server_processes_replaced"] or fz2["server_processes_replaced"]
    rows = [
        ("(a) fuzz", f"{fz['requests'] + fz2['requests']} requests (2 passes)",
         f"2xx {c['2xx']}, 4xx {c['4xx']}, 5xx {c['5xx']}, hangs {c['hang']}, "
         f"conn errors {c['conn_error']}", "0 5xx, 0 hangs",
         verdict(c["5xx"] == 0 and c["hang"] == 0)),
        ("(a) fuzz", "server RSS",
         f"{before:.0f} -> {after1:.0f} -> {after2:.0f} MB (max growth {growth:+.0f} MB"
         + (", processes replaced" if replaced else "") + ")",
         "< 100 MB growth", verdict(growth < 100 and not replaced)),
        ("(b) starvation", "/health within 1 s",
         f"{st['ok']}/{st['probes']} = {st['ok_pct']}% (median {st['probe_median_ms']} ms, "
         f"max {st['probe_max_ms']} ms; {st['heavy_predicts']['done']} heavy predicts, median "
         f"{st['heavy_predicts']['median_s']} s)", ">= 99%", verdict(st["ok_pct"] >= 99.0)),
        ("(c) Redis down", "errors during outage",
         f"{ro['errors_503_with_reason']}/{ro['errors']} were 503 with a reason",
         "all 503 + reason", verdict(ro["errors"] > 0
                                     and ro["errors_503_with_reason"] == ro["errors"])),
        ("(c) Redis down", "after restart",
         f"click ok after {ro['click_ok_after_restart_s']} s, webhook "
         f"{ro['webhook_after_restart']}, stored after {ro['webhook_stored_after_restart_s']} s,"
         f" workers alive {ro['workers_alive']}", "clicks work",
         verdict(ro["click_ok_after_restart_s"] is not None)),
    ]
    if "error" in wk:
        rows.append(("(d) worker kill", "burst", wk["error"], "", "FAIL"))
    else:
        rows += [
            ("(d) worker kill", f"{wk['webhooks']} webhooks",
             f"lost {wk['lost']}, duplicated {wk['duplicated']}", "0 lost, 0 duplicated",
             verdict(wk["lost"] == 0 and wk["duplicated"] == 0)),
            ("(d) worker kill", "recovery",
             f"killed job ({wk['killed_job_state_at_kill']}) re-run after "
             f"{wk['requeued_after_s']} s, all stored after {wk['all_stored_after_s']} s",
             "< 60 s", verdict(wk["all_stored_after_s"] is not None
                               and wk["all_stored_after_s"] < 60)),
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    head = ("scenario", "what", "measured", "target", "")
    widths = [max(wd, len(hd)) for wd, hd in zip(widths, head, strict=True)]
    for row in (head, *rows):
        print("  ".join(cell.ljust(wd) for cell, wd in zip(row, widths, strict=True)).rstrip())
    return [dict(zip(("scenario", "what", "measured", "target", "verdict"), row, strict=True))
            for row in rows]


if __name__ == "__main__":
    sys.exit(main())
