"""Training harness: data scanning, click simulation, loss goes down, resumable runs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from cdnet import load_predictor
from cdnet.model.io import BUNDLED_WEIGHTS, build_model, load_model
from cdnet.train.data import SampleSource, scan, split
from cdnet.train.loop import (
    TrainConfig,
    add_error_clicks,
    first_interaction,
    schedule_progress,
    simulate_batch,
    train,
    validation_samples,
)
from cdnet.train.losses import boundary_bce, cdnet_loss
from cdnet.train.simulation import random_first_clicks, random_prior


def test_scan_pairs_images_with_single_and_numbered_masks(dataset):
    entries = scan(dataset)
    assert [len(e.masks) for e in entries] == [1, 2, 1, 2]
    assert entries[1].masks[1].name == "im_1_1.png"


def test_split_is_deterministic_and_disjoint(dataset):
    entries = scan(dataset) * 50
    a, b = split(entries, 0.3)
    assert split(entries, 0.3) == (a, b)
    assert {e.image for e in a}.isdisjoint({e.image for e in b}) or not b


def test_scan_refuses_a_folder_without_masks(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="masks"):
        scan(tmp_path)


def test_held_out_objects_are_first_masks_plus_large_further_ones(dataset):
    entries = scan(dataset)
    assert [s.name for s in validation_samples(entries, 2)] == ["im_0", "im_1"]
    picked = validation_samples(entries, None, extra_per_image=1)
    assert [s.name for s in picked] == ["im_0", "im_1", "im_1#1", "im_2", "im_3", "im_3#1"]
    rect = cv2.imread(str(dataset / "masks" / "im_1_1.png"), cv2.IMREAD_GRAYSCALE) > 127
    assert np.array_equal(picked[2].gt, rect)
    # the 41x41 rectangle is too small for a 2,000-pixel floor: only first masks remain
    assert len(validation_samples(entries, None, 1, min_pixels=2000)) == 4


def test_simulated_clicks_and_priors_are_where_they_should_be():
    rng = np.random.default_rng(0)
    gt = np.zeros((100, 100), bool)
    gt[30:70, 20:80] = True
    for _ in range(20):
        clicks = random_first_clicks(gt, rng)
        assert any(c.positive for c in clicks)
        for c in clicks:
            assert gt[int(c.y), int(c.x)] == c.positive
        prior = random_prior(gt, rng)
        iou = (prior & gt).sum() / (prior | gt).sum()
        assert 0.4 < iou < 0.97


def test_two_steps_lower_the_loss_on_a_tiny_batch(dataset):
    torch.manual_seed(0)
    model = build_model(pretrained=True).train()
    cfg = TrainConfig(batch_size=4, crop=96, max_error_clicks=0)
    batch = simulate_batch(model, SampleSource(scan(dataset), 96), cfg, np.random.default_rng(0))
    img, gt, clk, pri = batch
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    losses = []
    for _ in range(3):
        loss, parts = cdnet_loss(model(img, clk, pri), gt, clk, pri)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[2] < losses[0], losses
    assert set(parts) >= {"main", "heads", "quality", "iou"}


def test_training_run_checkpoints_resumes_and_yields_loadable_weights(dataset, tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(run_dir=str(run), datasets=[str(dataset)], iterations=2, batch_size=2,
                      crop=96, val_fraction=0.0, val_every=2, max_error_clicks=1)
    best = train(cfg, progress=False)
    assert torch.load(run / "last.pt", weights_only=False)["iteration"] == 2
    cfg.iterations = 3
    train(cfg, resume=True, progress=False)
    assert torch.load(run / "last.pt", weights_only=False)["iteration"] == 3
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [entry["iteration"] for entry in log] == [2, 3]
    p = load_predictor(best, backend="torch")
    assert p.model_version.startswith("cdnet-mnv2-")


def test_resume_without_a_checkpoint_is_a_clear_error(dataset, tmp_path):
    cfg = TrainConfig(run_dir=str(tmp_path / "none"), datasets=[str(dataset)], iterations=1)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(cfg, resume=True, progress=False)


def test_zero_click_samples_have_no_clicks_no_prior_and_a_single_object(dataset):
    cfg = TrainConfig(batch_size=4, crop=96, max_error_clicks=2, zero_click_probability=1.0)
    source = SampleSource(scan(dataset), 96)
    img, gt, clk, pri = simulate_batch(build_model(pretrained=False), source, cfg,
                                       np.random.default_rng(0))
    assert clk.sum() == 0 and pri.sum() == 0 and (gt.flatten(1).amax(1) == 1).all()
    assert source.single == [0, 2]  # only images with exactly one annotated object


def test_error_clicks_are_the_same_computed_in_a_process_pool_or_in_line(dataset):
    """The worker path computes error clicks in a process pool (as `_batches` makes it); it
    must click where the single-process path clicks."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    torch.manual_seed(0)
    model = build_model(pretrained=False)
    cfg = TrainConfig(crop=96, zero_click_probability=0.0, prior_probability=0.0)
    rng = np.random.default_rng(1)
    samples = [first_interaction(SampleSource(scan(dataset), 96), cfg, rng) for _ in range(6)]
    inline = add_error_clicks(model, samples, 2)
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        pooled = add_error_clicks(model, samples, 2, pool=pool)
    for a, b in zip(inline, pooled, strict=True):
        assert torch.equal(a, b)
    before = add_error_clicks(model, samples, 0)
    # an untrained model errs somewhere on every object, so two rounds add clicks
    assert inline[2].sum() > before[2].sum()


