"""The predictor API: results, sessions, progressive locality, priors, sizes, bad input."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from cdnet import Click, SessionState
from cdnet.inference.image import PreparedImage
from cdnet.inference.progressive import regions_of_change
from cdnet.inference.views import View, zoom_view
from tests.conftest import disk_image


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_predict_returns_full_resolution_mask_probs_and_quality(predictor):
    img, gt = disk_image()
    r = predictor.predict(img, clicks=[Click(80, 100)])
    assert r.mask.shape == img.shape[:2] and r.mask.dtype == bool
    assert r.probs.shape == img.shape[:2] and r.probs.dtype == np.float32
    assert np.array_equal(r.mask, r.probs > 0.5)
    assert r.mask[80, 100] and _iou(r.mask, gt) > 0.9  # measured 0.98
    assert abs(r.quality - _iou(r.mask, gt)) < 0.15  # the predicted IoU is an IoU (0.92)
    assert r.disagreement < 0.05  # the heads agree on a clear disk (measured 0.015)


def test_a_negative_click_takes_its_pixel_out_and_quality_follows(predictor):
    img, gt = disk_image()
    s = predictor.session(img)
    s.add_click(Click(80, 100))
    r = s.add_click(Click(80, 130, positive=False))  # inside the disk: the user wants less
    assert not r.mask[80, 130] and r.mask[80, 100]
    assert _iou(r.mask, gt) < 0.9  # it did remove part of the disk (measured 0.78)
    assert abs(r.quality - _iou(r.mask, gt)) < 0.15  # and says so (0.85)


@pytest.mark.parametrize("shape", [(64, 64), (64, 64, 1), (90, 70, 4), (3000, 4000, 3)])
def test_any_size_and_channel_layout(predictor, shape):
    img = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    h, w = shape[:2]
    s = predictor.session(img)
    s.add_click(Click(h // 2, w // 2))
    r = s.add_click(Click(h // 3, w // 3, positive=False))
    assert r.mask.shape == (h, w) and r.probs.shape == (h, w)


def test_large_image_zoom_in_costs_a_crop_not_the_image():
    """From the second click on, the network sees a crop resized to `zoom_size`, whatever the
    image size: a 4000x3000 photo and a 1000x1000 one give inputs of the same scale."""
    mask = np.zeros((3000, 4000), bool)
    mask[1000:1400, 2000:2500] = True
    view = zoom_view(mask, [Click(1200, 2200)], 400)
    assert max(view.out_h, view.out_w) <= 416
    assert (view.y1 - view.y0) < 3000 and (view.x1 - view.x0) < 4000


def test_prior_with_no_clicks_returns_the_prior(predictor):
    img, mask = disk_image()
    prior = np.zeros_like(mask)
    prior[60:100, 70:130] = True
    r = predictor.predict(img, clicks=[], prior_mask=prior)
    assert np.array_equal(r.mask, prior)
    s = predictor.session(img, prior_mask=prior.astype(np.uint8) * 255)
    assert np.array_equal(s.result.mask, prior) and s.clicks == ()


def _components_touching(changed: np.ndarray, click: Click, radius: int,
                         join: int = 0) -> np.ndarray:
    """Changed pixels in regions (gaps under `join` px bridged) that meet the click's disk."""
    k = 2 * join + 1
    grown = cv2.dilate(changed.astype(np.uint8), np.ones((k, k), np.uint8))
    _, labels = cv2.connectedComponents(grown, connectivity=8)
    disk = np.zeros_like(changed)
    cv2.circle(disk.view(np.uint8), (int(click.x), int(click.y)), radius, 1, -1)
    ids = np.unique(labels[disk & changed])
    return np.isin(labels, ids[ids > 0]) & changed


def merge_progressive(previous, proposed, click_yx, radius, join):
    """`previous` with the regions of change that touch the click taken from `proposed`."""
    taken = regions_of_change(previous, proposed, click_yx, radius, join)
    return np.where(taken, proposed, previous)


