"""`clicksmith review --project N --out DIR`: rank a project's masks, worst predicted first."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clicksmith.settings import load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", type=int, required=True, help="Label Studio project id")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for review.html, review.csv and review.json")
    parser.add_argument("--no-view", action="store_true",
                        help="do not create the Label Studio data-manager tab")


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
        paths = write_reports(rows, args.out, args.project, predictor.model_version)
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
