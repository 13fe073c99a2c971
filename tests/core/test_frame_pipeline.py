"""The predictor's frame logic, pinned: bit-for-bit what it answered before the frame pipeline.

Every case below plays a fixed interaction (first click on the whole image, first click in a
box, a box with only negative clicks, later clicks, a prior, zero clicks with and without a
box, `score_mask`, a resumed session, a zoomed-out photo) with test-time flip on and off and
progressive refinement on and off. Its outputs (masks, full-resolution probabilities,
qualities, disagreements, serialised states) are digested and compared with digests recorded
from the code as it was before the frame logic moved into `cdnet.inference.frame` (commit
d85941d). A digest covers the exact bytes: any change, even one float ulp, fails it.

The digests are a function of the frame logic *and* of the network's own numbers. Those
depend on the weights, the runtime and the CPU's kernels, so the network is fingerprinted on a
fixed input first; where its numbers differ from the recording machine's, the digests cannot
tell anything and the test says so (skip) instead of failing on the network. The cost checks
(network runs, full-resolution mappings per case: never more than at d85941d) do not depend on
the numbers and always run.

To re-record after an intended change of behaviour: `python -m tests.core.test_frame_pipeline`
prints the table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import zlib
from collections import Counter
from contextlib import contextmanager
from functools import cache

import cv2
import numpy as np
import pytest

from cdnet import Click, SessionState
from cdnet.inference.runner import FlipAveraged
from cdnet.inference.views import View
from cdnet.model.encoding import click_maps
from tests.conftest import DATASETS, disk_image

PHOTO = "106024"  # a GrabCut photo, 321x481, with its ground truth


class CountingRunner:
    """The network, counted: every call is one network run."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    def __call__(self, image, clicks, prior):
        self.calls += 1
        return self.inner(image, clicks, prior)


# the View primitives that map between the photo and the network frame: their call counts are
# the per-click cost that does not show as network runs (full-resolution pastes, upsamplings)
VIEW_PRIMITIVES = ("transform_image", "transform_mask", "crop_probs", "crop_probs_region",
                   "crop_nearest", "paste", "paste_probs")


_COUNTERS: list[Counter] = []  # the innermost `counting_view_calls` counts


def _counted(name: str, fn):
    def call(*args, **kwargs):
        if _COUNTERS:
            _COUNTERS[-1][name] += 1
        return fn(*args, **kwargs)
    return call


@contextmanager
def counting_view_calls():
    """Counts of the View primitives called inside the block, also through methods bound
    before it (a lazy `partial(view.paste_probs, ...)` counts where it runs)."""
    saved = {name: View.__dict__[name] for name in VIEW_PRIMITIVES}
    _COUNTERS.append(Counter())
    try:
        for name, fn in saved.items():
            setattr(View, name, _counted(name, fn))
        yield _COUNTERS[-1]
    finally:
        _COUNTERS.pop()
        for name, fn in saved.items():
            setattr(View, name, fn)


def _network(predictor):
    return predictor.runner.inner if isinstance(predictor.runner, FlipAveraged) \
        else predictor.runner


@cache
def _images() -> dict:
    disk, disk_gt = disk_image()
    pair, pair_gt = disk_image(240, 320, 120, 160, 50)
    second = np.zeros(pair_gt.shape, np.uint8)
    cv2.circle(second, (260, 60), 30, 1, -1)
    pair[second.astype(bool)] = (220, 180, 60)  # a second object of the same colour
    large, large_gt = disk_image(1800, 2400, 900, 1200, 400)
    return {"disk": (disk, disk_gt), "pair": (pair, pair_gt), "large": (large, large_gt)}


def _photo():
    folder = DATASETS / "grabcut"
    if not (folder / "images" / f"{PHOTO}.jpg").is_file():
        pytest.skip(f"the GrabCut photo {PHOTO} is absent ({folder})")
    img = cv2.imread(str(folder / "images" / f"{PHOTO}.jpg"))[:, :, ::-1]
    gt = cv2.imread(str(folder / "masks" / f"{PHOTO}.png"), cv2.IMREAD_GRAYSCALE) > 127
    return np.ascontiguousarray(img), gt


