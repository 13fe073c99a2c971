"""`clicksmith status [ID]`: progress of a run (from `clicksmith prelabel`), of a retrain (its
run id or RQ job id: phase, iteration, ETA, then the evaluation) or of one RQ job; without an
id, the running and newest retrains and the newest runs, one line each.
`clicksmith status --project N`: the project's annotation telemetry (clicks and seconds per
object, per model version) and its retrain history with each gate decision
(clicksmith/telemetry.py)."""

from __future__ import annotations

import argparse
import json
import sys

from clicksmith.settings import load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", nargs="?", default=None,
                        help="a run id (printed by `clicksmith prelabel`) or an RQ job id; "
                             "none: list the newest runs")
    parser.add_argument("--limit", type=int, default=20, help="runs listed without an id")
    parser.add_argument("--project", type=int, default=None,
                        help="a Label Studio project id: clicks and seconds per annotated "
                             "object per model version, and the retrain history")
    parser.add_argument("--json", action="store_true", help="print JSON")


def retrain_runs(limit: int = 5, ident: str | None = None) -> list[dict]:
    """Retrain runs from the registry's records (runs/<run>.json): the one named `ident`, else
    every running one and the newest `limit` others, newest first. A running record whose
    progress has not moved for RETRAIN_LOCK_STALE_SECONDS is shown as stalled (its process
    probably died; the next retrain cleans up after it). Needs no Redis."""
    import time

    from clicksmith.registry import registry_root

    settings = load_settings()
    folder = registry_root(settings) / "runs"
    recs = []
    paths = [folder / f"{ident}.json"] if ident else (
        sorted(folder.glob("*.json")) if folder.is_dir() else [])
    for path in paths:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "run" in rec:
            recs.append(rec)
    recs.sort(key=lambda r: float(r.get("started_at") or 0), reverse=True)
    running = [r for r in recs if r.get("status") == "running"]
    chosen = running + [r for r in recs if r.get("status") != "running"][:max(0, limit)]
    for r in running:
        moved = float((r.get("progress") or {}).get("updated_at") or r.get("started_at") or 0)
        if time.time() - moved > settings.retrain_lock_stale_seconds:
            r["stalled_s"] = round(time.time() - moved)
    return [{"retrain": r["run"], **{k: r.get(k) for k in (
        "project", "status", "progress", "started_at", "finished_at", "decision", "message",
        "error", "candidate_version", "serving_after", "stalled_s") if r.get(k) is not None}}
        for r in chosen]


def describe(conn, ident: str) -> dict | None:
    """Progress of a run, or state + meta of a single job; None when neither exists."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    from review import jobs

    found = retrain_runs(ident=ident) if ident.replace("-", "").isdigit() else []
    if found:
        return found[0]
    if conn is None:
        return None
    progress = jobs.run_progress(conn, ident)
    if progress is not None:
        return progress.as_dict()
    try:
        job = Job.fetch(ident, connection=conn)
    except NoSuchJobError:
        return None
    status = job.get_status()
    out = {"job": job.id, "status": getattr(status, "value", status), "meta": job.meta,
           "description": job.description}
    if out["status"] == "finished":
        out["result"] = job.return_value()
    elif out["status"] == "failed":
        out["error"] = [jobs.failure_reason(job)]
    return out


def format_line(info: dict) -> str:
    from review.jobs import format_eta
    from review.retrain import describe_progress

    if "retrain" in info:
        line = f"retrain {info['retrain']} (project {info.get('project') or 'all'}): "
        if info.get("status") == "running":
            line += describe_progress(info.get("progress") or {"phase": "starting"})
            if info.get("stalled_s"):
                line += (f" (stalled: no progress for {info['stalled_s']} s; the process "
                         "probably stopped, the next retrain cleans up after it)")
            return line
        line += str(info.get("status"))
        detail = info.get("decision") or info.get("message") or info.get("error")
        return line + (f": {detail}" if detail else "")
    if "run" in info:
        pct = 100.0 * info["done"] / info["total"] if info["total"] else 100.0
        states = ", ".join(f"{n} {s}" for s, n in sorted(info["jobs"].items()))
        failed = f", {info['failed']} failed" if info.get("failed") else ""
        return (f"{info['run']}: {info['done']}/{info['total']} tasks ({pct:.0f}%){failed}, "
                f"ETA {format_eta(info['eta_s'])}, jobs: {states or 'none'}")
    meta = info.get("meta") or {}
    done = f" {meta['done']}/{meta['total']}" if "total" in meta else ""
    if meta.get("progress") and info["status"] == "started":
        done = f" (retrain {meta.get('retrain_run')}: {describe_progress(meta['progress'])})"
    return f"job {info['job']}: {info['status']}{done}"


def project_status(args: argparse.Namespace) -> int:
    from clicksmith import queue, telemetry

    settings = load_settings()
    conn = None
    if settings.redis_url and settings.telemetry:
        try:
            conn = queue.redis_conn(settings, timeout=5.0)
        except (ValueError, queue.QueueUnavailable) as exc:
            print(f"clicksmith status: {exc}", file=sys.stderr)
            return 2
    report = telemetry.project_report(settings, args.project, conn=conn)
    print(json.dumps(report, indent=2, default=str) if args.json
          else "\n".join(telemetry.format_report(report)))
    return 0


def run(args: argparse.Namespace) -> int:
    from clicksmith import queue

    if getattr(args, "project", None) is not None:
        if args.id is not None:
            print("clicksmith status: give a run/job id or --project, not both", file=sys.stderr)
            return 2
        return project_status(args)
    retrains = retrain_runs(limit=3) if args.id is None else []
    try:
        conn = queue.redis_conn(load_settings())
    except (ValueError, queue.QueueUnavailable) as exc:
        local = retrain_runs(ident=args.id) if args.id else retrains
        if not local:
            print(f"clicksmith status: {exc}", file=sys.stderr)
            return 2
        conn = None  # retrain records are on disk: shown without Redis
    if args.id is None:
        from review import jobs

        runs = [p.as_dict() for p in jobs.list_runs(conn, max(1, args.limit))] if conn else []
        if args.json:
            print(json.dumps(retrains + runs, indent=2, default=str))
        elif not runs and not retrains:
            print("no runs in Redis (a run is kept for a week after `clicksmith prelabel`)")
        for info in [] if args.json else retrains + runs:
            print(format_line(info))
        return 0
    info = describe(conn, args.id)
    if info is None:
        print(f"clicksmith status: no run or job {args.id!r} in Redis", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2, default=str) if args.json else format_line(info))
    return 0
