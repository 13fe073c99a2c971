"""Ranking a project's masks by predicted quality, worst first, for human review.

Every task's current mask (the newest annotation or prediction holding a region of the
project's first brush control: clicksmith.labelstudio.regions has the rule) is scored with
`mask_score` (clicksmith.prelabel: the one score of a mask, which pre-labels carry too). Tasks
with no mask at all rank first: they certainly need a person. Outputs: review.html (self-contained,
base64 thumbnails), review.csv, review.json, and a saved Label Studio data-manager tab ordered
by prediction score, ascending.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import cv2
import numpy as np

from cdnet.fileio import atomic_write_bytes
from clicksmith.labelstudio.client import LabelStudioError, as_dict, client_for, list_tasks
from clicksmith.labelstudio.config import project_config
from clicksmith.labelstudio.images import load_task_image
from clicksmith.labelstudio.regions import newest_mask
from clicksmith.models import process_model
from clicksmith.prelabel import mask_score
from clicksmith.settings import Settings

THUMB = 192
FIELDS = ("rank", "task", "score", "source", "label", "width", "height", "link", "error")


def task_link(settings: Settings, project_id: int, task_id: int) -> str:
    """The URL that opens the task in Label Studio's editor."""
    base = settings.label_studio_url.rstrip("/")
    return f"{base}/projects/{project_id}/data?task={task_id}"