# --- the interactions ---------------------------------------------------------------------
# Each returns its outputs in order: Results, SessionStates and floats (score_mask).

BOX = (60.0, 100.0, 150.5, 200.25)  # cuts the big disk of the pair, leaves the small one out


def whole_first(p, im):
    img, _ = im["pair"]
    s = p.session(img)
    out = [s.add_click(Click(120, 160)), s.add_click(Click(120, 215)),
           s.add_click(Click(60, 260, positive=False)), s.add_click(Click(200, 160, False))]
    return out + [s.state]


def box_first(p, im):
    img, _ = im["pair"]
    s = p.session(img, box=BOX)
    out = [s.add_click(Click(120, 160)), s.add_click(Click(70, 110, positive=False)),
           s.add_click(Click(120, 195))]
    return out + [s.state]


def box_negative_only(p, im):
    """No positive click: the box's centre is the implied one, on every click until a positive
    one comes."""
    img, _ = im["pair"]
    s = p.session(img, box=BOX)
    out = [s.add_click(Click(65, 105, positive=False)),
           s.add_click(Click(145, 195, positive=False)), s.add_click(Click(120, 160))]
    return out + [s.state]


def with_prior(p, im):
    img, _ = im["pair"]
    prior = np.zeros(img.shape[:2], bool)
    prior[20:60, 20:80] = True
    prior[100:140, 140:180] = True
    s = p.session(img, prior_mask=prior)
    out = [s.state, s.add_click(Click(120, 200)), s.add_click(Click(30, 40, positive=False))]
    return out + [s.state]


def with_prior_and_box(p, im):
    img, _ = im["pair"]
    prior = np.zeros(img.shape[:2], bool)
    prior[40:200, 80:300] = True  # spills out of the box
    s = p.session(img, prior_mask=prior, box=BOX)
    out = [s.state, s.add_click(Click(120, 160)), s.add_click(Click(150, 220, positive=False))]
    return out + [s.state]


def empty_prior(p, im):
    img, _ = im["disk"]
    s = p.session(img, prior_mask=np.zeros(img.shape[:2], bool))
    return [s.state, s.add_click(Click(80, 100)), s.add_click(Click(80, 150, False)), s.state]


def zero_click(p, im):
    pair, _ = im["pair"]
    disk, _ = im["disk"]
    return [p.predict(pair), p.predict(pair, box=BOX),
            p.predict(disk, box=(-10, -5, 100.5, 120.25))]  # a box partly outside the image


def score_mask(p, im):
    img, gt = im["pair"]
    partial = gt.copy()
    partial[:, 160:] = False
    return [p.score_mask(img, gt), p.score_mask(img, np.zeros_like(gt)),
            p.score_mask(img, partial), p.score_mask(*im["large"])]


def resumed(p, im):
    img, _ = im["pair"]
    s = p.session(img, box=BOX)
    s.add_click(Click(120, 160))
    blob = s.state.to_bytes()
    again = p.session(img, state=SessionState.from_bytes(blob))
    r = again.add_click(Click(100, 120, positive=False))
    return [s.state, r, again.undo(), again.state]


def large(p, im):
    """A zoomed-out crop: pyramid levels, sampled mask coverage, region-only upsampling."""
    img, _ = im["large"]
    prior = np.zeros(img.shape[:2], bool)
    prior[100:400, 100:500] = True
    s = p.session(img, prior_mask=prior)
    out = [s.add_click(Click(900, 1200)), s.add_click(Click(900, 1650, positive=False)),
           s.add_click(Click(520, 1200))]
    return out + [s.state]


def photo(p, im):
    img, _ = im["photo"]
    s = p.session(img)
    # the standard clicker's first clicks on this photo, then a negative one of our own
    out = [s.add_click(Click(210, 230)), s.add_click(Click(256, 271)),
           s.add_click(Click(100, 400, positive=False))]
    return out + [s.state]