def test_worker_processes_feed_a_resumable_run(dataset, tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(run_dir=str(run), datasets=[str(dataset)], iterations=3, batch_size=2,
                      crop=96, val_fraction=0.0, val_every=100, max_error_clicks=1, workers=2)
    train(cfg, progress=False)
    assert torch.load(run / "last.pt", weights_only=False)["iteration"] == 3
    cfg.iterations = 4
    train(cfg, resume=True, progress=False)
    assert torch.load(run / "last.pt", weights_only=False)["iteration"] == 4


def test_a_time_box_ends_the_run_early_on_the_lowest_learning_rate(dataset, tmp_path):
    cfg = TrainConfig(iterations=100, minutes=10.0)
    assert schedule_progress(10, cfg, 0.0) == 0.1  # the clock is behind the iterations
    assert schedule_progress(10, cfg, 300.0) == 0.5  # the clock is ahead
    assert schedule_progress(10, cfg, 1e6) == 1.0
    run = tmp_path / "boxed"
    cfg = TrainConfig(run_dir=str(run), datasets=[str(dataset)], iterations=1000, batch_size=2,
                      crop=96, val_fraction=0.0, val_every=1000, max_error_clicks=0,
                      minutes=1e-6, keep_snapshots=True)
    train(cfg, progress=False)
    # the box is over after the first step: it stops there and still leaves a checkpoint
    assert torch.load(run / "last.pt", weights_only=False)["iteration"] == 1
    assert (run / "latest_model.pt").is_file() and (run / "model.pt").is_file()
    assert [p.name for p in (run / "snapshots").iterdir()] == ["it_1.pt"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_training_on_a_gpu_saves_weights_that_load_on_the_cpu(dataset, tmp_path):
    run = tmp_path / "gpu"
    cfg = TrainConfig(run_dir=str(run), datasets=[str(dataset)], iterations=2, batch_size=2,
                      crop=96, val_fraction=0.34, val_every=2, max_error_clicks=1,
                      device="cuda", workers=1, init_weights=str(BUNDLED_WEIGHTS))
    best = train(cfg, progress=False)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert "noc90" in log[-1]  # validation ran on a CPU copy of the GPU model
    assert load_predictor(best, backend="torch").model_version.startswith("cdnet-mnv2-")


def test_boundary_loss_counts_only_errors_near_the_boundary():
    gt = torch.zeros(1, 1, 40, 40)
    gt[..., 10:30, 10:30] = 1
    right = gt * 20 - 10  # confident and correct everywhere
    far_wrong = right.clone()
    far_wrong[..., 18:22, 18:22] = -10  # wrong deep inside the object
    near_wrong = right.clone()
    near_wrong[..., 10:12, 10:30] = -10  # wrong on the boundary's inner rows
    assert boundary_bce(right, gt) < 1e-3
    assert boundary_bce(far_wrong, gt) == pytest.approx(boundary_bce(right, gt))
    assert boundary_bce(near_wrong, gt) > 0.5  # 40 of ~480 band pixels at BCE 10


@pytest.mark.parametrize("trunk", [False, True])
def test_a_fine_head_is_added_to_init_weights_and_trained(dataset, tmp_path, trunk):
    """Without `trunk`: a head grown onto weights without one. With it: the trunk's features
    fed to the head of weights that have one (its zero-started inputs must be trained)."""
    from cdnet.model.io import save_model, with_fine_head

    init = tmp_path / "init.pt"
    base = build_model(pretrained=False)
    save_model(with_fine_head(base) if trunk else base, init)
    run = tmp_path / "run"
    cfg = TrainConfig(run_dir=str(run), datasets=[str(dataset)], iterations=2, batch_size=2,
                      crop=96, val_fraction=0.0, val_every=2, max_error_clicks=1,
                      init_weights=str(init), fine_head=not trunk, fine_trunk=trunk)
    best = train(cfg, progress=False)
    model, _ = load_model(best)
    assert model.fine is not None
    assert model.fine.trunk_channels == (16 if trunk else 0)
    assert torch.count_nonzero(model.fine.out.weight) > 0  # its zero start was trained
    if trunk:  # the pointwise weights reading the trunk's features left their zero start
        assert torch.count_nonzero(model.fine.body[0][3].weight[:, -16:]) > 0


def _two_folders(dataset, tmp_path):
    """The tiny dataset twice, as folders `train_a` and `train_b` (4 images each)."""
    import shutil

    folders = []
    for name in ("train_a", "train_b"):
        for sub in ("images", "masks"):
            shutil.copytree(dataset / sub, tmp_path / name / sub)
        folders.append(tmp_path / name)
    return folders


def test_source_weights_set_each_folders_share_of_the_draws(dataset, tmp_path):
    entries = [e for f in _two_folders(dataset, tmp_path) for e in scan(f)]
    source = SampleSource(entries, 96, {"train_a": 3.0})
    assert np.allclose(source.p[:4], 3 / 16) and np.allclose(source.p[4:], 1 / 16)
    rng = np.random.default_rng(0)
    share_a = np.mean([source._pick(rng, main_object=False) < 4 for _ in range(2000)])
    assert 0.7 < share_a < 0.8, share_a
    only_b = SampleSource(entries, 96, {"train_a": 0.0})
    picks = {only_b._pick(rng, main_object) for main_object in (False, True) for _ in range(200)}
    assert picks <= set(range(4, 8)) and len(picks) > 1
    # a zero-click sample is an image's only object: images 4 and 6 of train_b
    assert {only_b._pick(rng, main_object=True) for _ in range(100)} == {4, 6}
    assert SampleSource(entries, 96).p is None  # no weights: the uniform draw of earlier runs


def test_bad_source_weights_are_refused_with_the_reason(dataset, tmp_path):
    from cdnet.train.cli import parse_source_weights

    entries = [e for f in _two_folders(dataset, tmp_path) for e in scan(f)]
    with pytest.raises(ValueError, match=r"unknown training folder.*train_c"):
        SampleSource(entries, 96, {"train_c": 2.0})
    with pytest.raises(ValueError, match="no image to sample"):
        SampleSource(entries, 96, {"train_a": 0.0, "train_b": 0.0})
    assert parse_source_weights(["train_a=0.5", "x/train_b=2"]) == {"train_a": 0.5,
                                                                   "train_b": 2.0}
    for bad in ("train_a", "train_a=", "train_a=-1", "train_a=inf", "train_a=nan", "=1"):
        with pytest.raises(ValueError, match="FOLDER=W"):
            parse_source_weights([bad])


def test_clicksmith_train_names_an_unknown_weighted_folder_and_exits_2(dataset, tmp_path,
                                                                      capsys):
    from clicksmith.cli import main as clicksmith

    rc = clicksmith(["train", "--run-dir", str(tmp_path / "run"), "--datasets", str(dataset),
                     "--source-weight", "train_nope=2", "--iterations", "1"])
    assert rc == 2
    assert "train_nope" in capsys.readouterr().out


def test_boundary_weight_sets_the_boundary_terms_share_of_the_loss():
    torch.manual_seed(0)
    model = build_model(pretrained=False).eval()
    gt = torch.zeros(2, 1, 64, 64)
    gt[..., 16:48, 20:44] = 1
    clicks = torch.zeros(2, 2, 64, 64)
    clicks[:, 0, 30:34, 30:34] = 1
    prior = torch.zeros(2, 1, 64, 64)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64) * 255, clicks, prior)
    default, parts = cdnet_loss(out, gt, clicks, prior)
    heavier, _ = cdnet_loss(out, gt, clicks, prior, boundary_weight=2.0)
    none, _ = cdnet_loss(out, gt, clicks, prior, boundary_weight=0.0)
    assert parts["boundary"] > 0.1
    assert heavier - default == pytest.approx(1.5 * parts["boundary"], rel=1e-4)
    assert default - none == pytest.approx(0.5 * parts["boundary"], rel=1e-4)


