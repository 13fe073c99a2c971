"""The training loop: iterative click simulation, checkpoints, validation NoC, distillation.

Resumable by design: everything needed to continue (weights, optimizer, iteration, RNG) is in
`<run>/last.pt`, written atomically every few minutes, so a killed run loses minutes, not hours.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from cdnet.eval.datasets import Sample
from cdnet.model.cdnet import CDNet
from cdnet.model.encoding import click_maps
from cdnet.model.io import build_model, load_model, save_model, with_fine_head
from cdnet.train.data import VAL_FRACTION, SampleSource, split_folders
from cdnet.train.losses import BOUNDARY_WEIGHT, cdnet_loss
from cdnet.train.simulation import error_click, random_first_clicks, random_prior


@dataclass
class TrainConfig:
    run_dir: str = "runs/mnv2"
    datasets: list[str] = field(default_factory=list)  # folders with images/ and masks/
    iterations: int = 20000
    batch_size: int = 8
    crop: int = 288
    lr: float = 5e-4
    backbone_lr_factor: float = 0.2
    weight_decay: float = 1e-4
    prior_probability: float = 0.3
    zero_click_probability: float = 0.05  # no clicks, no prior: learn "the main object"
    max_error_clicks: int = 3
    val_fraction: float = VAL_FRACTION
    val_objects: int = 20
    val_every: int = 1000
    checkpoint_minutes: float = 5.0
    init_weights: str | None = None  # fine-tune from these instead of ImageNet
    teacher: str | None = None
    seed: int = 0
    threads: int = 2
    device: str = "cpu"  # "cuda" where a GPU is lent: the same loop, tensors moved there
    workers: int = 0  # sampling processes; 0 samples in the training process (2-core default)
    minutes: float | None = None  # stop after this long; the LR schedule then follows the clock
    keep_snapshots: bool = False  # also keep every checkpoint's weights: for averaging the last
    fine_head: bool = False  # add the stride-2 refinement head (to --init-weights without one)
    fine_trunk: bool = False  # also feed that head the trunk's stride-2 features (implies it)
    boundary_weight: float = BOUNDARY_WEIGHT  # weight of the boundary-band BCE in the loss
    # per-image sampling weight of each training folder (by folder name; 1 when not named)
    source_weights: dict[str, float] = field(default_factory=dict)
    # folder name -> the smallest object (share of its image) sampled from it; others
    # data.MIN_OBJECT_FRACTION
    min_object_fraction: dict[str, float] = field(default_factory=dict)


def _image_tensor(images, device: str = "cpu") -> torch.Tensor:
    """(N, 3, H, W) float32, channels_last; moved as uint8 (a quarter of the bytes) and
    converted where it lands."""
    u8 = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2)
    return u8.float().contiguous(memory_format=torch.channels_last)


def _interaction_tensors(clicks, priors, device: str = "cpu"):
    """(click maps, prior) tensors: the part of a batch that changes with every click round."""
    h, w = priors[0].shape
    clk = torch.from_numpy(np.stack([click_maps(c, h, w) for c in clicks]))
    pri = torch.from_numpy(np.stack(priors)[:, None]).to(device).float()
    return clk.to(device), pri


def _batch_tensors(images, gts, clicks, priors, device: str = "cpu"):
    gt = torch.from_numpy(np.stack(gts)[:, None]).to(device).float()
    return (_image_tensor(images, device), gt, *_interaction_tensors(clicks, priors, device))


def first_interaction(source: SampleSource, cfg: TrainConfig, rng: np.random.Generator):
    """One object and what an annotator starts it with: (image, gt, clicks, prior, fixed).

    `fixed` marks zero-click and prior-only samples: they stay as they are (those are the
    cases to learn), so no error clicks are added to them.
    """
    zero_click = rng.random() < cfg.zero_click_probability
    img, gt = source.sample(rng, main_object=zero_click)
    if zero_click:
        prior, cl = np.zeros_like(gt), []
    elif rng.random() < cfg.prior_probability:
        prior = random_prior(gt, rng)
        c = error_click(gt, prior, [])
        cl = [c] if c is not None and rng.random() < 0.8 else []
    else:
        prior, cl = np.zeros_like(gt), random_first_clicks(gt, rng)
    return img, gt, cl, prior, zero_click or (not cl and prior.any())


def add_error_clicks(model: CDNet, samples: list, n_rounds: int, device: str = "cpu",
                     pool: Executor | None = None):
    """`n_rounds` clicks from the model's own errors, its mask fed back as the prior each time
    (RITM's iterative sampling); returns the batch as tensors on `device`."""
    images, gts, clicks, priors, fixed = (list(x) for x in zip(*samples, strict=True))
    if n_rounds:
        model.eval()
        with torch.no_grad():
            img = _image_tensor(images, device)  # the images stay; clicks and prior change
            for _ in range(n_rounds):
                clk, pri = _interaction_tensors(clicks, priors, device)
                preds = (model(img, clk, pri).logits[:, 0] > 0).cpu().numpy()
                todo = [i for i in range(len(images)) if not fixed[i]]
                args = ([gts[i] for i in todo], [preds[i] for i in todo], [clicks[i] for i in todo])
                new = pool.map(error_click, *args, chunksize=4) if pool else map(error_click, *args)
                for i, c in zip(todo, new, strict=True):
                    if c is not None:
                        clicks[i] = clicks[i] + [c]
                        priors[i] = preds[i]
        model.train()
    return _batch_tensors(images, gts, clicks, priors, device)


def simulate_batch(model: CDNet, source: SampleSource, cfg: TrainConfig,
                   rng: np.random.Generator):
    """A batch with clicks and priors as an annotator would have produced them."""
    samples = [first_interaction(source, cfg, rng) for _ in range(cfg.batch_size)]
    return add_error_clicks(model, samples, int(rng.integers(cfg.max_error_clicks + 1)),
                            cfg.device)


class FirstInteractions(torch.utils.data.IterableDataset):
    """An endless stream of `first_interaction` samples for DataLoader worker processes; each
    worker draws from its own random stream (seed, start iteration, worker id), so a resumed
    run does not replay the samples it has already seen."""

    def __init__(self, source: SampleSource, cfg: TrainConfig, start: int):
        self.source, self.cfg, self.start = source, cfg, start

    def __iter__(self):
        cv2.setNumThreads(1)  # the processes are the parallelism; OpenCV's own threads would fight
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.cfg.seed, self.start, info.id if info else 0])
        while True:
            yield first_interaction(self.source, self.cfg, rng)


