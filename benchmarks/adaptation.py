"""A simulated labelling project: does retraining on its corrections save clicks, and at what cost?

    nice -n 10 python benchmarks/adaptation.py                       # full run: domain_nuclei,
        # batches of 40 objects up to 300, retrain at defaults after each batch, 60 remaining
        # objects sampled, GrabCut + Berkeley before/after
    python benchmarks/adaptation.py --objects 120 --batch-objects 40 --iterations 100 \
        --remaining 40 --forgetting-objects 25 --tag reduced             # a reduced run

The project is a dataset folder (default ../shared/datasets/domain_nuclei, a domain the base
model never saw; never GrabCut or Berkeley). Its images are one Label Studio task each, taken
in a fixed order (seeded shuffle); objects are annotated in batches of about --batch-objects
(whole images). Each object is annotated with the serving model by the standard clicker
(cdnet.eval.noc.run_object: the next click at the largest error) until IoU >= 0.90 or 20
clicks; the clicks are counted. Its ground truth is then submitted as an annotation of the
image's task (one annotation per object, since Label Studio merges one label's brush regions
into one mask) through the real webhook job, review.corrections.handle_event, against a
stand-in Label Studio serving the task images (tests/review/lsfake.py). After each batch the
real retrain job runs (review.retrain.retrain_job, what the RQ job and `clicksmith retrain`
call) with the settings in force (RETRAIN_* environment variables or this script's flags),
its gate decides, and the next batch is annotated with whatever model then serves.

Measured: clicks per object per batch for the adapting run and for the static (bundled) model
on the same objects; NoC@90 of both on a fixed sample of objects from images the stream has
not reached (so never annotated, never trained on) after each retrain; GrabCut/Berkeley NoC@90
of the static and the final model (forgetting); seconds per retrain. Markdown, JSON and a PNG
learning curve go to benchmarks/results/adaptation[_<tag>].*, rewritten after every batch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cdnet.eval.datasets import Dataset, resolve  # noqa: E402
from cdnet.eval.metrics import noc  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
FORBIDDEN = {"grabcut", "berkeley"}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", default="domain_nuclei", help="dataset folder or name")
    ap.add_argument("--objects", type=int, default=300, help="objects annotated in all")
    ap.add_argument("--batch-objects", type=int, default=40, help="objects per batch (about)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="fine-tuning iterations per retrain (default RETRAIN_ITERATIONS)")
    ap.add_argument("--remaining", type=int, default=60,
                    help="fixed sample of not-yet-annotated objects for NoC@90 after retrains")
    ap.add_argument("--forgetting", default="grabcut,berkeley",
                    help="standard sets measured before/after ('' to skip)")
    ap.add_argument("--forgetting-objects", type=int, default=None,
                    help="first N objects of each forgetting set (default all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="", help="results file suffix, e.g. 'reduced'")
    ap.add_argument("--reduced-note", default="",
                    help="what was reduced against the full run, written into the results")
    ap.add_argument("--out", default=None, help="results stem (default: results/adaptation)")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--forgetting-only", action="store_true",
                    help="only measure forgetting of the model serving in --work's registry "
                         "and add it to the results file (a run stopped before its end)")
    ap.add_argument("--retrain-only", metavar="RESULTS_JSON", default=None,
                    help="one retrain on the corrections a stopped run left in --work (another "
                         "setting on the same stream), then the same remaining sample and "
                         "forgetting; the run's results file names the sample")
    ap.add_argument("--rebuild-work", metavar="RESULTS_JSON", default=None,
                    help="store a finished run's corrections again in --work (its stream, "
                         "through the webhook job, no clicking, no retrain), for --retrain-only "
                         "when the run's work folder is gone")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for the retrains, e.g. --set retrain_lr=3e-4 (repeatable)")
    return ap.parse_args(argv)


# --- the project ---------------------------------------------------------------------------


def project_stream(folder: Path, seed: int) -> list[tuple[Path, list[int]]]:
    """[(image path, [dataset indices of its objects])] in the stream's fixed order."""
    ds = Dataset(folder)
    by_image: dict[Path, list[int]] = {}
    for i, (_name, image, _mask, _ign) in enumerate(ds._items):
        by_image.setdefault(image, []).append(i)
    images = sorted(by_image)
    random.Random(seed).shuffle(images)
    return [(p, by_image[p]) for p in images]