def test_clicksmith_train_refuses_a_bad_boundary_weight(capsys):
    from clicksmith.cli import main as clicksmith

    for bad in ("-1", "inf", "nan", "x"):
        with pytest.raises(SystemExit) as exc:
            clicksmith(["train", "--boundary-weight", bad, "--iterations", "1"])
        assert exc.value.code == 2
        assert "--boundary-weight: expected a finite number >= 0" in capsys.readouterr().err


def test_masks_are_resized_where_the_image_puts_the_boundary():
    from cdnet.train.data import resize_mask_values

    def disk(size, radius):
        yy, xx = np.mgrid[:size, :size]
        c = (size - 1) / 2
        return (yy - c) ** 2 + (xx - c) ** 2 <= radius**2

    # a mask cached at a third of its size, then grown 3x for a crop (as SampleSource does)
    source = disk(120, 36.0).astype(np.uint8) * 255
    cached = resize_mask_values(source, (40, 40))  # coverage, not yet thresholded
    assert 0 < np.count_nonzero((cached > 0) & (cached < 255)) < 200
    grown = resize_mask_values(cached, (120, 120)) > 127
    near = cv2.resize(cv2.resize(source, (40, 40), interpolation=cv2.INTER_NEAREST), (120, 120),
                      interpolation=cv2.INTER_NEAREST) > 127
    ideal = source > 127
    wrong, wrong_near = np.count_nonzero(grown != ideal), np.count_nonzero(near != ideal)
    assert wrong < wrong_near / 3, (wrong, wrong_near)
    assert resize_mask_values(source, (40, 60)).shape == (40, 60)


