"""Pre-label throughput: tasks per minute with 1 and 2 RQ workers on 1024x1024 images.

Everything real except Label Studio: real Redis (127.0.0.1:6379, db 15, a fresh queue), real
`clicksmith worker` processes (SimpleWorker, model preloaded, TORCH_THREADS each), the real
predictor (zero-click main object), RLE encoding and bulk writes to the recording LS stand-in
from tests/review/lsfake.py (which serves the PNGs over HTTP). The clock runs from enqueueing to
the run's last task done, so model loading is excluded and HTTP + encoding are included.

    python benchmarks/prelabel_throughput.py [--tasks 24] [--workers 1,2] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(n_workers: int, n_tasks: int, batch: int, size: int, threads: int, fake,
            project: int, redis_url: str) -> dict:
    from redis import Redis
    from rq import Queue, Worker

    from clicksmith.settings import load_settings
    from review import jobs
    from review.prelabel import plan

    queue_name = f"bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "REDIS_URL": redis_url, "QUEUE_NAME": queue_name,
           "LABEL_STUDIO_URL": fake.url, "LABEL_STUDIO_API_KEY": "test-legacy-token",
           "TORCH_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    fake.add_project(project, n_tasks, size=size, first_task=project * 10000)
    conn = Redis.from_url(redis_url)
    procs = [subprocess.Popen([sys.executable, "-m", "clicksmith.cli", "worker", "--preload"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
             for _ in range(n_workers)]
    try:
        q = Queue(queue_name, connection=conn)
        deadline = time.time() + 300
        while len(Worker.all(queue=q)) < n_workers:
            if time.time() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.5)
        settings = load_settings({**os.environ, **env})
        t0 = time.time()
        run_id, job_ids, total = plan(settings, project, batch)
        while True:
            progress = jobs.run_progress(conn, run_id)
            if progress.finished:
                break
            time.sleep(0.2)
        elapsed = time.time() - t0
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
    written = len([p for p in fake.predictions if p["project"] == project])
    return {"workers": n_workers, "tasks": total, "written": written, "seconds": round(elapsed, 2),
            "tasks_per_min": round(60 * total / elapsed, 2), "failed_jobs":
            progress.job_states.get("failed", 0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=24)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--redis-db", type=int, default=15)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from redis import Redis

    from tests.review.lsfake import FakeLabelStudio, ServerThread

    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    fake = FakeLabelStudio()
    server = ServerThread(fake).start()
    results = []
    try:
        for i, n in enumerate(int(w) for w in args.workers.split(",")):
            r = measure(n, args.tasks, args.batch_size, args.size, args.threads, fake,
                        project=100 + i, redis_url=redis_url)
            print(f"{n} worker(s): {r['tasks']} tasks of {args.size}x{args.size} in "
                  f"{r['seconds']} s = {r['tasks_per_min']} tasks/min "
                  f"({r['written']} predictions written)", flush=True)
            results.append(r)
    finally:
        server.stop()
        Redis.from_url(redis_url).flushdb()
    report = {"cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "size": args.size,
              "batch_size": args.batch_size, "threads_per_worker": args.threads,
              "results": results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
