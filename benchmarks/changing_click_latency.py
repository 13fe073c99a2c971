"""Per-request time of interactive /predict for clicks that change the mask (issue 30).

benchmarks/http_latency.py's clicks on its synthetic ellipse mostly leave the mask unchanged
after the first one (progressive refinement changes nothing there), so they time a click whose
score is reused, not one that is scored. Here the first click is positive on the ellipse and
the five after it negative inside it (about 60% of them change the mask: the share is
printed), sent through the backend in-process (Flask test client: JSON, RLE, the pipeline and
the network, no HTTP server), 12 tasks of 6 clicks on a 1024x1024 image, the first task left
out (it prepares the image). Medians of the first click of a task and of the clicks after it.

Compare code versions by running a checkout's copy of this file with `--repo` pointing at it
(e.g. a `git worktree` of the old commit), alternating old and new runs so load falls alike:

    python benchmarks/changing_click_latency.py [--repo PATH] [--tasks 12] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLICKS = [(50.0, 50.0, True), (38.0, 47.0, False), (62.0, 53.0, False), (50.0, 60.0, False),
          (45.0, 40.0, False), (56.0, 44.0, False)]  # (x %, y %, positive)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose code runs")
    ap.add_argument("--tasks", type=int, default=12)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.repo))

    import numpy as np

    from backend.app import create_app
    from benchmarks.http_latency import body, make_image
    from clicksmith.labelstudio.results import rle_to_mask
    from clicksmith.settings import load_settings

    h, w = 1024, 1024
    first, further, changed = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "img.jpg"
        make_image(h, w, path)
        app = create_app(load_settings(env={}, local_image_roots=tmp))
        assert app.extensions["clicksmith"].model.wait(120)
        client = app.test_client()
        for t in range(args.tasks):
            prev = None
            for k in range(1, len(CLICKS) + 1):
                data = body(str(path), 5000 + t, CLICKS[:k], h, w)
                start = time.perf_counter()
                r = client.post("/predict", data=data, content_type="application/json")
                ms = (time.perf_counter() - start) * 1000
                assert r.status_code == 200, r.data[:300]
                item = r.json["results"][0]["result"][0]
                mask = rle_to_mask(item["value"]["rle"], h, w)
                if t > 0:
                    (first if k == 1 else further).append(ms)
                    if k > 1:
                        changed.append(not np.array_equal(mask, prev))
                prev = mask
    report = {"repo": str(args.repo), "first_ms": round(statistics.median(first), 1),
              "further_ms": round(statistics.median(further), 1), "n_first": len(first),
              "n_further": len(further), "further_changed_share": sum(changed) / len(changed)}
    print(json.dumps(report))
    if args.out:
        args.out.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
