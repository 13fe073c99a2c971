"""`clicksmith review --project N --out DIR`: rank a project's masks, worst predicted first."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from clicksmith.settings import load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", type=int, required=True, help="Label Studio project id")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for review.html, review.csv and review.json")
    parser.add_argument("--no-view", action="store_true",
                        help="do not create the Label Studio data-manager tab")


def _telemetry(settings, project: int) -> dict:
    """The project's telemetry report (clicks and seconds per object, retrain history); its
    Redis part left out, with the reason on stderr, when Redis cannot be read."""
    from clicksmith import queue, telemetry

    conn = None
    if settings.redis_url and settings.telemetry:
        conn = queue.redis_conn(settings, timeout=5.0)
    try:
        return telemetry.project_report(settings, project, conn=conn)
    except Exception as exc:  # noqa: BLE001 (Redis down: the ranking is still worth writing)
        print(f"clicksmith review: telemetry left out ({exc})", file=sys.stderr)
        return telemetry.project_report(dataclasses.replace(settings, telemetry=False), project)


def run(args: argparse.Namespace) -> int:
    from label_studio_sdk.core.api_error import ApiError

    from clicksmith.labelstudio.client import LabelStudioError, client_for, describe_error
    from clicksmith.models import ModelUnavailable, process_model
    from review.ranking import create_view, score_tasks, write_reports

    settings = load_settings()
    try:
        client = client_for(settings)
        predictor = process_model(settings)
        rows = score_tasks(settings, args.project, client, predictor)
        paths = write_reports(rows, args.out, args.project, predictor.model_version,
                              telemetry=_telemetry(settings, args.project))
        view = None if args.no_view else create_view(client, args.project)
    except (ValueError, ApiError, ModelUnavailable, LabelStudioError) as exc:
        print(f"clicksmith review: {describe_error(exc)}", file=sys.stderr)
        return 2
    scored = [r for r in rows if r["score"] is not None]
    print(f"{len(rows)} task(s), {len(scored)} scored; worst: "
          + ", ".join(f"task {r['task']} ({r['score']:.3f})" for r in scored[:5]))
    print(f"report: {paths['html']} (+ review.csv, review.json)")
    if view:
        print(f"Label Studio tab {view.get('id')}: ordered by prediction score, ascending")
    return 0
