"""Per-click latency through the real HTTP server, beside the in-process predictor time.

Starts `clicksmith serve` (gunicorn) on a free local port, sends Label Studio-shaped interactive
/predict requests for a 1024x1024 and a 4000x3000 synthetic image, and times each click's round
trip (request → JSON answer with the RLE mask). The same clicks are then timed in-process with
`Predictor.session().add_click()` so the HTTP, JSON and RLE overhead is the difference.

    python benchmarks/http_latency.py [--clicks 6] [--rounds 3] [--flip on|off]
                                      [--out benchmarks/results/...]
    python benchmarks/http_latency.py --regions 1,20,100 [--rounds 9] [--clicks 6]

The first click of each image also pays download/decoding and per-image preparation; it is
reported apart ("cold") from the clicks that follow ("warm"), which is what annotators feel.

`--regions` (issue 31, "long sessions stay fast"): the same clicks on a 1024x1024 image whose
task already holds N brush regions spread over a draft, annotations and predictions, shaped as
Label Studio 1.23 sends them (about 1 MB at 100 masks). Each round runs one fresh interaction
(a new task id, so a new session; the image is prepared once, before timing) per N, the N
rotated between rounds so machine load falls on all of them alike; medians over rounds of the
first click of a task and of the clicks after it, with each N's ratio to the first N's, as
round trips and as the server's CPU time per request (all its threads, from /proc: the work a
request costs, which machine load moves less), and what the task alone costs (the same body
with an empty context, answered without a click). Written to results/http_latency_regions.json
unless --out says otherwise.
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


# --- tasks holding many brush regions (--regions) ------------------------------------------
STAMP = "2026-12-0{day}T{hour:02d}:{minute:02d}:{second:02d}.{micro:06d}Z"


def stamp(minutes: int) -> str:
    """An ISO time `minutes` after 2026-12-01 00:00 UTC, as Label Studio writes them."""
    day, rest = divmod(minutes, 24 * 60)
    return STAMP.format(day=1 + day, hour=rest // 60, minute=rest % 60, second=13,
                        micro=265405 + minutes)


def blob_masks(n: int, h: int, w: int, seed: int = 7) -> list[np.ndarray]:
    """`n` painted-looking objects: each a union of a few overlapping discs and a polygon,
    their RLE 5-15 KB as JSON (the size annotators' brush regions have at 1024x1024)."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(n):
        m = np.zeros((h, w), np.uint8)
        cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
        r = rng.uniform(0.03, 0.12) * min(h, w)
        for _ in range(int(rng.integers(3, 7))):
            oy, ox = rng.normal(0, r * 0.6, 2)
            cv2.circle(m, (int(cx + ox), int(cy + oy)), int(r * rng.uniform(0.4, 0.9)), 1, -1)
        pts = np.stack([cx + rng.normal(0, r, 9), cy + rng.normal(0, r, 9)], 1)
        cv2.fillPoly(m, [cv2.convexHull(pts.astype(np.int32))], 1)
        masks.append(m.astype(bool))
    return masks


def brush_item(mask: np.ndarray, label: str, rid: str, origin: str) -> dict:
    h, w = mask.shape
    return {"id": rid, "type": "brushlabels", "value": {
        "format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]},
        "origin": origin, "to_name": "image", "from_name": "mask", "image_rotation": 0,
        "original_width": w, "original_height": h}


def region_containers(n: int, h: int, w: int) -> dict:
    """The drafts, annotations and predictions of a task holding `n` brush regions, as Label
    Studio 1.23 expands them into an interactive /predict: predictions (two pre-label runs,
    oldest) hold a fifth of the regions, two annotators' annotations two fifths, and the
    current annotator's draft (newest) the rest, its last region the newest. The newest region
    is the same mask for every `n` (it is the prior of a new session), so only the amount of
    stored work differs between cases. Labels: three quarters "Object" (many objects of one
    label, the case the backend has to search), the rest "Background"."""
    masks = blob_masks(n, h, w)
    items = [brush_item(m, "Object" if i % 4 else "Background", f"r{n}-{i}", "manual")
             for i, m in enumerate(masks[1:], 1)]
    items.append(brush_item(masks[0], "Object", f"r{n}-0", "manual"))  # the newest, drawn last
    n_pred, n_ann = n // 5, 2 * n // 5
    pred, ann, draft = items[:n_pred], items[n_pred:n_pred + n_ann], items[n_pred + n_ann:]
    predictions = []
    for k, part in enumerate((pred[:len(pred) // 2], pred[len(pred) // 2:])):
        if part:
            predictions.append({
                "id": 10 + k, "result": [dict(i, origin="prediction") for i in part],
                "model_version": f"cdnet-mnv2-{k}", "score": 0.81, "cluster": None,
                "neighbors": None, "mislabeling": 0.0, "created_at": stamp(k),
                "updated_at": stamp(k), "model": None, "model_run": None, "task": 1,
                "project": 1})
    annotations = []
    for k, part in enumerate((ann[:len(ann) // 2], ann[len(ann) // 2:])):
        if part:
            annotations.append({
                "id": 20 + k, "result": part, "was_cancelled": False, "ground_truth": False,
                "created_at": stamp(60 + k), "updated_at": stamp(90 + k),
                "draft_created_at": None, "lead_time": 312.4, "prediction": {},
                "result_count": len(part), "unique_id": f"5de70703-3724-46df-893d-31f74be3870{k}",
                "import_id": None, "last_action": None, "bulk_created": False, "task": 1,
                "project": 1, "completed_by": 1 + k, "updated_by": 1 + k,
                "parent_prediction": 10 if predictions else None, "parent_annotation": None,
                "last_created_by": None})
    drafts = [{"id": 30, "user": "annotator@example.com", "created_username": "annotator",
               "created_ago": "3 minutes", "result": draft, "lead_time": 95.1,
               "was_postponed": False, "import_id": None, "created_at": stamp(120),
               "updated_at": stamp(123), "task": 1, "annotation": None}]
    return {"drafts": drafts, "annotations": annotations, "predictions": predictions}


def region_body(image: str, task_id: int, pts, h: int, w: int, held: dict) -> bytes:
    """An interactive /predict whose task holds the regions in `held` (region_containers)."""
    data = json.loads(body(image, task_id, pts, h, w))
    data["tasks"][0].update(held, total_annotations=len(held["annotations"]),
                            total_predictions=len(held["predictions"]),
                            created_at=stamp(0), updated_at=stamp(123), project=1)
    return json.dumps(data).encode()


def server_cpu_s(session: int) -> float:
    """CPU seconds used so far by every thread of every process in the server's session (the
    gunicorn master and its worker): the sum of /proc/<pid>/task/<tid>/schedstat's run time.
    Unlike a round trip's wall time it hardly moves with what else the machine runs (only
    through cache and memory contention), so it tells work added from machine load."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[3]) != session:  # field 6: the session id
                continue
            for task in (proc / "task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a process or thread that ended meanwhile
    return total / 1e9


def regions_main(args: argparse.Namespace, flip: bool) -> int:
    counts = [int(c) for c in args.regions.split(",")]
    h, w = SIZES["1024x1024"]
    pts = click_points(args.clicks)
    report: dict = {"mode": "regions", "sessions": "redis" if args.redis_url else "memory",
                    "image": "1024x1024", "clicks": args.clicks, "rounds": args.rounds,
                    "threads": args.threads, "flip": flip, "cpu_count": os.cpu_count(),
                    "load_avg_before": os.getloadavg(), "cases": {}}
    held = {n: region_containers(n, h, w) for n in counts}
    with tempfile.TemporaryDirectory(prefix="clicksmith-bench-") as tmp:
        path = Path(tmp) / "1024x1024.jpg"
        make_image(h, w, path)
        bodies = {n: [region_body(str(path), 0, pts[:k], h, w, held[n])
                      for k in range(1, len(pts) + 1)] for n in counts}
        port = free_port()
        proc = start_server(port, Path(tmp) / "server.log", args.threads, args.redis_url,
                            flip)
        url = f"http://127.0.0.1:{port}/predict"
        first: dict[int, list[float]] = {n: [] for n in counts}
        further: dict[int, list[float]] = {n: [] for n in counts}
        cpu_first: dict[int, list[float]] = {n: [] for n in counts}
        cpu_further: dict[int, list[float]] = {n: [] for n in counts}
        task_ids = iter(range(1000, 10 ** 6))

        def interaction(n: int) -> list[tuple[float, float]]:
            """(round trip, server CPU) of each click of one interaction on a new task."""
            tid = str(next(task_ids)).encode()
            out = []
            for b in bodies[n]:
                # the same bytes each time but the task id: swap it in (the body is built once)
                data = b.replace(b'"id": 0,', b'"id": ' + tid + b",", 1)
                cpu = server_cpu_s(proc.pid)
                wall = post(url, data)
                out.append((wall, server_cpu_s(proc.pid) - cpu))
            return out

        # the same task with an empty context: answered at once ({"results": []}), so its
        # round trip is what the task's size alone costs (sending, reading, parsing)
        empty = {}
        for n in counts:
            data = json.loads(bodies[n][0])
            data["params"]["context"] = {"result": []}
            empty[n] = json.dumps(data).encode()
        overhead: dict[int, list[float]] = {n: [] for n in counts}
        cpu_overhead: dict[int, list[float]] = {n: [] for n in counts}
        try:
            for n in counts:  # untimed: prepares the image, warms every code path
                interaction(n)
            for rnd in range(args.rounds):
                order = counts[rnd % len(counts):] + counts[:rnd % len(counts)]
                for n in order:
                    times = interaction(n)
                    first[n].append(times[0][0])
                    further[n] += [t for t, _ in times[1:]]
                    cpu_first[n].append(times[0][1])
                    cpu_further[n] += [c for _, c in times[1:]]
                    for _ in range(3):
                        cpu = server_cpu_s(proc.pid)
                        overhead[n].append(post_raw(url, empty[n]))
                        cpu_overhead[n].append(server_cpu_s(proc.pid) - cpu)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    report["load_avg_after"] = os.getloadavg()
    base = counts[0]
    for n in counts:
        report["cases"][str(n)] = {
            "regions": n, "body_bytes": len(bodies[n][-1]),
            "first_click": stats(first[n]), "further_click": stats(further[n]),
            "server_cpu_first_click": stats(cpu_first[n]),
            "server_cpu_further_click": stats(cpu_further[n]),
            "task_only": stats(overhead[n]), "server_cpu_task_only": stats(cpu_overhead[n]),
            "first_click_by_round_ms": [round(t * 1000, 1) for t in first[n]]}
    for n in counts:
        c = report["cases"][str(n)]
        for key in ("first_click", "further_click", "server_cpu_first_click",
                    "server_cpu_further_click"):
            c[key]["ratio_to_" + str(base)] = round(
                c[key]["median_ms"] / report["cases"][str(base)][key]["median_ms"], 3)
    ratio = "ratio_to_" + str(base)
    print(f"{'regions':>7} {'body KB':>8} {'first click med/p95 ms':>23} {'ratio':>6} "
          f"{'further click med/p95 ms':>25} {'ratio':>6} {'server CPU first/further ms':>28} "
          f"{'ratios':>11}")
    for n in counts:
        c = report["cases"][str(n)]
        fc, fu = c["first_click"], c["further_click"]
        cf, cu = c["server_cpu_first_click"], c["server_cpu_further_click"]
        print(f"{n:>7} {c['body_bytes'] / 1024:>8.0f} {fc['median_ms']:>11.1f} / "
              f"{fc['p95_ms']:<9.1f} {fc[ratio]:>6.2f} "
              f"{fu['median_ms']:>12.1f} / {fu['p95_ms']:<10.1f} {fu[ratio]:>6.2f} "
              f"{cf['median_ms']:>15.1f} / {cu['median_ms']:<10.1f} "
              f"{cf[ratio]:>5.2f} {cu[ratio]:>5.2f}")
    print("the task alone (same body, empty context: no click), median round trip / server "
          "CPU ms: " + ", ".join(
              f"{n}: {report['cases'][str(n)]['task_only']['median_ms']:.1f} / "
              f"{report['cases'][str(n)]['server_cpu_task_only']['median_ms']:.1f}"
              for n in counts))
    print(f"load average before {report['load_avg_before']}, after {report['load_avg_after']}")
    write_report(report, Path(args.out or REPO / "benchmarks" / "results"
                              / "http_latency_regions.json"))
    return 0


def write_report(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(report, indent=1))
    os.replace(tmp_out, out)
    print(f"written {out}")


def post_raw(url: str, data: bytes) -> float:
    """A POST's round trip, whatever the (2xx) answer."""
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        r.read()
    return time.perf_counter() - start


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
    ap.add_argument("--regions", default="",
                    help="comma-separated region counts (e.g. 1,20,100): time clicks on tasks "
                         "holding that many brush regions instead (see the module's doc)")
    ap.add_argument("--out", default=None,
                    help="JSON results (default: results/http_latency.json, with --regions "
                         "results/http_latency_regions.json)")
    args = ap.parse_args(argv)
    flip = flip_choice(args.flip)
    if args.clicks < 2 or args.rounds < 1:
        print("http_latency: need --clicks >= 2 and --rounds >= 1", file=sys.stderr)
        return 2
    if args.regions:
        return regions_main(args, flip)
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
    write_report(report, Path(args.out or REPO / "benchmarks" / "results" / "http_latency.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