def test_sampled_crops_are_bool_masks_of_the_crop_size(dataset):
    source = SampleSource(scan(dataset), 96)
    rng = np.random.default_rng(1)
    for _ in range(10):
        img, mask = source.sample(rng)
        assert mask.dtype == bool and mask.shape == img.shape[:2] == (96, 96)
        assert mask.any()


def test_clicksmith_train_passes_the_boundary_weight_to_the_run(dataset, tmp_path):
    from clicksmith.cli import main as clicksmith

    for flag, expected in ((["--boundary-weight", "1.5"], 1.5), ([], TrainConfig.boundary_weight)):
        run = tmp_path / f"run{len(flag)}"
        rc = clicksmith(["train", "--run-dir", str(run), "--datasets", str(dataset),
                         "--iterations", "1", "--batch-size", "2", "--crop", "96",
                         "--val-fraction", "0", "--max-error-clicks", "0", *flag])
        assert rc == 0
        saved = torch.load(run / "last.pt", weights_only=False)["config"]
        assert saved["boundary_weight"] == expected


def test_clicksmith_train_fine_trunk_builds_the_head_that_reads_the_trunk(dataset, tmp_path):
    from clicksmith.cli import main as clicksmith

    run = tmp_path / "run"
    rc = clicksmith(["train", "--run-dir", str(run), "--datasets", str(dataset), "--iterations",
                     "1", "--batch-size", "2", "--crop", "96", "--val-fraction", "0",
                     "--max-error-clicks", "0", "--fine-trunk"])
    assert rc == 0
    model, _ = load_model(run / "latest_model.pt")
    assert model.fine is not None and model.fine.trunk_channels == 16


def test_small_objects_train_where_a_folder_asks_for_them(tmp_path):
    """A 6x6 object (0.2% of 120x160 is 38 pixels) is skipped as label noise by default, and
    sampled from a folder given a minimum of 0 (the retrain job's corrections)."""
    for name in ("train_base", "corrections"):
        (tmp_path / name / "images").mkdir(parents=True)
        (tmp_path / name / "masks").mkdir()
        img = np.full((120, 160, 3), 90, np.uint8)
        mask = np.zeros((120, 160), np.uint8)
        mask[50:56, 70:76] = 255
        img[mask > 0] = 200
        cv2.imwrite(str(tmp_path / name / "images" / "a.png"), img)
        cv2.imwrite(str(tmp_path / name / "masks" / "a.png"), mask)
    entries = [e for name in ("train_base", "corrections") for e in scan(tmp_path / name)]
    source = SampleSource(entries, 64, min_fraction={"corrections": 0.0})
    assert source._get(0)[1] == []  # the base folder's tiny mask: skipped
    assert len(source._get(1)[1]) == 1  # the correction: kept
    rng = np.random.default_rng(0)
    img, gt = source.sample(rng)
    assert img.shape == (64, 64, 3) and 0 < gt.sum() < 64 * 64
    with pytest.raises(ValueError, match="usable mask"):
        SampleSource(entries[:1], 64, min_fraction={"corrections": 0.0}).sample(rng)