def photo_box(p, im):
    img, gt = im["photo"]
    ys, xs = np.nonzero(gt)
    s = p.session(img, box=(ys.min() - 3, xs.min() - 3, ys.max() + 4, xs.max() + 4))
    out = [s.add_click(Click(210, 230)), s.add_click(Click(297, 236))]
    return out + [s.state, p.predict(img, box=s.state.box)]


SCENARIOS = {f.__name__: f for f in (
    whole_first, box_first, box_negative_only, with_prior, with_prior_and_box, empty_prior,
    zero_click, score_mask, resumed, large, photo, photo_box)}
VARIANTS = {"flip": (True, True), "flip-global": (True, False), "plain": (False, True),
            "plain-global": (False, False)}  # (flip, progressive)
CASES = [f"{s}/{v}" for s in SCENARIOS for v in VARIANTS]


def _digest(outputs) -> tuple[str, str]:
    """A digest of every byte of the outputs, and a readable summary (areas, qualities)."""
    h = hashlib.sha1()
    summary = []
    for o in outputs:
        if isinstance(o, SessionState):
            h.update(zlib.decompress(o.to_bytes()))
            summary.append(f"s{int(o.mask.sum())}")
        elif isinstance(o, float):
            h.update(struct.pack("<d", o))
            summary.append(f"q{o:.4f}")
        else:
            h.update(np.packbits(o.mask).tobytes())
            h.update(np.ascontiguousarray(o.probs).tobytes())
            h.update(struct.pack("<dd", o.quality, o.disagreement))
            summary.append(f"{int(o.mask.sum())}@{o.quality:.4f}")
    return h.hexdigest()[:16], " ".join(summary)


@cache
def _played(case: str, predictor) -> tuple[str, str, str]:
    """(digest, summary, cost) of one case. Cost: network runs, then the View primitives
    called while clicking, then those that building the full-resolution probabilities adds."""
    scenario, variant = case.split("/")
    flip, progressive = VARIANTS[variant]
    counter = CountingRunner(_network(predictor))
    # score_size 320: score_mask's view when the digests were recorded (the zoom size then);
    # drop_far off: the frame logic as recorded (dropping far pieces came later, tested apart)
    p = dataclasses.replace(predictor, runner=FlipAveraged(counter) if flip else counter,
                            progressive=progressive, score_size=320, drop_far="off")
    im = _images()
    if scenario.startswith("photo"):
        im = {**im, "photo": _photo()}
    with counting_view_calls() as eager:
        outputs = SCENARIOS[scenario](p, im)
    runs = counter.calls
    with counting_view_calls() as lazy:
        digest, summary = _digest(outputs)
    assert counter.calls == runs  # digesting runs nothing
    cost = f"runs={runs} " + " ".join(f"{k}={eager[k]}" for k in VIEW_PRIMITIVES if eager[k])
    cost += " | probs: " + " ".join(f"{k}={lazy[k]}" for k in VIEW_PRIMITIVES if lazy[k])
    return digest, summary, cost


@cache
def _fingerprint(predictor) -> str:
    """The network's own numbers on a fixed input (whatever the frame logic does)."""
    img, _ = disk_image(128, 160, 60, 70, 30)
    maps = click_maps([Click(60, 70), Click(100, 140, positive=False)], 128, 160)
    prior = np.zeros((128, 160), np.float32)
    prior[40:80, 50:90] = 1
    out = _network(predictor)(img, maps, prior)
    h = hashlib.sha1(predictor.model_version.encode())
    for a in out:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# --- recorded with the code at d85941d: the bundled ONNX file on onnxruntime 1.32.0, x86-64 -----
