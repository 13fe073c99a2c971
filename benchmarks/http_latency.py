"""Per-click latency through the real HTTP server, beside the in-process predictor time.

Starts `clicksmith serve` (gunicorn) on a free local port, sends Label Studio-shaped interactive
/predict requests for a 1024x1024 and a 4000x3000 synthetic image, and times each click's round
trip (request → JSON answer with the RLE mask). The same clicks are then timed in-process with
`Predictor.session().add_click()` so the HTTP, JSON and RLE overhead is the difference.

    python benchmarks/http_latency.py [--clicks 6] [--rounds 3] [--flip on|off]
                                      [--out benchmarks/results/...]

The first click of each image also pays download/decoding and per-image preparation; it is
reported apart ("cold") from the clicks that follow ("warm"), which is what annotators feel.
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
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cdnet.eval.cli import flip_choice  # noqa: E402
from clicksmith.labelstudio.results import mask_to_rle  # noqa: E402

CONFIG = (REPO / "config" / "labeling.xml").read_text()
SIZES = {"1024x1024": (1024, 1024), "4000x3000": (3000, 4000)}  # name -> (H, W)


def make_image(h: int, w: int, path: Path) -> None:
    """Textured background with a bright ellipse: something for the clicks to land on."""
    rng = np.random.default_rng(0)
    small = rng.integers(20, 90, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.ellipse(img, (w // 2, h // 2), (w // 4, h // 5), 15, 0, 360, (230, 210, 190), -1)
    cv2.imwrite(str(path), img)


def click_points(n: int) -> list[tuple[float, float, bool]]:
    """n clicks in percent: inside the ellipse, then alternating outside/inside corrections."""
    pts = [(50.0, 50.0, True)]
    for i in range(1, n):
        angle = 2.4 * i
        r = 30.0 if i % 2 else 15.0
        pts.append((50 + r * np.cos(angle), 50 + r * 0.8 * np.sin(angle), i % 2 == 0))
    return pts


def body(image: str, task_id: int, pts, h: int, w: int) -> bytes:
    ctx = [{"original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": 0.3, "keypointlabels": ["Object"]},
            "is_positive": p, "id": f"k{i}", "from_name": "click", "to_name": "image",
            "type": "keypointlabels", "origin": "manual"} for i, (x, y, p) in enumerate(pts)]
    return json.dumps({
        "tasks": [{"id": task_id, "data": {"image": image}, "annotations": [], "drafts": [],
                   "predictions": []}],
        "project": "1.1", "label_config": CONFIG,
        "params": {"login": None, "password": None, "context": {"result": ctx}},
    }).encode()


def post(url: str, data: bytes) -> float:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        answer = json.loads(r.read())
    elapsed = time.perf_counter() - start
    if not answer.get("results"):
        raise RuntimeError(f"unexpected answer: {str(answer)[:200]}")
    return elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log: Path, threads: int, redis_url: str,
                 flip: bool) -> subprocess.Popen:
    # the synthetic images are written beside the log: the only folder the server may read
    env = dict(os.environ, TORCH_THREADS=str(threads), REDIS_URL=redis_url,
               FLIP_AVERAGE=str(flip).lower(), LOCAL_IMAGE_ROOTS=str(log.parent))
    proc = subprocess.Popen(
        [sys.executable, "-m", "clicksmith.cli", "serve", "--port", str(port), "--workers", "1",
         "--log-level", "warning"],
        cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return wait_ready(proc, port, log, "server")


def wait_ready(proc: subprocess.Popen, port: int, log: Path, name: str,
               timeout: float = 120) -> subprocess.Popen:
    """`proc` once its /health says the model is ready; RuntimeError with its log otherwise."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if json.loads(r.read())["model_state"] == "ready":
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{name} did not start:\n" + log.read_text())
        time.sleep(0.3)


def stats(values: list[float]) -> dict:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1), "p95_ms": round(p95, 1)}


def in_process(path: Path, pts, rounds: int, threads: int, flip: bool) -> dict:
    from cdnet import Click, load_predictor

    p = load_predictor(threads=threads, flip=flip)
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    prepared = p.prepare(rgb)
    warm, rle = [], []
    for _ in range(rounds):
        s = p.session(prepared)
        for i, (x, y, pos) in enumerate(pts):
            start = time.perf_counter()
            result = s.add_click(Click(y * h / 100, x * w / 100, pos))
            if i:
                warm.append(time.perf_counter() - start)
            start = time.perf_counter()
            mask_to_rle(result.mask)
            rle.append(time.perf_counter() - start)
    return {"warm_click": stats(warm), "rle_encode": stats(rle)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=6, help="clicks per interaction")
    ap.add_argument("--rounds", type=int, default=3, help="interactions (tasks) per image size")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (server and in-process)")
    ap.add_argument("--redis-url", default="",
                    help="keep sessions in this Redis (default: in the single worker's memory)")
    ap.add_argument("--flip", choices=["on", "off"], default=None,
                    help="test-time flip averaging (default: FLIP_AVERAGE, else the config)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "http_latency.json"))
    args = ap.parse_args(argv)
    flip = flip_choice(args.flip)
    if args.clicks < 2 or args.rounds < 1:
        print("http_latency: need --clicks >= 2 and --rounds >= 1", file=sys.stderr)
        return 2
    pts = click_points(args.clicks)
    report: dict = {"sessions": "redis" if args.redis_url else "memory",
                    "clicks": args.clicks, "rounds": args.rounds, "threads": args.threads,
                    "flip": flip,
                    "cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="clicksmith-bench-") as tmp:
        port = free_port()
        proc = start_server(port, Path(tmp) / "server.log", args.threads, args.redis_url,
                            flip)
        url = f"http://127.0.0.1:{port}/predict"
        try:
            for name, (h, w) in SIZES.items():
                path = Path(tmp) / f"{name}.jpg"
                make_image(h, w, path)
                cold, warm = [], []
                for rnd in range(args.rounds):
                    for n in range(1, len(pts) + 1):
                        t = post(url, body(str(path), 100 * rnd + 1, pts[:n], h, w))
                        (cold if (rnd == 0 and n == 1) else warm).append(t)
                report["sizes"][name] = {"http_cold_first_click": stats(cold),
                                         "http_warm_click": stats(warm)}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        for name in SIZES:
            path = Path(tmp) / f"{name}.jpg"
            report["sizes"][name]["in_process"] = in_process(path, pts, args.rounds,
                                                             args.threads, flip)
    print(f"{'image':<11} {'HTTP click median/p95 ms':>26} {'in-process click':>18} "
          f"{'RLE encode':>12} {'cold first click':>17}")
    for name, r in report["sizes"].items():
        hw, ip, rle = r["http_warm_click"], r["in_process"]["warm_click"], \
            r["in_process"]["rle_encode"]
        print(f"{name:<11} {hw['median_ms']:>12.1f} / {hw['p95_ms']:<11.1f} "
              f"{ip['median_ms']:>8.1f} / {ip['p95_ms']:<7.1f} {rle['median_ms']:>10.1f}   "
              f"{r['http_cold_first_click']['median_ms']:>10.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(report, indent=1))
    os.replace(tmp_out, out)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