def test_merge_takes_the_touched_change_and_bridges_small_gaps_only():
    previous = np.zeros((60, 80), bool)
    proposed = previous.copy()
    proposed[20:24, 10:30] = True  # the change under the click
    proposed[20:24, 32:50] = True  # the same correction, broken by a 2-pixel gap
    proposed[50:55, 70:75] = True  # an unrelated change far away
    alone = merge_progressive(previous, proposed, (22, 15), radius=3, join=0)
    assert alone.sum() == 4 * 20 and alone[20:24, 10:30].all()
    joined = merge_progressive(previous, proposed, (22, 15), radius=3, join=3)
    assert joined.sum() == 4 * 20 + 4 * 18 and not joined[50:55, 70:75].any()
    assert not joined[20:24, 30:32].any()  # the gap itself did not change, so it stays
    removed = merge_progressive(proposed, previous, (22, 40), radius=3, join=3)
    assert removed.sum() == 25 and removed[50:55, 70:75].all()  # a negative edit, same rule


@pytest.mark.parametrize("positive", [True, False])
def test_progressive_click_changes_only_the_region_it_touches(predictor, positive):
    img, _ = disk_image(240, 320, 120, 160, 50)
    prior = np.zeros(img.shape[:2], bool)
    prior[20:60, 20:80] = True  # a far-away region fixed earlier (another tool, a pre-label)
    prior[100:140, 140:180] = True
    s = predictor.session(img, prior_mask=prior)
    click = Click(120, 200, positive=positive)
    r = s.add_click(click)
    changed = r.mask != prior
    assert np.array_equal(r.mask[20:60, 20:80], prior[20:60, 20:80])
    px = 1 / min(zoom_view(prior, [click], predictor.zoom_size).scale)
    radius = int(np.ceil(5 * px)) + 1
    join = int(np.ceil(predictor.progressive_join * px))
    allowed = _components_touching(changed, click, radius, join)
    assert not (changed & ~allowed).any(), "pixels changed outside the click's region of change"


def test_progressive_off_is_the_global_academic_behaviour():
    """Off: every pixel of the network's crop is taken (mask == probs > 0.5 everywhere).
    On: the prior's far-away region survives even where the network's crop disagrees."""
    from cdnet import load_predictor

    off = load_predictor(progressive=False)
    img, _ = disk_image(240, 320, 120, 160, 50)
    prior = np.zeros(img.shape[:2], bool)
    prior[100:140, 140:180] = True
    prior[200:230, 20:40] = True
    click = Click(120, 200)
    r_off = off.session(img, prior_mask=prior).add_click(click)
    assert np.array_equal(r_off.mask, r_off.probs > 0.5)
    view = zoom_view(prior, [click], off.zoom_size)
    outside = np.ones_like(prior)
    outside[view.y0 : view.y1, view.x0 : view.x1] = False
    assert np.array_equal(r_off.mask[outside], prior[outside])


def test_session_undo_and_state_round_trip(predictor):
    img, _ = disk_image()
    s = predictor.session(img)
    first = s.add_click(Click(80, 100))
    s.add_click(Click(10, 10, positive=False))
    assert len(s.clicks) == 2
    back = s.undo()
    assert s.clicks == (Click(80, 100),) and np.array_equal(back.mask, first.mask)

    blob = s.state.to_bytes()
    resumed = predictor.session(img, state=SessionState.from_bytes(blob))
    assert resumed.clicks == s.clicks and np.array_equal(resumed.result.mask, first.mask)
    resumed.add_click(Click(20, 150, positive=False))
    assert len(resumed.clicks) == 2
    replayed = resumed.undo()  # a fresh process has no history: undo replays remaining clicks
    assert resumed.clicks == (Click(80, 100),) and replayed.mask.shape == first.mask.shape


def test_box_limits_the_mask(predictor):
    img, _ = disk_image()
    r = predictor.predict(img, box=(40, 60, 120, 140))
    assert not r.mask[:40].any() and not r.mask[120:].any()
    assert not r.mask[:, :60].any() and not r.mask[:, 140:].any()


