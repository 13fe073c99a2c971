"""How the object-scale frames' factors were chosen (cdnet.inference.scale).

A project folder (default `domain_nuclei`) in the adaptation benchmark's stream order: the
scale is measured on the first `--scale-objects` objects (the corrections a retrain would have
after 300 annotated objects), and the bundled model is evaluated with the standard clicker on
the first `--objects` of them, in the general frames and in the frames of every pair of
factors: the first click's crop (`--first`, object sides), the zoom-in's smallest side
(`--zoom`) and its context (`--expand`, times the box of the mask and the clicks). Never on the
objects the adaptation benchmark reports (its remaining sample).

    python benchmarks/object_scale.py                       # test-time flip off, as chosen
    python benchmarks/object_scale.py --first 4 --zoom 3    # one pair
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from adaptation import batches_of, project_stream  # noqa: E402

from cdnet import load_predictor  # noqa: E402
from cdnet.eval.datasets import Dataset, resolve  # noqa: E402
from cdnet.eval.metrics import noc  # noqa: E402
from cdnet.eval.noc import run_object  # noqa: E402
from cdnet.inference.scale import ZOOM_EXPAND as SCALE_EXPAND  # noqa: E402
from cdnet.inference.scale import measure_scale, view_sides  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", default="domain_nuclei")
    ap.add_argument("--scale-objects", type=int, default=300)
    ap.add_argument("--objects", type=int, default=100)
    ap.add_argument("--first", type=floats, default=floats("2,3,4,6"))
    ap.add_argument("--zoom", type=floats, default=floats("1.5,2,3,4"))
    ap.add_argument("--expand", type=floats, default=floats(str(SCALE_EXPAND)))
    ap.add_argument("--flip", action="store_true", help="test-time flip on (serving default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "object_scale"))
    args = ap.parse_args(argv)
    folder = resolve(args.project)
    ds = Dataset(folder)
    objs = [i for b in batches_of(project_stream(folder, 0), args.scale_objects, 100)
            for _task, _image, ids in b for i in ids]
    scale = measure_scale(ds[i].gt for i in objs)
    if scale is None:
        print(f"object_scale: no object pixel in {folder}", file=sys.stderr)
        return 2
    print(f"{folder.name}: scale {scale.side:g} px from {scale.objects} objects; evaluated on "
          f"the first {args.objects}", flush=True)
    general = load_predictor(flip=args.flip, threads=args.threads)
    samples = [ds[i] for i in objs[: args.objects]]
    rows = []
    grid = [(None, None, None)] + [(f, z, e) for e in args.expand for f in args.first
                                   for z in args.zoom]
    for f, z, e in grid:
        if f is None:
            p = general
        else:
            first_view, zoom_min = view_sides(scale.side, f, z)
            p = dataclasses.replace(general, first_view=first_view, zoom_min=zoom_min,
                                    zoom_expand=e)
        t0 = time.time()
        clicks = [int(noc(run_object(p, s).ious, 0.90, 20)) for s in samples]
        row = {"first_factor": f, "zoom_factor": z, "zoom_expand": p.zoom_expand,
               "first_view": p.first_view,
               "zoom_min": p.zoom_min, "noc90": sum(clicks) / len(clicks),
               "failures": sum(c == 20 for c in clicks), "seconds": round(time.time() - t0)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res = {"project": folder.name, "scale": scale.to_dict(), "objects": len(samples),
           "flip": args.flip, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    lines = [f"# Object-scale frames on {folder.name}", "",
             f"Scale {scale.side:g} px (median longer box side of the stream's first "
             f"{scale.objects} objects); bundled model, standard clicker, NoC@90 on the first "
             f"{len(samples)} of them; test-time flip {'on' if args.flip else 'off'}.", "",
             "| first view (sides) | zoom-in min (sides) | zoom-in context | px | NoC@90 | "
             "20-click failures |", "|---|---|---|---|---|---|"]
    for r in rows:
        px = "general" if r["first_factor"] is None else f"{r['first_view']}/{r['zoom_min']}"
        lines.append(f"| {r['first_factor'] or '-'} | {r['zoom_factor'] or '-'} | "
                     f"{r['zoom_expand']:g} | {px} | {r['noc90']:.2f} | {r['failures']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