NETWORK_FINGERPRINT = '0400ddf6ffff885b'
EXPECTED: dict[str, tuple[str, str, str]] = {
    'whole_first/flip': (
        'ac45a3485b83dc28', '7914@0.9249 7983@0.9477 7983@0.9478 7983@0.9506 s7983',
        'runs=8 transform_image=4 transform_mask=4 crop_probs=1 crop_probs_region=3 '
        'crop_nearest=3 paste=1 | probs: crop_probs=3 paste_probs=4'),
    'whole_first/flip-global': (
        'd31d4517623d8ba7', '7914@0.9249 7983@0.9477 7981@0.9478 7994@0.9500 s7994',
        'runs=8 transform_image=4 transform_mask=4 crop_probs=4 paste=4 | probs: paste_probs=4'),
    'whole_first/plain': (
        '100a870f4796d050', '7925@0.9244 7976@0.9527 7976@0.9468 7976@0.9531 s7976',
        'runs=4 transform_image=4 transform_mask=4 crop_probs=1 crop_probs_region=3 '
        'crop_nearest=3 paste=1 | probs: crop_probs=3 paste_probs=4'),
    'whole_first/plain-global': (
        '6ba6c79c8f7ebac5', '7925@0.9244 7976@0.9527 7990@0.9468 7986@0.9523 s7986',
        'runs=4 transform_image=4 transform_mask=4 crop_probs=4 paste=4 | probs: paste_probs=4'),
    'box_first/flip': (
        '387386d63eac6d8c', '6390@0.9263 6390@0.9201 6390@0.9214 s6390',
        'runs=6 transform_image=3 transform_mask=3 crop_probs=1 crop_probs_region=2 '
        'crop_nearest=2 paste=1 | probs: crop_probs=2 paste_probs=3'),
    'box_first/flip-global': (
        '2d7dcd81c6329711', '6390@0.9263 6388@0.9201 6380@0.9214 s6380',
        'runs=6 transform_image=3 transform_mask=3 crop_probs=3 paste=3 | probs: paste_probs=3'),
    'box_first/plain': (
        'c834a968c143b716', '6392@0.9294 6392@0.9187 6392@0.9206 s6392',
        'runs=3 transform_image=3 transform_mask=3 crop_probs=1 crop_probs_region=2 '
        'crop_nearest=2 paste=1 | probs: crop_probs=2 paste_probs=3'),
    'box_first/plain-global': (
        'dbc407011a382251', '6392@0.9294 6385@0.9187 6376@0.9204 s6376',
        'runs=3 transform_image=3 transform_mask=3 crop_probs=3 paste=3 | probs: paste_probs=3'),
    'box_negative_only/flip': (
        '6cfa7afaba8dc7bf', '6396@0.9103 6186@0.9164 6186@0.9359 s6186',
        'runs=6 transform_image=3 transform_mask=3 crop_probs=1 crop_probs_region=2 '
        'crop_nearest=2 paste=1 | probs: crop_probs=2 paste_probs=3'),
    'box_negative_only/flip-global': (
        'f12f8425ec10d59a', '6396@0.9103 6185@0.9164 6119@0.9359 s6119',
        'runs=6 transform_image=3 transform_mask=3 crop_probs=3 paste=3 | probs: paste_probs=3'),
    'box_negative_only/plain': (
        '29fad276b71f9d65', '6396@0.9153 6167@0.9174 6167@0.9373 s6167',
        'runs=3 transform_image=3 transform_mask=3 crop_probs=1 crop_probs_region=2 '
        'crop_nearest=2 paste=1 | probs: crop_probs=2 paste_probs=3'),
    'box_negative_only/plain-global': (
        '95651e5a8cd22599', '6396@0.9153 6166@0.9174 6104@0.9373 s6104',
        'runs=3 transform_image=3 transform_mask=3 crop_probs=3 paste=3 | probs: paste_probs=3'),
    'with_prior/flip': (
        '80528fe1e136f32c', 's4000 10349@0.9102 7949@0.9406 s7949',
        'runs=5 transform_image=3 transform_mask=3 crop_probs_region=2 crop_nearest=2 | '
        'probs: crop_probs=2 paste_probs=2'),
    'with_prior/flip-global': (
        '2fd2f96969e68203', 's4000 7949@0.9102 7950@0.9525 s7950',
        'runs=5 transform_image=3 transform_mask=3 crop_probs=2 paste=2 | probs: paste_probs=2'),
    'with_prior/plain': (
        'dc6fc1a525f3722f', 's4000 10370@0.9067 7970@0.9404 s7970',
        'runs=3 transform_image=3 transform_mask=3 crop_probs_region=2 crop_nearest=2 | '
        'probs: crop_probs=2 paste_probs=2'),
    'with_prior/plain-global': (
        'f8031f3562b60208', 's4000 7970@0.9067 7959@0.9517 s7959',
        'runs=3 transform_image=3 transform_mask=3 crop_probs=2 paste=2 | probs: paste_probs=2'),
    'with_prior_and_box/flip': (
        'e8ad8da68e1f3598', 's35200 35200@0.7670 6532@0.5389 s6532',
        'runs=5 transform_image=3 transform_mask=3 crop_probs_region=2 crop_nearest=2 | '
        'probs: crop_probs=2 paste_probs=2'),
    'with_prior_and_box/flip-global': (
        '9362e1fb8f99f020', 's35200 6768@0.7670 6383@0.9199 s6383',
        'runs=5 transform_image=3 transform_mask=3 crop_probs=2 paste=2 | probs: paste_probs=2'),
    'with_prior_and_box/plain': (
        'd7f54b0ea148635a', 's35200 35200@0.7696 6740@0.5006 s6740',
        'runs=3 transform_image=3 transform_mask=3 crop_probs_region=2 crop_nearest=2 | '
        'probs: crop_probs=2 paste_probs=2'),
    'with_prior_and_box/plain-global': (
        '972c98ed0fbdf346', 's35200 7024@0.7696 6389@0.9253 s6389',
        'runs=3 transform_image=3 transform_mask=3 crop_probs=2 paste=2 | probs: paste_probs=2'),
    'empty_prior/flip': (
        'a6389e32ca4f44ee', 's0 5062@0.9238 5062@0.9527 s5062',
        'runs=5 transform_image=1 transform_mask=3 crop_probs=1 crop_probs_region=1 '
        'crop_nearest=1 paste=1 | probs: crop_probs=1 paste_probs=2'),
    'empty_prior/flip-global': (
        '4c97ac40a7b628b1', 's0 5062@0.9238 5080@0.9527 s5080',
        'runs=5 transform_image=1 transform_mask=3 crop_probs=2 paste=2 | probs: paste_probs=2'),
    'empty_prior/plain': (
        '0239de46f5a985f7', 's0 5062@0.9229 5062@0.9529 s5062',
        'runs=3 transform_image=1 transform_mask=3 crop_probs=1 crop_probs_region=1 '
        'crop_nearest=1 paste=1 | probs: crop_probs=1 paste_probs=2'),
    'empty_prior/plain-global': (
        '1f3a3ab65daa6e60', 's0 5062@0.9229 5073@0.9529 s5073',
        'runs=3 transform_image=1 transform_mask=3 crop_probs=2 paste=2 | probs: paste_probs=2'),
    'zero_click/flip': (
        'aa5c38d513381377', '8022@0.8863 6390@0.9187 4722@0.5843',
        'runs=6 transform_image=3 transform_mask=2 crop_probs=3 paste=2 paste_probs=1 | '
        'probs: paste_probs=2'),
    'zero_click/flip-global': (
        'aa5c38d513381377', '8022@0.8863 6390@0.9187 4722@0.5843',
        'runs=6 transform_image=3 transform_mask=2 crop_probs=3 paste=2 paste_probs=1 | '
        'probs: paste_probs=2'),
    'zero_click/plain': (
        '6e4f867dbfa7f4f1', '8044@0.8945 6389@0.9199 4363@0.5525',
        'runs=3 transform_image=3 transform_mask=2 crop_probs=3 paste=2 paste_probs=1 | '
        'probs: paste_probs=2'),
    'zero_click/plain-global': (
        '6e4f867dbfa7f4f1', '8044@0.8945 6389@0.9199 4363@0.5525',
        'runs=3 transform_image=3 transform_mask=2 crop_probs=3 paste=2 paste_probs=1 | '
        'probs: paste_probs=2'),
    'score_mask/flip': (
        '7c41426f3f74616f', 'q0.9320 q0.0098 q0.6257 q0.9290',
        'runs=4 transform_image=4 transform_mask=4 | probs: '),
    'score_mask/flip-global': (
        '7c41426f3f74616f', 'q0.9320 q0.0098 q0.6257 q0.9290',
        'runs=4 transform_image=4 transform_mask=4 | probs: '),
    'score_mask/plain': (
        '7c41426f3f74616f', 'q0.9320 q0.0098 q0.6257 q0.9290',
        'runs=4 transform_image=4 transform_mask=4 | probs: '),
    'score_mask/plain-global': (
        '7c41426f3f74616f', 'q0.9320 q0.0098 q0.6257 q0.9290',
        'runs=4 transform_image=4 transform_mask=4 | probs: '),
    'resumed/flip': (
        '1507453e9000fc8e', 's6390 6141@0.8853 6390@0.9263 s6390',
        'runs=4 transform_image=2 transform_mask=2 crop_probs=1 crop_probs_region=1 '
        'crop_nearest=1 paste=1 | probs: crop_probs=1 paste_probs=1'),
    'resumed/flip-global': (
        '1507453e9000fc8e', 's6390 6141@0.8853 6390@0.9263 s6390',
        'runs=4 transform_image=2 transform_mask=2 crop_probs=2 paste=2 | probs: paste_probs=1'),
    'resumed/plain': (
        '1a7065e2bc5d5a10', 's6392 5959@0.8797 6392@0.9294 s6392',
        'runs=2 transform_image=2 transform_mask=2 crop_probs=1 crop_probs_region=1 '
        'crop_nearest=1 paste=1 | probs: crop_probs=1 paste_probs=1'),
    'resumed/plain-global': (
        'bd02bfda9051adb6', 's6392 5958@0.8797 6392@0.9294 s6392',
        'runs=2 transform_image=2 transform_mask=2 crop_probs=2 paste=2 | probs: paste_probs=1'),
    'large/flip': (
        '14263eed2332aadf', '522513@0.8446 522513@0.8591 628640@0.8881 s628640',
        'runs=7 transform_image=4 transform_mask=4 crop_probs_region=3 crop_nearest=3 | '
        'probs: crop_probs=3 paste_probs=3'),
    'large/flip-global': (
        '3fdcba9e062ea9f6', '477593@0.8446 509167@0.9183 507084@0.9535 s507084',
        'runs=7 transform_image=4 transform_mask=4 crop_probs=3 paste=3 | probs: paste_probs=3'),
    'large/plain': (
        'a661b3e50baadc83', '522498@0.8287 522498@0.8608 628641@0.8864 s628641',
        'runs=4 transform_image=4 transform_mask=4 crop_probs_region=3 crop_nearest=3 | '
        'probs: crop_probs=3 paste_probs=3'),
    'large/plain-global': (
        '01fb879c53edbc18', '478084@0.8287 508196@0.9119 506982@0.9532 s506982',
        'runs=4 transform_image=4 transform_mask=4 crop_probs=3 paste=3 | probs: paste_probs=3'),
    'photo/flip': (
        'a097f869847dda01', '12648@0.8522 13023@0.9213 13023@0.9184 s13023',
        'runs=6 transform_image=3 transform_mask=3 crop_probs=1 crop_probs_region=2 '
        'crop_nearest=2 paste=1 | probs: crop_probs=2 paste_probs=3'),
    'photo/flip-global': (
        'c111ed10083aea6d', '12648@0.8522 13027@0.9213 13133@0.9185 s13133',
        'runs=6 transform_image=3 transform_mask=3 crop_probs=3 paste=3 | probs: paste_probs=3'),
    'photo/plain': (
        '00cedefccf62a0b5', '12679@0.8509 13136@0.9143 13136@0.9152 s13136',
        'runs=3 transform_image=3 transform_mask=3 crop_probs=1 crop_probs_region=2 '
        'crop_nearest=2 paste=1 | probs: crop_probs=2 paste_probs=3'),
    'photo/plain-global': (
        '187ef3a41fc51dd5', '12679@0.8509 13138@0.9143 13311@0.9151 s13311',
        'runs=3 transform_image=3 transform_mask=3 crop_probs=3 paste=3 | probs: paste_probs=3'),
    'photo_box/flip': (
        '759b8c76bc23c1d5', '12472@0.8577 12799@0.9192 s12799 12731@0.8058',
        'runs=6 transform_image=3 transform_mask=3 crop_probs=2 crop_probs_region=1 '
        'crop_nearest=1 paste=2 | probs: crop_probs=1 paste_probs=3'),
    'photo_box/flip-global': (
        'fd43e9eab0b679e8', '12472@0.8577 12830@0.9192 s12830 12731@0.8058',
        'runs=6 transform_image=3 transform_mask=3 crop_probs=3 paste=3 | probs: paste_probs=3'),
    'photo_box/plain': (
        '67fc1e9191651f1e', '12353@0.8500 12855@0.9180 s12855 12683@0.8206',
        'runs=3 transform_image=3 transform_mask=3 crop_probs=2 crop_probs_region=1 '
        'crop_nearest=1 paste=2 | probs: crop_probs=1 paste_probs=3'),
    'photo_box/plain-global': (
        '032b3312e77ffdf6', '12353@0.8500 12878@0.9180 s12878 12683@0.8206',
        'runs=3 transform_image=3 transform_mask=3 crop_probs=3 paste=3 | probs: paste_probs=3'),
}