def test_score_mask_estimates_the_iou_of_any_mask(predictor):
    """The score of a mask follows its true IoU with the object: near it for masks of IoU 1,
    about 0.5 and 0, and in the same order.

    The half disk is the exception at the served score_size (192 px, chosen on held-out
    training objects: benchmarks/results/quality_ranking_score_size.md): 0.77 for a true IoU of
    0.49 (0.50 at 320 px, 0.48 at 256), so it is held only to ranking below the whole disk."""
    img, gt = disk_image()
    half = gt.copy()
    half[:, 100:] = False
    square = np.zeros_like(gt)
    square[30:130, 50:150] = True
    masks = [gt, np.roll(gt, 20, axis=1), half, square, np.zeros_like(gt)]
    true = [_iou(m, gt) for m in masks]  # 1.0, 0.52, 0.49, 0.50, 0.0
    scores = [predictor.score_mask(img, m) for m in masks]  # 192 px: 0.94 .58 .77 .57 .08
    close = [0, 1, 3, 4]
    assert max(abs(scores[i] - true[i]) for i in close) < 0.15, scores
    assert scores[0] == max(scores) and scores[-1] == min(scores)


def test_view_transforms_invert():
    v = View.fit(10, 20, 110, 220, 400)
    assert v.out_w % 16 == 0 and v.out_h % 16 == 0
    (c,) = v.transform_clicks([Click(60, 120)])
    sy, sx = v.scale
    assert abs((c.y + 0.5) / sy - 0.5 + 10 - 60) < 1e-6
    back = v.inv_transform(np.ones((v.out_h, v.out_w), np.float32), np.zeros((200, 300)))
    assert back[10:110, 20:220].all() and back.sum() == 100 * 200