def from_training_folder(folder: Path, stream, base_folders: list[Path]):
    """A project made of a base training folder (e.g. train_msrc, which the bundled model did
    not train on before cdnet-mnv2-ecd2a552): (stream, RETRAIN_BASE_DATA, note). The stream
    leaves out the folder's held-out split, which the gate's "auto" general check draws from,
    and the replay leaves out the folder itself, so no project object reaches a retrain but as
    a correction.
    Any other project: (stream, None, "")."""
    from cdnet.train.data import VAL_FRACTION, scan, split

    if folder.resolve() not in {f.resolve() for f in base_folders}:
        return stream, None, ""
    held = {e.image.name for e in split(scan(folder), VAL_FRACTION)[1]}
    kept = [(image, objs) for image, objs in stream if image.name not in held]
    others = [f for f in base_folders if f.resolve() != folder.resolve()]
    note = (f"a training folder as the project: its {len(stream) - len(kept)} held-out images "
            f"(the general check's) are not in the stream, and replay uses the other "
            f"{len(others)} base folders")
    return kept, ",".join(str(f) for f in others), note


def batches_of(stream, total: int, per_batch: int) -> list[list[tuple[int, Path, list[int]]]]:
    """Whole images, in stream order, grouped into batches of about `per_batch` objects, up to
    `total` objects. Items: (task id, image, object indices)."""
    out, cur, n_cur, n_all = [], [], 0, 0
    for task_id, (image, objs) in enumerate(stream, 1):
        if n_all >= total:
            break
        cur.append((task_id, image, objs))
        n_cur += len(objs)
        n_all += len(objs)
        if n_cur >= per_batch:
            out.append(cur)
            cur, n_cur = [], 0
    if cur:
        out.append(cur)
    return out


def remaining_sample(stream, used_images: int, n: int, seed: int) -> list[int]:
    """A fixed sample of objects from the images the stream never reaches in this run,
    drawn from the end of the order (so the same whatever --objects is, while it fits)."""
    pool = [i for _img, objs in stream[used_images:] for i in objs]
    rng = random.Random(seed + 1)
    return sorted(rng.sample(pool, min(n, len(pool))))


# --- the stand-in Label Studio and the webhook path -----------------------------------------


def start_label_studio(stream, project_id: int):
    from tests.review.lsfake import LABEL_CONFIG, FakeLabelStudio, ServerThread

    fake = FakeLabelStudio()
    fake.projects[project_id] = {"id": project_id, "title": "adaptation",
                                 "label_config": LABEL_CONFIG, "model_version": ""}
    for task_id, (image, _objs) in enumerate(stream, 1):
        name = f"{project_id}/{image.name}"
        fake.images[name] = image.read_bytes()
        fake.tasks[task_id] = {"id": task_id, "project": project_id,
                               "data": {"image": f"/data/upload/{name}"}, "annotations": [],
                               "predictions": [], "created_at": "2026-01-01T00:00:00Z"}
    return fake, ServerThread(fake).start()


def submit(fake, project_id: int, task_id: int, ann_id: int, mask) -> dict:
    """The object's final mask as a Label Studio ANNOTATION_CREATED webhook, through the job
    the backend queues for it."""
    from clicksmith.labelstudio.config import parse_config
    from clicksmith.labelstudio.results import brush_item
    from review.corrections import handle_event
    from tests.review.lsfake import LABEL_CONFIG

    cfg = parse_config(LABEL_CONFIG, interactive=False)
    item = brush_item(mask, brush=cfg.brush_name, image=cfg.image_name, label="Object",
                      score=1.0)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ")
    task = {k: v for k, v in fake.tasks[task_id].items() if k != "predictions"}
    return handle_event({
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": ann_id, "task": task_id, "project": project_id, "result": [item],
                       "was_cancelled": False, "created_at": stamp, "updated_at": stamp,
                       "parent_prediction": None},
        "task": task, "project": {"id": project_id, "label_config": LABEL_CONFIG}})


# --- measuring ---------------------------------------------------------------------------


def clicks_to_90(predictor, sample) -> int:
    from cdnet.eval.noc import run_object

    return int(noc(run_object(predictor, sample).ious, 0.90, 20))


def noc_on(predictor, samples) -> dict:
    per = [clicks_to_90(predictor, s) for s in samples]
    return {"objects": len(per), "noc90": sum(per) / max(1, len(per)), "per_object": per}


