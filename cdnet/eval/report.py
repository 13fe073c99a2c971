"""Reports: a Markdown table, a JSON file and a PNG plot of mIoU vs clicks per dataset.

Why three outputs: the Markdown table goes into the model card and PR descriptions, the JSON
keeps every object's IoUs and clicks so a number can be re-derived or compared later, and the
plot shows where along the click sequence two methods differ, which one NoC number hides.
The published anchors are printed beside our numbers as reference text only: they were measured
by their authors (different training data and hardware), not in this run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cdnet.fileio import atomic_write_bytes

# Published NoC@85 / NoC@90 (from docs: shared/notes/noc-protocol.md; COCO+LVIS training
# unless marked SBD). None = not published.
ANCHORS: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "CDNet ResNet-34 (SBD), 89.7 MB": {"grabcut": (1.86, 2.18), "berkeley": (1.95, 3.27)},
    "CDNet ResNet-34, 89.7 MB": {"grabcut": (1.40, 1.52), "berkeley": (1.47, 2.06)},
    "f-BRS-B ResNet-50 (SBD), 120 MB": {"grabcut": (2.20, 2.64), "berkeley": (2.17, 4.22)},
    "RITM HRNet-18s IT-M, 16.5 MB": {"grabcut": (1.54, 1.68), "berkeley": (None, 2.60)},
    "FocalClick SegFormer-B0-S1, 14.4 MB": {"grabcut": (1.60, 1.86), "berkeley": (2.05, 3.29)},
    "ClickSEG MobileNetV2, 7.5 MB": {"grabcut": (1.82, 2.02), "berkeley": (1.95, 2.69)},
    "SAM ViT-H zero-shot, 2.4 GB": {"grabcut": (None, 1.88), "berkeley": (None, 2.09)},
}


def _f(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _start(r: dict) -> str:
    if r.get("mode") == "prior":
        return f"prior IoU {_f(r.get('prior_miou'))}"
    return "empty"


def _progressive(r: dict) -> str:
    p = r.get("progressive")
    return "–" if p is None else ("on" if p else "off")


def markdown_table(results: Sequence[dict]) -> str:
    """One row per (dataset, method, mode) result from `evaluate`."""
    head = ("| dataset | method | progressive | start | objects | NoC@85 | NoC@90 | NoF@90 "
            "| mIoU@1 | mIoU@3 | mIoU@5 | gain@1 | gain@3 | s/click |")
    lines = [head, "|" + "---|" * 14]
    for r in results:
        lines.append(
            f"| {r['dataset']} | {r['method']} | {_progressive(r)} | {_start(r)} | {r['objects']} "
            f"| {_f(r['noc85'])} | {_f(r['noc90'])} | {r['nof90']} | {_f(r.get('miou@1'), 3)} "
            f"| {_f(r.get('miou@3'), 3)} | {_f(r.get('miou@5'), 3)} | {_f(r.get('gain@1'), 3)} "
            f"| {_f(r.get('gain@3'), 3)} | {_f(r['spc'], 3)} |"
        )
    return "\n".join(lines) + "\n"


def anchors_table(datasets: Sequence[str] = ("grabcut", "berkeley")) -> str:
    """The published NoC@85 / NoC@90 anchors, as reference text (not measured here)."""
    cols = [d for d in datasets if any(d in v for v in ANCHORS.values())]
    if not cols:
        return ""
    lines = ["| published model (reference, not measured here) | "
             + " | ".join(f"{d} NoC@85 / @90" for d in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for model, by_ds in ANCHORS.items():
        cells = [" / ".join(_f(v) for v in by_ds.get(d, (None, None))) for d in cols]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_report(results: Sequence[dict]) -> str:
    datasets = sorted({r["dataset"] for r in results})
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"# NoC evaluation ({when})\n\nStandard protocol: up to {results[0]['max_clicks']} "
            "clicks, next click at the deepest error, mask = probs > 0.5 (progressive on: the "
            "progressive merge), IoU without ignore pixels; NoC = mean first click reaching "
            "the IoU (max if never); the run of an object stops at IoU 0.90 and its later "
            "mIoU keeps that value.\n\n"
            + markdown_table(results))
    anchors = anchors_table(datasets)
    if anchors:
        text += "\nPublished anchors (their training data and hardware):\n\n" + anchors
    return text


def plot_curves(results: Sequence[dict], path: Path) -> None:
    """mIoU vs number of clicks, one panel per dataset, one line per method and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in results})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for r in (r for r in results if r["dataset"] == ds):
            ys = list(r["miou_curve"])
            xs = list(range(1, len(ys) + 1))
            if r.get("mode") == "prior":
                xs, ys = [0, *xs], [r["prior_miou"], *ys]
            prog = _progressive(r)
            label = f"{r['method']}" + (f" (progressive {prog})" if prog != "–" else "")
            label += f", {_start(r)}, NoC@90 {r['noc90']:.2f}"
            ax.plot(xs, ys, marker=".", label=label)
        ax.set_title(ds)
        ax.set_xlabel("number of clicks")
        ax.set_ylabel("mIoU")
        ax.set_ylim(0, 1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(results: Sequence[dict], out_dir: str | Path, stem: str = "noc") -> dict:
    """Write `<stem>.md`, `<stem>.json` and `<stem>.png` to `out_dir`; return their paths."""
    if not results:
        raise ValueError("no results to report")
    out = Path(out_dir)
    paths = {"markdown": out / f"{stem}.md", "json": out / f"{stem}.json",
             "plot": out / f"{stem}.png"}
    atomic_write_bytes(paths["markdown"], markdown_report(results).encode())
    payload = {"generated": datetime.now(UTC).isoformat(timespec="seconds"),
               "results": list(results),
               "anchors": {m: {d: list(v) for d, v in by.items()} for m, by in ANCHORS.items()}}
    atomic_write_bytes(paths["json"], json.dumps(payload, indent=1).encode())
    plot_curves(results, paths["plot"])
    return paths