def _batches(model, source, cfg: TrainConfig, rng, start: int):
    """Training batches: sampled in this process (workers=0) or by worker processes. The
    error-click rounds need the current model, so they run here; their clicker (distance
    transforms, numpy: it holds the GIL, threads do not help) runs in a process pool."""
    if cfg.workers <= 0:
        while True:
            yield simulate_batch(model, source, cfg, rng)
    # forkserver: worker processes start clean, never forked from a process holding CUDA (and
    # its threads: forking those can deadlock)
    ctx = multiprocessing.get_context("forkserver")
    # the server imports these once and every worker forks with them loaded, instead of
    # each of up to 22 processes importing torch on its own at start-up
    ctx.set_forkserver_preload(["torch", "cv2", "cdnet.train.data", "cdnet.train.simulation"])
    loader = torch.utils.data.DataLoader(
        FirstInteractions(source, cfg, start), batch_size=cfg.batch_size,
        num_workers=cfg.workers, collate_fn=list, persistent_workers=True, prefetch_factor=4,
        multiprocessing_context=ctx)
    with ProcessPoolExecutor(min(8, cfg.workers), mp_context=ctx) as pool:
        for samples in loader:
            n = int(rng.integers(cfg.max_error_clicks + 1))
            yield add_error_clicks(model, samples, n, cfg.device, pool)


def validation_samples(entries, limit: int | None, extra_per_image: int = 0,
                       min_pixels: int = 100) -> list[Sample]:
    """Held-out objects: the first mask of each of the first `limit` images (all when None),
    plus up to `extra_per_image` further masks of the same image larger than `min_pixels`.

    Training validates on the first masks only (cheap, noisy); choosing between checkpoints
    uses the extra objects too (benchmarks/heldout.py), never GrabCut or Berkeley.
    """
    from cdnet.train.data import _load

    out = []
    for e in entries[:limit]:
        img = _load(e.image, gray=False)
        for k, path in enumerate(e.masks[: 1 + extra_per_image]):
            gt = _load(path, gray=True, size=img.shape[:2]) > 127
            if gt.sum() > (0 if k == 0 else min_pixels):
                out.append(Sample(e.image.stem if k == 0 else f"{e.image.stem}#{k}", img, gt,
                                  None))
    return out


def validate(model: CDNet, samples: list[Sample]) -> dict:
    from cdnet.eval.noc import evaluate
    from cdnet.inference.predictor import Predictor
    from cdnet.inference.runner import TorchRunner

    # the evaluation runs on the CPU (numpy in, numpy out): a GPU-trained model is copied there
    on_cpu = next(model.parameters()).device.type == "cpu"
    net = model if on_cpu else copy.deepcopy(model).cpu()
    net.eval()
    try:
        r = evaluate(Predictor(TorchRunner(net), "val"), samples, progress=False)
    finally:
        model.train()
    return {k: r[k] for k in ("noc85", "noc90", "miou@1", "miou@3", "miou@5") if k in r}