# Since issue 30 score_mask never runs test-time flip (one plain run: the score_mask/flip
# digests above are the plain ones, the same runs). With flip on, a session started from a
# prior scores it that way too, so these cases answer otherwise than recorded at d85941d; their
# digests can only be re-recorded where the network's numbers match the recording machine's.
NOT_RERECORDED = {f"{s}/{v}" for s in ("with_prior", "with_prior_and_box", "empty_prior",
                                       "large") for v in ("flip", "flip-global")}


@pytest.mark.parametrize("case", CASES)
def test_the_frame_logic_answers_as_recorded(case, predictor):
    if case in NOT_RERECORDED:
        pytest.skip("the prior's score now runs without flip: digest not re-recorded "
                    "(NOT_RERECORDED)")
    if _fingerprint(predictor) != NETWORK_FINGERPRINT:
        pytest.skip(f"the network's own numbers differ here (fingerprint "
                    f"{_fingerprint(predictor)}, recorded {NETWORK_FINGERPRINT}): the digests "
                    "were recorded with other weights, runtime or CPU kernels")
    digest, summary, _ = _played(case, predictor)
    want_digest, want_summary, _ = EXPECTED[case]
    assert (digest, summary) == (want_digest, want_summary)


@pytest.mark.parametrize("case", CASES)
def test_no_interaction_costs_more_than_recorded(case, predictor):
    """The same network runs (one a click, two with flip) and no more full-resolution
    mappings per case, whether clicking or building the probabilities afterwards."""

    def counts(cost: str) -> tuple[Counter, Counter]:
        clicking, _, probs = cost.partition(" | probs:")
        return tuple(Counter({k: int(v) for k, v in (kv.split("=") for kv in part.split())})
                     for part in (clicking, probs))

    (now, now_probs), (then, then_probs) = counts(_played(case, predictor)[2]), \
        counts(EXPECTED[case][2])
    assert now["runs"] == then["runs"]
    assert now <= then and now_probs <= then_probs, (now, now_probs)


if __name__ == "__main__":  # print the table to record
    from cdnet import load_predictor

    pred = load_predictor()
    print(f"NETWORK_FINGERPRINT = {_fingerprint(pred)!r}")
    print("EXPECTED: dict[str, tuple[str, str, str]] = {")
    for c in CASES:
        print(f"    {c!r}: {_played(c, pred)!r},")
    print("}")