def paired_sd(a: list[int], b: list[int]) -> float:
    """SD of the per-object differences: the gate's paired_gain SE times sqrt(n)."""
    from review.retrain import paired_gain

    gain = paired_gain(a, b)
    return 0.0 if gain is None else gain[1] * math.sqrt(len(a))


# --- reporting ---------------------------------------------------------------------------


def write_results(res: dict, stem: Path) -> None:
    from cdnet.fileio import atomic_write_bytes

    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(stem.with_suffix(".json"),
                       (json.dumps(res, indent=2, default=str) + "\n").encode())
    atomic_write_bytes(stem.with_suffix(".md"), markdown(res).encode())
    try:
        plot(res, stem.with_suffix(".png"))
    except Exception as exc:  # a missing matplotlib must not lose the numbers
        print(f"adaptation: no plot ({exc})", flush=True)


def _short_label(label: str) -> str:
    """"cdnet-mnv2-2e57075d @676/200px" -> "2e57075d @676/200px": the version's digest and
    the frames, without the common prefix."""
    version, _, frames = label.partition(" ")
    return " ".join(filter(None, [version.rsplit("-", 1)[-1], frames]))


def markdown(res: dict) -> str:
    a = res["args"]
    lines = [f"# Adaptation benchmark: {res['project']} ({res['label']})", ""]
    if res.get("reduced"):
        lines += [f"**Reduced run**: {res['reduced']}", "",
                  f"Full run: `{res['full_command']}`", ""]
    lines += [f"Started {res['started']}{', code ' + res['code'] if res.get('code') else ''}, "
              f"{res.get('state', 'running')}; settings of the "
              f"retrains: {json.dumps(res['retrain_settings'])}; batches of about "
              f"{a['batch_objects']} objects, {a['objects']} objects planned, remaining-object "
              f"sample {len(res['remaining_sample'])}.", ""]
    if res.get("project_note"):
        lines += [f"Project: {res['project_note']}.", ""]
    lines += ["| batch | objects so far | clicks/object adapting | static | serving model | "
              "retrain | s | NoC@90 remaining adapting | static |",
              "|---|---|---|---|---|---|---|---|---|"]
    for b in res["batches"]:
        r = b.get("retrain") or {}
        lines.append(
            f"| {b['batch']} | {b['objects_so_far']} | {b['mean_clicks_adapting']:.2f} | "
            f"{b['mean_clicks_static']:.2f} | {_short_label(b['serving'])} | "
            f"{r.get('status', '-')} | "
            f"{r.get('seconds', 0):.0f} | "
            f"{b.get('remaining_adapting', {}).get('noc90', float('nan')):.2f} | "
            f"{res['remaining_static']['noc90']:.2f} |")
    s = res.get("summary") or {}
    if s:
        lines += ["", "## Summary", ""]
        lines += [f"- {k}: {v}" for k, v in s.items()]
    for b in res["batches"]:
        r = b.get("retrain") or {}
        if r.get("decision") or r.get("message"):
            lines += ["", f"Batch {b['batch']} retrain ({r.get('status')}): "
                      f"{r.get('decision') or r.get('message')}"]
        if (r.get("project_scale") or {}).get("decision"):
            lines += ["", f"Batch {b['batch']} frames: {r['project_scale']['decision']}"]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    x = [b["objects_so_far"] for b in res["batches"]]
    ax1.plot(x, [b["mean_clicks_adapting"] for b in res["batches"]], "o-", label="adapting")
    ax1.plot(x, [b["mean_clicks_static"] for b in res["batches"]], "s--", label="static")
    ax1.set_xlabel("objects annotated (end of batch)")
    ax1.set_ylabel("clicks per object in the batch")
    ax1.legend()
    ax1.set_title("annotating the stream")
    pts = [(b["objects_so_far"], b["remaining_adapting"]["noc90"]) for b in res["batches"]
           if "remaining_adapting" in b]
    if pts:
        ax2.plot(*zip(*pts, strict=True), "o-", label="adapting (after the retrain)")
    ax2.axhline(res["remaining_static"]["noc90"], color="gray", ls="--", label="static")
    ax2.axhline(0.7 * res["remaining_static"]["noc90"], color="green", ls=":",
                label="target 0.7x static")
    ax2.set_xlabel("corrected objects")
    ax2.set_ylabel(f"NoC@90 on {len(res['remaining_sample'])} remaining objects")
    ax2.legend()
    ax2.set_title(f"{res['project']} ({res['label']})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --- the run -----------------------------------------------------------------------------


def main(argv=None, finetune=None, evaluate=None) -> int:
    """The run; `finetune` / `evaluate` are passed to the retrain job (tests inject them to
    make the gate's verdicts certain; the benchmark itself never does)."""
    saved_env = dict(os.environ)
    try:
        return _main(parse_args(argv), finetune, evaluate)
    finally:  # the run's settings are environment variables: give the caller its own back
        os.environ.clear()
        os.environ.update(saved_env)


def project_predictor(settings, project_id: int, static):
    """(predictor, label) the project's clicks get now: the serving version with the frames a
    retrain adopted for the project (cdnet.inference.scale); `static` itself while the bundled
    weights serve in the general frames, so callers can tell by identity."""
    from clicksmith import registry

    version = registry.current_version(settings)
    scale = registry.project_scale(settings, project_id)
    if version is None and scale is None:
        return static, "bundled"
    serving = (static if version is None else registry.load_serving_predictor(settings)
               ).for_scale(scale)
    return serving, (version or "bundled") + serving.frames_label


def measure_forgetting(args, static, serving_predictor) -> dict:
    """The standard sets, static vs final model (never used for any choice)."""
    forgetting = {}
    for name in [s.strip() for s in args.forgetting.split(",") if s.strip()]:
        samples = list(Dataset(name, args.forgetting_objects))
        before = noc_on(static, samples)
        after = before if serving_predictor is static else noc_on(serving_predictor, samples)
        forgetting[name] = {"objects": len(samples), "static": before["noc90"],
                            "final": after["noc90"], "delta": after["noc90"] - before["noc90"]}
        print(f"forgetting {name}: {before['noc90']:.2f} -> {after['noc90']:.2f} "
              f"({len(samples)} objects)", flush=True)
    return forgetting


def _use_settings(args: argparse.Namespace, **env: str) -> dict[str, str]:
    """Settings through the environment, as the jobs read them: `env`, the thread count, no
    Redis, then every --set KEY=VALUE; torch on that many threads. Returns what was set."""
    env = {**env, "TORCH_THREADS": str(args.threads), "REDIS_URL": ""}
    for item in args.set:
        key, _, value = item.partition("=")
        env[key.strip().upper()] = value.strip()
    os.environ.update(env)
    import torch

    torch.set_num_threads(args.threads)
    return env


def forgetting_only(args: argparse.Namespace) -> int:
    stem = Path(args.out) if args.out else RESULTS / ("adaptation" + (f"_{args.tag}"
                                                                       if args.tag else ""))
    res = json.loads(stem.with_suffix(".json").read_text())
    work = Path(args.work)
    _use_settings(args, MODEL_REGISTRY=str(work / "models"))
    from clicksmith import registry
    from clicksmith.settings import load_settings

    settings = load_settings()
    static = registry.load_configured_predictor(None, settings, backend="torch")
    version = registry.current_version(settings)
    final = static if version is None else registry.load_serving_predictor(settings)
    res["forgetting"] = measure_forgetting(args, static, final)
    res["forgetting_model"] = version or "bundled"
    summarize_run(res)
    write_results(res, stem)
    return 0


def _commit() -> str:
    """The checkout's commit (and '+changes' when it has uncommitted ones): which code ran."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def retrain_only(args: argparse.Namespace) -> int:
    base = json.loads(Path(args.retrain_only).read_text())
    work = Path(args.work)
    env = _use_settings(args, MODEL_REGISTRY=str(work / "models"),
                        CORRECTIONS_ROOT=str(work / "corrections"), TELEMETRY="false")
    from clicksmith import registry
    from clicksmith.settings import load_settings
    from review.retrain import retrain_job

    settings = load_settings()
    ds = Dataset(resolve(args.project))
    index = {name: i for i, (name, *_rest) in enumerate(ds._items)}
    remaining = [ds[index[n]] for n in base["remaining_sample"]]
    static = registry.load_configured_predictor(None, settings, backend="torch")
    stem = Path(args.out) if args.out else RESULTS / f"adaptation_{args.tag or 'retrain'}"
    res = {"project": base["project"], "based_on": str(args.retrain_only),
           "settings": env, "iterations": args.iterations or settings.retrain_iterations,
           "code": _commit(), "corrections": sum(b["objects"] for b in base["batches"]),
           "remaining_static": base["remaining_static"],
           "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    t0 = time.time()
    record = retrain_job(1, args.iterations)
    res["retrain"] = {k: record.get(k) for k in (
        "status", "decision", "message", "counts", "not_worse", "worse_on", "options",
        "finetune_seconds", "evaluate_seconds", "candidate_version") if k in record}
    res["retrain"]["seconds"] = round(time.time() - t0, 1)
    res["retrain"]["holdout_clicks"] = {
        role: (record.get("metrics") or {}).get("holdout", {}).get(role, {}).get("clicks90")
        for role in ("candidate", "serving")}
    res["retrain"]["general"] = (record.get("metrics") or {}).get("general")
    print(f"retrain: {record.get('status')} in {res['retrain']['seconds']:.0f} s: "
          f"{record.get('decision') or record.get('message')}", flush=True)
    from cdnet.fileio import atomic_write_json

    atomic_write_json(stem.with_suffix(".json"), res)
    res["retrain"]["project_scale"] = record.get("project_scale")
    # what the project serves now (a promoted candidate, the project's adopted frames) on the
    # remaining sample, and on the standard sets in the general frames (other projects)
    final, label = project_predictor(settings, 1, static)
    res["remaining_static_now"] = noc_on(static, remaining)  # these settings, this code
    print(f"remaining (static): {res['remaining_static_now']['noc90']:.2f}", flush=True)
    scale = registry.project_scale(settings, 1)
    if scale is not None and registry.current_version(settings):
        # the frames alone, without the fine-tuned weights: what each part is worth
        res["remaining_frames_only"] = noc_on(static.for_scale(scale), remaining)
        print(f"remaining (bundled weights, project frames): "
              f"{res['remaining_frames_only']['noc90']:.2f}", flush=True)
    atomic_write_json(stem.with_suffix(".json"), res)
    if final is not static:
        res["remaining_final"] = {**noc_on(final, remaining), "serving": label}
        print(f"remaining ({label}): {res['remaining_final']['noc90']:.2f} vs static "
              f"{base['remaining_static']['noc90']:.2f}", flush=True)
        atomic_write_json(stem.with_suffix(".json"), res)
        if registry.current_version(settings):
            res["forgetting"] = measure_forgetting(args, static, final.for_scale(None))
            atomic_write_json(stem.with_suffix(".json"), res)
    return 0


def rebuild_work(args, ds: Dataset, stream, batches, work: Path, project_id: int) -> int:
    """A finished run's corrections stored again, as the run stored them (same tasks, same
    annotation ids, so the retrain job holds out the same tasks), without clicking."""
    run = json.loads(Path(args.rebuild_work).read_text())
    names = [image.name for batch in batches for _task, image, _objs in batch]
    if names != run["stream_images"]:
        print(f"adaptation: --project/--objects/--batch-objects/--seed do not give the stream "
              f"of {args.rebuild_work}", file=sys.stderr)
        return 2
    fake, server = start_label_studio(stream, project_id)
    _use_settings(args, CORRECTIONS_ROOT=str(work / "corrections"), LABEL_STUDIO_URL=fake.url,
                  LABEL_STUDIO_API_KEY="test-legacy-token", TELEMETRY="false")
    ann_id = 0
    try:
        for batch in batches:
            for task_id, _image, objs in batch:
                for i in objs:
                    ann_id += 1
                    submit(fake, project_id, task_id, ann_id, ds[i].gt)
    finally:
        server.stop()
    print(f"{ann_id} corrections stored in {work / 'corrections'}", flush=True)
    return 0


def _main(args: argparse.Namespace, finetune, evaluate) -> int:
    if args.forgetting_only:
        return forgetting_only(args)
    if args.retrain_only:
        return retrain_only(args)
    folder = resolve(args.project)
    if folder.name.lower() in FORBIDDEN:
        print("adaptation: GrabCut and Berkeley are test sets, never a project", file=sys.stderr)
        return 2
    work = Path(args.work or tempfile.mkdtemp(prefix="adaptation-"))
    project_id = 1
    from review.retrain import dataset_list

    stream, base_data, project_note = from_training_folder(
        folder, project_stream(folder, args.seed), dataset_list("auto"))
    batches = batches_of(stream, args.objects, args.batch_objects)
    ds = Dataset(folder)
    if args.rebuild_work:
        return rebuild_work(args, ds, stream, batches, work, project_id)
    used_images = sum(len(b) for b in batches)
    sample_ids = remaining_sample(stream, used_images, args.remaining, args.seed)
    fake, server = start_label_studio(stream, project_id)
    _use_settings(args, MODEL_REGISTRY=str(work / "models"),
                  CORRECTIONS_ROOT=str(work / "corrections"), LABEL_STUDIO_URL=fake.url,
                  LABEL_STUDIO_API_KEY="test-legacy-token", TELEMETRY="false",
                  **({"RETRAIN_BASE_DATA": base_data} if base_data is not None else {}))
    from clicksmith.models import reset_process_service

    reset_process_service()
    from clicksmith import registry
    from clicksmith.settings import load_settings
    from review.retrain import RetrainError, retrain_job

    settings = load_settings()
    iterations = args.iterations or settings.retrain_iterations
    retrain_settings = {k: getattr(settings, k) for k in (
        "retrain_lr", "retrain_crop", "retrain_layers", "retrain_replay", "retrain_base_data",
        "retrain_min_holdout", "retrain_general_data", "retrain_general_objects",
        "retrain_general_tolerance", "flip_average", "progressive")}
    retrain_settings["retrain_iterations"] = iterations
    static = registry.load_configured_predictor(None, settings, backend="torch")
    stem = Path(args.out) if args.out else RESULTS / ("adaptation" + (f"_{args.tag}"
                                                                       if args.tag else ""))
    full = ("nice -n 10 python benchmarks/adaptation.py --project domain_nuclei --objects 300 "
            "--batch-objects 40 --remaining 60")
    res: dict = {"project": folder.name, "label": args.tag or "full",
                 "reduced": args.reduced_note, "project_note": project_note, "full_command": full,
                 "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "code": _commit(), "args": vars(args), "retrain_settings": retrain_settings,
                 "stream_images": [p.name for p, _ in stream[:used_images]],
                 "remaining_sample": [ds._items[i][0] for i in sample_ids], "batches": []}
    t0 = time.time()
    remaining = [ds[i] for i in sample_ids]
    res["remaining_static"] = noc_on(static, remaining)
    print(f"static NoC@90 on {len(remaining)} remaining objects: "
          f"{res['remaining_static']['noc90']:.2f} ({time.time() - t0:.0f} s)", flush=True)
    write_results(res, stem)

    ann_id = 0
    done = 0
    serving_predictor, serving_version = static, "bundled"
    try:
        for k, batch in enumerate(batches, 1):
            t_batch = time.time()
            adapting, static_clicks = [], []
            for task_id, _image, objs in batch:
                for i in objs:
                    sample = ds[i]
                    c_static = clicks_to_90(static, sample)
                    c = c_static if serving_predictor is static else \
                        clicks_to_90(serving_predictor, sample)
                    adapting.append(c)
                    static_clicks.append(c_static)
                    ann_id += 1
                    submit(fake, project_id, task_id, ann_id, sample.gt)
            done += len(adapting)
            entry = {"batch": k, "objects": len(adapting), "objects_so_far": done,
                     "serving": serving_version, "clicks_adapting": adapting,
                     "clicks_static": static_clicks,
                     "mean_clicks_adapting": sum(adapting) / len(adapting),
                     "mean_clicks_static": sum(static_clicks) / len(static_clicks),
                     "annotate_seconds": round(time.time() - t_batch, 1)}
            print(f"batch {k}: {len(adapting)} objects ({done} in all), clicks/object "
                  f"{entry['mean_clicks_adapting']:.2f} adapting ({serving_version}) vs "
                  f"{entry['mean_clicks_static']:.2f} static, "
                  f"{entry['annotate_seconds']:.0f} s", flush=True)
            t_re = time.time()
            try:
                record = retrain_job(project_id, iterations, finetune=finetune,
                                     evaluate=evaluate)
            except RetrainError as exc:
                record = {"status": "error", "error": str(exc)}
            keep = ("status", "decision", "message", "counts", "not_worse", "worse_on",
                    "general_check",
                    "finetune_seconds", "evaluate_seconds", "candidate_version", "error")
            entry["retrain"] = {key: record.get(key) for key in keep if key in record}
            entry["retrain"]["seconds"] = round(time.time() - t_re, 1)
            entry["retrain"]["holdout_clicks"] = {
                role: (record.get("metrics") or {}).get("holdout", {}).get(role, {}).get(
                    "clicks90") for role in ("candidate", "serving")}
            print(f"batch {k} retrain: {record.get('status')} in "
                  f"{entry['retrain']['seconds']:.0f} s: "
                  f"{record.get('decision') or record.get('message') or record.get('error')}",
                  flush=True)
            entry["retrain"]["project_scale"] = record.get("project_scale")
            serving_predictor, serving_version = project_predictor(
                load_settings(), project_id, static)
            if serving_predictor is static:
                entry["remaining_adapting"] = res["remaining_static"]
            else:
                entry["remaining_adapting"] = noc_on(serving_predictor, remaining)
            entry["serving_after"] = serving_version
            print(f"batch {k}: NoC@90 on the remaining sample "
                  f"{entry['remaining_adapting']['noc90']:.2f} (static "
                  f"{res['remaining_static']['noc90']:.2f})", flush=True)
            res["batches"].append(entry)
            write_results(res, stem)
        # the standard sets stand for other projects: the general frames
        res["forgetting"] = measure_forgetting(args, static, serving_predictor.for_scale(None)
                                               if serving_predictor is not static else static)
        res["forgetting_model"] = serving_version
        res["state"] = "finished"
    finally:
        server.stop()
        res.setdefault("state", "stopped early")
        summarize_run(res)
        write_results(res, stem)
    return 0


def summarize_run(res: dict) -> None:
    b = res["batches"]
    if not b:
        return
    saved = sum(x["mean_clicks_static"] * x["objects"] - x["mean_clicks_adapting"] * x["objects"]
                for x in b)
    last = b[-1]["remaining_adapting"]["noc90"]
    static = res["remaining_static"]["noc90"]
    retrains = [x["retrain"] for x in b if x.get("retrain")]
    trained = [r for r in retrains if r.get("finetune_seconds") is not None]
    s = {"objects annotated": b[-1]["objects_so_far"],
         "clicks, adapting run": sum(sum(x["clicks_adapting"]) for x in b),
         "clicks, static model on the same stream": sum(sum(x["clicks_static"]) for x in b),
         "clicks saved": round(saved),
         "NoC@90 remaining, static": round(static, 2),
         "NoC@90 remaining, final adapting": round(last, 2),
         "ratio final/static (target <= 0.7)": round(last / static, 3) if static else None,
         "retrains": ", ".join(f"{r.get('status')}" for r in retrains),
         "seconds per retrain (all phases)": [r.get("seconds") for r in retrains],
         "seconds per fine-tune + evaluation (those that trained)": [
             (r.get("finetune_seconds"), r.get("evaluate_seconds")) for r in trained]}
    for name, f in (res.get("forgetting") or {}).items():
        s[f"forgetting {name} NoC@90 static -> final ({f['objects']} objects)"] = (
            f"{f['static']:.2f} -> {f['final']:.2f} ({f['delta']:+.2f}; target <= +0.2)")
    # how many held-out objects a decision needs: the spread of per-object click differences
    # between the final model and the static one on the remaining sample
    fin = b[-1]["remaining_adapting"]["per_object"]
    st = res["remaining_static"]["per_object"]
    sd = paired_sd(fin, st)
    gain = static - last
    s["per-object click difference SD (final vs static, remaining sample)"] = round(sd, 2)
    if gain > 0 and sd > 0:
        s["held-out objects for the gain to be 2 SE (sd/gain)^2*4"] = math.ceil(
            4 * (sd / gain) ** 2)
    # the same on the gate's own held-out corrections: candidate vs serving, per retrain
    for x in b:
        h = (x.get("retrain") or {}).get("holdout_clicks") or {}
        if h.get("candidate") and h.get("serving"):
            c, v = h["candidate"], h["serving"]
            s[f"batch {x['batch']} gate holdout: {len(c)} objects, mean difference, SD"] = (
                round((sum(c) - sum(v)) / len(c), 2), round(paired_sd(c, v), 2))
    res["summary"] = s


if __name__ == "__main__":
    raise SystemExit(main())