def _checkpoint(path: Path, model, opt, it: int, rng, best: float, cfg: TrainConfig):
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "iteration": it,
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "best": best, "config": asdict(cfg)}, tmp)
    os.replace(tmp, path)


def schedule_progress(it: int, cfg: TrainConfig, elapsed_s: float) -> float:
    """How far along the run is, 0..1: by iterations, or by the clock when `cfg.minutes` caps
    it (whichever is further), so a time-boxed run still ends on a small learning rate."""
    p = it / cfg.iterations
    if cfg.minutes is not None:
        p = max(p, elapsed_s / (cfg.minutes * 60))
    return min(p, 1.0)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          on_iteration: Callable[[int, int, float], None] | None = None,
          trainable: Callable[[str], bool] | None = None,
          prepare: Callable[[CDNet], CDNet] | None = None) -> Path:
    """Train; returns the path of the best weights file (`<run>/model.pt`).

    `on_iteration(done, total, elapsed_s)` is called after every iteration (progress for a
    caller without a terminal, e.g. a retrain job); `trainable(name)` picks the parameters
    that learn (default: all), the others stay frozen; `prepare(model)` adjusts the model
    before training starts (e.g. `freeze_batchnorm`)."""
    torch.set_num_threads(cfg.threads)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    train_entries, val_entries = split_folders(cfg.datasets, cfg.val_fraction)
    source = SampleSource(train_entries, cfg.crop, cfg.source_weights, cfg.min_object_fraction)
    val = validation_samples(val_entries, cfg.val_objects)

    if cfg.init_weights:
        model, _ = load_model(Path(cfg.init_weights))
        if cfg.fine_head or cfg.fine_trunk:
            model = with_fine_head(model, trunk=cfg.fine_trunk)
    else:
        model = build_model({"fine_head": cfg.fine_head or cfg.fine_trunk,
                             "fine_trunk": cfg.fine_trunk}, pretrained=True)
    model = model.train().to(cfg.device, memory_format=torch.channels_last)
    if prepare is not None:
        model = prepare(model)
    if cfg.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    named = list(model.named_parameters())
    if trainable is not None:
        for n, p in named:
            p.requires_grad_(bool(trainable(n)))
        named = [(n, p) for n, p in named if p.requires_grad]
    trunk = [p for n, p in named if n.startswith(("stem.", "stage"))]
    rest = [p for n, p in named if not n.startswith(("stem.", "stage"))]
    opt = torch.optim.AdamW([{"params": trunk, "lr": cfg.lr * cfg.backbone_lr_factor},
                             {"params": rest, "lr": cfg.lr}], weight_decay=cfg.weight_decay)
    teacher = load_model(Path(cfg.teacher))[0].eval().to(cfg.device) if cfg.teacher else None
    rng = np.random.default_rng(cfg.seed)
    start, best = 0, float("inf")
    last = run / "last.pt"
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"nothing to resume: {last} does not exist")
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start, best = ck["iteration"], ck["best"]
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
    base_lrs = [g["lr"] for g in opt.param_groups]
    log = open(run / "log.jsonl", "a")
    # a time box ends the run first: an ETA over the iteration count would be meaningless, so
    # the bar then counts iterations and names the box instead
    boxed = cfg.minutes is not None
    its = range(start, cfg.iterations)
    bar = tqdm(iter(its) if boxed else its, initial=start,
               total=None if boxed else cfg.iterations, disable=not progress,
               desc=f"train ({cfg.minutes:g} min box)" if boxed else "train", dynamic_ncols=True)
    began = last_save = time.monotonic()
    avg: dict[str, float] = {}
    batches = _batches(model, source, cfg, rng, start)
    for it in bar:
        share_done = schedule_progress(it, cfg, time.monotonic() - began)
        decay = 0.5 * (1 + np.cos(np.pi * share_done))  # cosine schedule
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * (0.05 + 0.95 * decay)
        img, gt, clk, pri = next(batches)
        teacher_probs = None
        if teacher is not None:
            with torch.no_grad():
                teacher_probs = torch.sigmoid(teacher(img, clk, pri).logits)
        loss, parts = cdnet_loss(model(img, clk, pri), gt, clk, pri, teacher_probs,
                                 cfg.boundary_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        for k, v in parts.items():
            avg[k] = v if k not in avg else 0.98 * avg[k] + 0.02 * v
        bar.set_postfix({k: f"{v:.3f}" for k, v in avg.items()})
        done = it + 1
        finished = schedule_progress(done, cfg, time.monotonic() - began) >= 1.0
        if done % cfg.val_every == 0 or finished:
            metrics = validate(model, val) if val else {}
            log.write(json.dumps({"iteration": done, **avg, **metrics}) + "\n")
            log.flush()
            if progress or metrics:
                tqdm.write(f"iter {done}: {json.dumps(metrics)}")
            score = metrics.get("noc90", -done)
            if score <= best:
                best = score
                save_model(model, run / "model.pt",
                           meta={"iteration": done, "val": metrics, "config": asdict(cfg)})
        if time.monotonic() - last_save > cfg.checkpoint_minutes * 60 or finished:
            _checkpoint(last, model, opt, done, rng, best, cfg)
            save_model(model, run / "latest_model.pt", meta={"iteration": done})
            if cfg.keep_snapshots:
                save_model(model, run / "snapshots" / f"it_{done}.pt", meta={"iteration": done})
            last_save = time.monotonic()
        if on_iteration is not None:
            on_iteration(done, cfg.iterations, time.monotonic() - began)
        if finished:
            break
    batches.close()  # stops sampling workers and the clicker pool now, not whenever GC runs
    bar.close()
    log.close()
    if not (run / "model.pt").exists():
        save_model(model, run / "model.pt", meta={"iteration": cfg.iterations})
    return run / "model.pt"


FINETUNE_LAYERS = ("all", "head", "decoder")


def layer_filter(layers: str) -> Callable[[str], bool] | None:
    """Which parameters a fine-tune trains: "all"; "decoder" (the MobileNetV2 trunk frozen:
    `stem.`/`stage*`, the click/prior stem still learns); "head" (the trunk, both stems and
    the Feature Diffusion Module frozen: only the decoder, heads, PDM and refinement learn)."""
    if layers == "all":
        return None
    if layers == "decoder":
        return lambda n: not n.startswith(("stem.", "stage"))
    if layers == "head":
        return lambda n: not n.startswith(("stem", "stage", "fdm"))
    raise ValueError(f"layers must be one of {FINETUNE_LAYERS}, got {layers!r}")


def freeze_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Keep every BatchNorm layer in eval mode, even after `model.train()`: normalised with
    the base model's running statistics, which are not updated. Why, for fine-tuning on a
    project: its images (e.g. dark microscopy) would otherwise pull those statistics away from
    everything else the model serves, forgetting without a single weight update."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    plain_train = model.train

    def train(mode: bool = True):
        plain_train(mode)
        for m in norms:
            m.eval()
        return model

    model.train = train  # type: ignore[method-assign]
    return model.train()


def finetune(base_weights: str | Path, dataset_dirs: list[str | Path], out_path: str | Path,
             iterations: int = 500, run_dir: str | Path | None = None, *, lr: float = 1e-4,
             crop: int = 288, batch_size: int = 8, layers: str = "all",
             source_weights: dict[str, float] | None = None, threads: int = 2, seed: int = 0,
             freeze_bn: bool = False, interpolate: float = 1.0,
             min_object_fraction: dict[str, float] | None = None,
             on_iteration: Callable[[int, int, float], None] | None = None) -> Path:
    """Fine-tune existing weights on extra folders (corrections + base data); for retraining.

    No validation inside (val_fraction 0): the retrain job evaluates the result itself, on
    objects this run never trained on. `source_weights` weighs each folder's images (by folder
    name), e.g. to keep a project's corrections at a fixed share beside replayed base data.
    `interpolate` < 1 returns that share of the fine-tuned weights plus the rest of the base
    weights (weight-space interpolation, as WiSE-FT, Wortsman et al. 2022): a narrow domain
    pulls fine-tuned weights away from what the base model does well elsewhere, and the
    midpoint usually keeps most of the gain with much less of that loss."""
    if not 0.0 < interpolate <= 1.0:
        raise ValueError(f"interpolate must be in (0, 1], got {interpolate}")
    out_path = Path(out_path)
    run = Path(run_dir) if run_dir else out_path.parent / (out_path.stem + "_run")
    cfg = TrainConfig(run_dir=str(run), datasets=[str(d) for d in dataset_dirs],
                      iterations=iterations, lr=lr, crop=crop, batch_size=batch_size,
                      init_weights=str(base_weights), val_fraction=0.0,
                      val_every=max(iterations, 1), checkpoint_minutes=60.0, threads=threads,
                      seed=seed, source_weights=dict(source_weights or {}),
                      min_object_fraction=dict(min_object_fraction or {}))
    best = train(cfg, progress=False, on_iteration=on_iteration, trainable=layer_filter(layers),
                 prepare=freeze_batchnorm if freeze_bn else None)
    if interpolate < 1.0:
        from cdnet.model.average import average_models

        model = average_models([base_weights, best], [1.0 - interpolate, interpolate])
    else:
        model, _ = load_model(best)
    save_model(model, out_path, meta={"finetuned_from": str(base_weights),
                                      "iterations": iterations, "lr": lr, "crop": crop,
                                      "layers": layers, "freeze_bn": freeze_bn,
                                      "interpolate": interpolate})
    return out_path


