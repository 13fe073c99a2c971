"""Does /health answer within Label Studio's 1 s while the server is busy? Server models compared.

For each server configuration, starts it on a free local port (127.0.0.1 only), waits for the
model, then for `--window` seconds per scenario probes GET /health every 0.25 s with a 1 s
timeout (Label Studio's) while:
  heavy     two clients send back-to-back /predict requests of `--clicks` clicks each on a
            1024x1024 image (a new task each time: every click runs);
  trickle   two clients send a /predict body at one byte per second (reconnecting when the
            server gives up on them);
  trickle10 ten such clients: more than 8 threads.
A probe counts as answered when /health returns 200 within 1 s.

    python benchmarks/health_under_load.py [--configs sync2,gthread8,gthread,waitress]
        [--window 20] [--rounds 3] [--clicks 90] [--out benchmarks/results/health_under_load.json]

Configurations: `sync2` gunicorn sync workers x2 (the old default, with sessions in Redis);
`gthread` the default (`clicksmith serve`: one process, 32 threads, REQUEST_READ_TIMEOUT_SECONDS
15); `gthread8` the same with 8 threads; `gthread8-nodeadline` 8 threads without the body
deadline; `gthread-redis2` two gthread processes with sessions in Redis; `waitress` waitress
(one process, 8 threads; it buffers each request's body in its event loop before a thread sees
it), when importable (e.g. PYTHONPATH to a `pip install --target` folder).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.http_latency import (  # noqa: E402
    body,
    click_points,
    free_port,
    make_image,
    wait_ready,
)

SERVE = [sys.executable, "-m", "clicksmith.cli", "serve", "--log-level", "warning"]
WAITRESS = ("from backend.app import create_app; from waitress import serve; "
            "serve(create_app(), host='127.0.0.1', port=int(__import__('os').environ['PORT']), "
            "threads=8)")
CONFIGS = {
    "sync2": (SERVE + ["--worker-class", "sync", "--workers", "2"],
              {"REDIS_URL": "redis://127.0.0.1:6379/14"}),
    "gthread": (SERVE, {}),
    "gthread8": (SERVE + ["--threads", "8"], {}),
    "gthread8-nodeadline": (SERVE + ["--threads", "8"], {"REQUEST_READ_TIMEOUT_SECONDS": "0"}),
    "gthread-redis2": (SERVE + ["--workers", "2"], {"REDIS_URL": "redis://127.0.0.1:6379/14"}),
    "waitress": ([sys.executable, "-c", WAITRESS], {}),
}
PROBE_EVERY = 0.25
PROBE_TIMEOUT = 1.0


def start(name: str, port: int, log: Path) -> subprocess.Popen:
    cmd, extra = CONFIGS[name]
    env = dict(os.environ, TORCH_THREADS="2", LOCAL_IMAGE_ROOTS=str(log.parent),
               PORT=str(port), **extra)
    if cmd is SERVE or cmd[:len(SERVE)] == SERVE:
        cmd = cmd + ["--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    return wait_ready(proc, port, log, name)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def probe(url: str, until: float) -> list[float | None]:
    """/health latencies (None: failed or slower than 1 s), one every PROBE_EVERY seconds."""
    out: list[float | None] = []
    while time.monotonic() < until:
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(url + "/health", timeout=PROBE_TIMEOUT) as r:
                r.read()
                ok = r.status == 200
        except (OSError, urllib.error.URLError):
            ok = False
        took = time.monotonic() - t0
        out.append(took if ok and took <= PROBE_TIMEOUT else None)
        time.sleep(max(0.0, PROBE_EVERY - took))
    return out


def heavy(url: str, image: str, clicks: int, until: float, first_task: int,
          done: list[float]) -> None:
    pts = click_points(clicks)
    task = first_task
    while time.monotonic() < until:
        data = body(image, task, pts, 1024, 1024)
        task += 1
        req = urllib.request.Request(url + "/predict", data=data,
                                     headers={"Content-Type": "application/json"})
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                r.read()
            done.append(time.monotonic() - t0)
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)


def trickle(port: int, until: float, answers: list[str]) -> None:
    """Send a /predict body one byte a second, reconnecting when the server closes."""
    head = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n")
    while time.monotonic() < until:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(head)
                while time.monotonic() < until:
                    s.sendall(b" ")
                    s.settimeout(1.0)
                    try:
                        data = s.recv(200)
                    except TimeoutError:
                        continue
                    if data:
                        answers.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
                    break  # answered or closed: start again
        except OSError:
            time.sleep(0.5)


def scenario(kind: str, port: int, image: str, window: float, clicks: int,
             task_base: int) -> dict:
    url = f"http://127.0.0.1:{port}"
    until = time.monotonic() + window
    threads: list[threading.Thread] = []
    done: list[float] = []
    answers: list[str] = []
    if kind == "heavy":
        for i in range(2):
            threads.append(threading.Thread(target=heavy, args=(
                url, image, clicks, until, task_base + 1000 * i, done)))
    else:
        n = 10 if kind == "trickle10" else 2
        for _ in range(n):
            threads.append(threading.Thread(target=trickle, args=(port, until, answers)))
    for t in threads:
        t.start()
    time.sleep(0.5)  # let the load start first
    lat = probe(url, until)
    for t in threads:
        t.join(320)
    ok = [v for v in lat if v is not None]
    result = {"probes": len(lat), "answered": len(ok),
              "answered_pct": round(100 * len(ok) / max(1, len(lat)), 1),
              "p50_ms": round(1000 * statistics.median(ok), 1) if ok else None,
              "max_ms": round(1000 * max(ok), 1) if ok else None}
    if kind == "heavy":
        result |= {"predicts_done": len(done),
                   "predict_median_s": round(statistics.median(done), 2) if done else None}
    else:
        result["trickle_answers"] = sorted(set(answers))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs",
                    default="sync2,gthread8-nodeadline,gthread8,gthread,waitress")
    ap.add_argument("--scenarios", default="heavy,trickle,trickle10")
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clicks", type=int, default=90)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                         "health_under_load.json"))
    args = ap.parse_args(argv)
    configs = args.configs.split(",")
    scenarios = args.scenarios.split(",")
    runs: dict = {c: {s: [] for s in scenarios} for c in configs}
    with tempfile.TemporaryDirectory(prefix="clicksmith-health-") as tmp:
        image = Path(tmp) / "1024.jpg"
        make_image(1024, 1024, image)
        for rnd in range(args.rounds):
            for name in configs:
                port = free_port()
                proc = start(name, port, Path(tmp) / f"{name}.log")
                try:
                    for k, kind in enumerate(scenarios):
                        r = scenario(kind, port, str(image), args.window, args.clicks,
                                     100000 * (rnd + 1) + 10000 * k)
                        runs[name][kind].append(r)
                        print(f"round {rnd + 1} {name:<19} {kind:<9} {r}", flush=True)
                finally:
                    stop(proc)
    summary = {c: {s: {"answered_pct_median": statistics.median(
        r["answered_pct"] for r in runs[c][s])} for s in scenarios} for c in configs}
    report = {"window_s": args.window, "rounds": args.rounds, "clicks": args.clicks,
              "probe_every_s": PROBE_EVERY, "probe_timeout_s": PROBE_TIMEOUT,
              "cpu_count": os.cpu_count(), "load_avg_end": os.getloadavg(),
              "summary": summary, "runs": runs}
    print(f"{'config':<20}" + "".join(f"{s:>12}" for s in scenarios) + "   (% of /health "
          "probes answered 200 within 1 s, median of rounds)")
    for c in configs:
        print(f"{c:<20}" + "".join(f"{summary[c][s]['answered_pct_median']:>11}%"
                                   for s in scenarios))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