def thumbnail(image: np.ndarray, mask: np.ndarray | None, size: int = THUMB) -> str:
    """A JPEG data URI of the image with the mask tinted red and outlined."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    dims = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, dims, interpolation=cv2.INTER_AREA).astype(np.float32)
    if mask is not None:
        m = cv2.resize(mask.astype(np.uint8), dims, interpolation=cv2.INTER_NEAREST) > 0
        small[m] = small[m] * 0.55 + np.array([255, 40, 40], np.float32) * 0.45
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        small = np.ascontiguousarray(small.astype(np.uint8))
        cv2.drawContours(small, contours, -1, (255, 255, 0), 1)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small.astype(np.uint8), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise ValueError("could not encode a thumbnail")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def score_tasks(settings: Settings, project_id: int, client=None, predictor=None) -> list[dict]:
    """One row per task: score (None when it has no mask or its image failed), ranked."""
    client = client or client_for(settings)
    predictor = predictor or process_model(settings)
    cfg = project_config(client, project_id)
    rows = []
    for task in list_tasks(client, project_id):
        tid = int(task["id"])
        row = {"task": tid, "score": None, "source": "", "label": "", "width": None,
               "height": None, "link": task_link(settings, project_id, tid), "error": "",
               "thumb": ""}
        try:
            image = load_task_image(settings, task, cfg)
            row["height"], row["width"] = image.shape[:2]
            current = newest_mask(task, control=cfg.brush_name, image=cfg.image_name)
            if current is None:
                row["error"] = "no mask"
                row["thumb"] = thumbnail(image, None)
            elif current.mask.shape != image.shape[:2]:
                row["error"] = f"mask {current.mask.shape} does not match the image"
            else:
                row["score"] = round(mask_score(predictor, image, current.mask), 6)
                row["source"], row["label"] = current.origin, current.label
                row["thumb"] = thumbnail(image, current.mask)
        except (ValueError, LabelStudioError) as exc:
            if getattr(exc, "transient", False):
                raise  # Label Studio or the image host is down: no report of broken rows
            row["error"] = str(exc)
        rows.append(row)
    # worst first; tasks without a score (no mask, broken image) before everything else
    rows.sort(key=lambda r: (r["score"] is not None, r["score"] or 0.0, r["task"]))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


def write_reports(rows: list[dict], out_dir: Path, project_id: int, model_version: str,
                  telemetry: dict | None = None) -> dict:
    """review.html, review.csv and review.json in `out_dir` (each written atomically).
    `telemetry`: clicksmith.telemetry.project_report (clicks and seconds per object per model
    version, the retrain history), shown above the cards and kept in review.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plain = [{k: r.get(k) for k in FIELDS} for r in rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(plain)
    paths = {"csv": out_dir / "review.csv", "json": out_dir / "review.json",
             "html": out_dir / "review.html"}
    atomic_write_bytes(paths["csv"], buf.getvalue().encode())
    atomic_write_bytes(paths["json"], json.dumps(
        {"project": project_id, "model_version": model_version, "tasks": plain,
         **({"telemetry": telemetry} if telemetry is not None else {})},
        indent=1, default=str).encode())
    atomic_write_bytes(paths["html"], _html(rows, project_id, model_version, telemetry).encode())
    return {k: str(v) for k, v in paths.items()}


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def telemetry_html(report: dict | None) -> str:
    """The telemetry section: per model version, objects and clicks / seconds per object
    (median, p90), the discarded suggestions, their clicks and the clicks per accepted object
    with them; the retrain history with each gate decision."""
    if report is None:
        return ""
    parts = ["<h2>Annotation effort per model version</h2>"]
    if report.get("versions") is None:
        parts.append("<p>No telemetry: it needs REDIS_URL (and TELEMETRY=true).</p>")
    elif not report["versions"]:
        parts.append("<p>No object finished yet.</p>")
    else:
        head = ("<tr><th>model version</th><th>objects</th><th>clicks median</th><th>clicks p90"
                "</th><th>tool actions median</th><th>seconds median</th><th>seconds p90</th>"
                "<th>discarded suggestions</th><th>clicks on discarded</th>"
                "<th>clicks / object</th><th>clicks / object incl. discarded</th></tr>")
        body = "".join(
            f"<tr><td>{html.escape(str(v['model_version']))}</td><td>{v['objects']}</td>"
            f"<td>{_num(v['clicks_median'])}</td><td>{_num(v['clicks_p90'])}</td>"
            f"<td>{_num(v['tools_median'])}</td><td>{_num(v['seconds_median'])}</td>"
            f"<td>{_num(v['seconds_p90'])}</td><td>{v.get('discarded', 0)}</td>"
            f"<td>{v.get('discarded_clicks', 0)}</td><td>{_num(v.get('clicks_mean'))}</td>"
            f"<td>{_num(v.get('clicks_per_object_with_discarded'))}</td></tr>"
            for v in report["versions"])
        parts.append(f'<table class="t">{head}{body}</table>')
        parts.append("<p>Per-object figures are over accepted objects; a discarded suggestion "
                     "is an object clicked through this backend and not in the submitted "
                     "annotation (rejected with ✗, deleted); the last column spreads its "
                     "clicks over the accepted objects.</p>")
    pending = report.get("pending")
    if pending:
        parts.append(f"<p>Waiting for their annotation: {pending['objects']} object(s) on "
                     f"{pending['tasks']} task(s).</p>")
    parts.append("<h2>Retrain history</h2>")
    retrains = report.get("retrains") or []
    if not retrains:
        parts.append("<p>No retrain run in the registry.</p>")
    else:
        rows = []
        for r in retrains:
            gates = "; ".join(f"{html.escape(n)}: NoC@90 {m['candidate']:.2f} vs "
                              f"{m['serving']:.2f} ({'not worse' if m['not_worse'] else 'worse'})"
                              for n, m in r["noc90"].items())
            if r.get("frames"):
                gates += f"; {html.escape(r['frames'])}"
            rows.append(f"<tr><td>{html.escape(str(r['run']))}</td>"
                        f"<td>{html.escape(str(r['status']))}</td>"
                        f"<td>{html.escape(str(r['candidate'] or ''))}</td>"
                        f"<td>{html.escape(str(r['serving_before'] or 'bundled'))}</td>"
                        f"<td>{gates or html.escape(str(r['error'] or ''))}</td></tr>")
        parts.append('<table class="t"><tr><th>run</th><th>gate decision</th><th>candidate</th>'
                     '<th>serving before</th><th>NoC@90 candidate vs serving</th></tr>'
                     + "".join(rows) + "</table>")
    return "\n".join(parts)


def _html(rows: list[dict], project_id: int, model_version: str,
          telemetry: dict | None = None) -> str:
    cards = []
    for r in rows:
        score = "—" if r["score"] is None else f"{r['score']:.3f}"
        tone = ("none" if r["score"] is None else "bad" if r["score"] < 0.7
                else "mid" if r["score"] < 0.85 else "ok")
        img = f'<img src="{r["thumb"]}" alt="task {r["task"]}">' if r["thumb"] else ""
        note = html.escape(r["error"] or r["source"])
        cards.append(
            f'<a class="card {tone}" href="{html.escape(r["link"])}" target="_blank">'
            f'{img}<div><b>#{r["rank"]}</b> task {r["task"]} · predicted IoU <b>{score}</b>'
            f'</div><div class="note">{note}</div></a>')
    title = f"Review: project {project_id}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa}}
.grid{{display:flex;flex-wrap:wrap;gap:10px}}
.card{{display:block;width:{THUMB + 12}px;padding:6px;background:#fff;border:2px solid #ccc;
border-radius:6px;color:#222;text-decoration:none;font-size:13px}}
.card img{{display:block;max-width:{THUMB}px;max-height:{THUMB}px;margin-bottom:4px}}
.bad{{border-color:#d33}} .mid{{border-color:#e90}} .ok{{border-color:#3a3}}
.none{{border-color:#777;border-style:dashed}} .note{{color:#666;font-size:11px}}
.t{{border-collapse:collapse;margin-bottom:1em}} .t td,.t th{{border:1px solid #ccc;
padding:2px 8px;font-size:13px;text-align:right}}
</style></head><body>
<h1>{html.escape(title)}</h1>
{telemetry_html(telemetry)}
<p>{len(rows)} tasks, worst predicted quality first (model {html.escape(model_version)}).
Red tint: the task's current mask. Click a card to open the task in Label Studio.</p>
<div class="grid">
{chr(10).join(cards)}
</div></body></html>
"""


def create_view(client, project_id: int, title: str = "Review: worst masks first") -> dict:
    """A saved data-manager tab ordered by prediction score, ascending (worst first)."""
    view = client.views.create(project=project_id, data={
        "title": title,
        "ordering": ["tasks:predictions_score"],
        "filters": {"conjunction": "and", "items": []},
    })
    return as_dict(view)