def test_zoomed_view_of_a_large_photo_samples_the_pyramid_like_the_full_image():
    """Reading a crop from a halved level must look like resizing the full-res crop."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    img = cv2.resize(small, (4000, 3000), interpolation=cv2.INTER_LINEAR)  # photo-like detail
    prepared = PreparedImage.of(img)
    for view in (View.fit(0, 0, 3000, 4000, 384), View.fit(700, 1300, 2301, 2901, 400),
                 View.fit(1001, 999, 1250, 1333, 400)):  # the last one: no pyramid needed
        direct = view.transform_image(img).astype(np.float32)
        sampled = view.transform_image(prepared).astype(np.float32)
        assert sampled.shape == direct.shape
        assert np.abs(sampled - direct).mean() < 2.0, view
        # and aligned: a one-pixel shift would differ far more
        assert np.abs(sampled[1:] - direct[:-1]).mean() > 2 * np.abs(sampled - direct).mean()
    assert len(prepared._levels) >= 3  # computed once, kept for the next click


def test_probs_are_built_lazily_and_match_the_mask(predictor):
    img, _ = disk_image()
    s = dataclasses.replace(predictor, progressive=False).session(img)
    s.add_click(Click(100, 100))
    r = s.add_click(Click(60, 60, positive=False))
    assert "probs" not in r.__dict__  # nothing full-resolution computed yet
    assert r.probs.dtype == np.float32 and r.probs.shape == r.mask.shape
    assert np.array_equal(r.probs > 0.5, r.mask)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p, img: p.predict(img.astype(np.int64), [Click(5, 5)]), "dtype"),
        (lambda p, img: p.predict(img[:, :, :2], [Click(5, 5)]), "shape"),
        (lambda p, img: p.predict(np.zeros((0, 10, 3), np.uint8), [Click(0, 0)]), "empty"),
        (lambda p, img: p.predict(img, [Click(500, 5)]), "outside"),
        (lambda p, img: p.predict(img, [Click(-1, 5)]), "outside"),
        (lambda p, img: p.predict(img, [Click(float("nan"), 5)]), "finite"),
        (lambda p, img: p.predict(img, [], prior_mask=np.zeros((10, 10), bool)), "shape"),
        (lambda p, img: p.predict(img, [], box=(500, 500, 600, 600)), "box"),
        (lambda p, img: p.predict(img * 2.0, [Click(5, 5)]), r"\[0, 1\]"),
        (lambda p, img: p.session(img, state=SessionState.from_bytes(b"junk")), "session"),
    ],
)
def test_bad_input_raises_value_error(predictor, call, message):
    img, _ = disk_image()
    with pytest.raises(ValueError, match=message):
        call(predictor, img)


def test_negative_click_far_outside_the_object_box_is_handled(predictor):
    """Regression: a negative click outside the zoom box of mask + positive clicks used to
    index outside the crop in the progressive merge."""
    img, _ = disk_image(300, 400, 60, 60, 30)
    prior = np.zeros(img.shape[:2], bool)
    prior[40:80, 40:80] = True
    prior[250:270, 350:370] = True  # a stray blob far away
    s = predictor.session(img, prior_mask=prior)
    s.add_click(Click(60, 60))
    r = s.add_click(Click(290, 395, positive=False))  # beyond every box so far
    assert r.mask.shape == prior.shape
    view = zoom_view(prior, [Click(60, 60), Click(290, 395, positive=False)], predictor.zoom_size)
    assert view.y0 <= 290 < view.y1 and view.x0 <= 395 < view.x1


@pytest.mark.parametrize("crop", [(0, 0, 300, 400), (37, 51, 2537, 3051), (5, 9, 61, 45)])
def test_a_region_of_the_crop_probabilities_is_computed_alone(crop):
    """Local refinement upsamples only the corrected region: it must be the same numbers as
    the region of the whole crop's upsampling, and its spans must map onto network pixels."""
    view = View.fit(*crop, 400)
    probs = np.random.default_rng(0).random((view.out_h, view.out_w), dtype=np.float32)
    whole = view.crop_probs(probs)
    h, w = whole.shape
    for rows, cols in ((slice(0, h), slice(0, w)), (slice(h // 3, h // 2), slice(1, w - 1))):
        region = view.crop_probs_region(probs, rows, cols)
        assert region.shape == whole[rows, cols].shape
        assert np.abs(region - whole[rows, cols]).max() < 1e-5
    small = np.zeros((view.out_h, view.out_w), bool)
    small[10:20, 30:45] = True
    rows, cols = view.crop_span(10, 20, 0), view.crop_span(30, 45, 1)
    # crop pixels whose centre falls in those network pixels
    ys = np.nonzero(np.isin(((np.arange(h) + 0.5) * view.scale[0]).astype(int), range(10, 20)))[0]
    xs = np.nonzero(np.isin(((np.arange(w) + 0.5) * view.scale[1]).astype(int), range(30, 45)))[0]
    assert (rows.start, rows.stop, cols.start, cols.stop) == (ys.min(), ys.max() + 1,
                                                              xs.min(), xs.max() + 1)
    assert view.crop_nearest(small, rows, cols).all()


def test_a_region_between_crop_pixels_is_empty_not_an_error():
    """A project's small frames show a crop smaller than the network frame (48 px seen at
    320): a region of change between two crop pixels' centres holds no crop pixel. Seen in the
    adaptation benchmark: cv2.resize raised on the empty band and the click failed."""
    view = View.fit(100, 100, 148, 148, 320)
    probs = np.random.default_rng(0).random((view.out_h, view.out_w), dtype=np.float32)
    rows, cols = view.crop_span(0, 3, 0), view.crop_span(0, 3, 1)  # before the first centre
    assert rows.start == rows.stop and cols.start == cols.stop
    for r, c in ((rows, cols), (rows, slice(0, 10)), (slice(0, 10), cols)):
        region = view.crop_probs_region(probs, r, c)
        assert region.shape == view.crop_probs(probs)[r, c].shape
        assert region.shape == view.crop_nearest(probs, r, c).shape


def test_a_click_on_a_large_photo_changes_only_its_region_of_change(predictor):
    """4000x3000, where regions are found in the network frame and applied at full
    resolution: the far-away prior survives and every changed pixel is in a region of change
    that touches the click (at the scale of the view)."""
    img, _ = disk_image(3000, 4000, 1500, 2000, 500)
    prior = np.zeros(img.shape[:2], bool)
    prior[200:600, 200:800] = True
    prior[1200:1800, 1700:2300] = True
    s = predictor.session(img, prior_mask=prior)
    click = Click(1500, 2450)
    r = s.add_click(click)
    changed = r.mask != prior
    assert changed.any() and np.array_equal(r.mask[200:600, 200:800], prior[200:600, 200:800])
    px = 1 / min(zoom_view(prior, [click], predictor.zoom_size).scale)
    radius = int(np.ceil(5 * px)) + int(np.ceil(px))
    join = int(np.ceil((predictor.progressive_join + 1) * px))
    allowed = _components_touching(changed, click, radius, join)
    assert not (changed & ~allowed).any(), "pixels changed outside the click's region of change"


def test_a_zoomed_out_views_mask_coverage_is_sampled_close_to_the_area_average():
    """A crop over twice the frame is sampled at 2x2 points per network pixel: within a
    quarter of the exact area coverage at the edge, equal inside and outside the object."""
    mask = np.zeros((3000, 4000), np.uint8)
    cv2.circle(mask, (1650, 1500), 900, 1, -1)
    mask = mask.astype(bool)
    view = View.fit(100, 200, 2600, 2700, 400)
    exact = cv2.resize(view.crop(mask).astype(np.float32), (view.out_w, view.out_h),
                       interpolation=cv2.INTER_AREA)
    got = view.transform_mask(mask)
    assert got.dtype == np.float32 and got.shape == exact.shape
    assert np.abs(got - exact).max() <= 0.26 and np.abs(got - exact).mean() < 2e-3
    assert np.array_equal(got[(exact == 0) | (exact == 1)], exact[(exact == 0) | (exact == 1)])


def test_a_views_box_mask_is_the_crop_of_the_full_box_mask():
    from cdnet.inference.views import box_mask

    view = View.fit(40, 30, 140, 230, 400)
    for box in ((50.2, 20.0, 90.7, 100.1), (0.0, 0.0, 300.0, 400.0), (150.0, 10.0, 160.0, 20.0)):
        assert np.array_equal(view.box_mask(box), view.crop(box_mask(box, (300, 400))))


def test_flip_averaging_is_exactly_mirror_equivariant_and_still_segments():
    """Averaging with the mirrored view makes the runner mirror-equivariant: mirrored inputs
    give the mirrored answer. A flip forgotten on any input or output breaks this, and the
    shipped network alone is not equivariant (so the check can fail)."""
    from cdnet import load_predictor
    from cdnet.inference.runner import FlipAveraged
    from cdnet.model.encoding import click_maps

    network_alone = load_predictor(backend="torch", flip=False)

    img, gt = disk_image(128, 160, cy=60, cx=60, r=30)
    clicks = click_maps([Click(60, 60), Click(100, 140, positive=False)], 128, 160)
    prior = np.zeros((128, 160), np.float32)
    prior[40:80, 30:70] = 1

    def mirrored(image, clicks, prior):  # image (H, W, 3), clicks (2, H, W), prior (H, W)
        return (np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(clicks[..., ::-1]),
                np.ascontiguousarray(prior[:, ::-1]))

    plain, flip = network_alone.runner, FlipAveraged(network_alone.runner)
    a = flip(img, clicks, prior)
    b = flip(*mirrored(img, clicks, prior))
    np.testing.assert_allclose(b.probs, a.probs[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(b.head_probs, a.head_probs[..., ::-1], atol=1e-5)
    np.testing.assert_allclose(b.quality, a.quality, atol=1e-6)
    p, q = plain(img, clicks, prior), plain(*mirrored(img, clicks, prior))
    assert np.abs(q.probs - p.probs[:, ::-1]).max() > 1e-3  # the network alone is not

    both = dataclasses.replace(network_alone, runner=flip)
    mask = both.predict(img, [Click(60, 60)]).mask
    assert flip.name == "torch+flip"
    assert (mask & gt).sum() / (mask | gt).sum() > 0.8
