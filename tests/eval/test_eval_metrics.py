"""NoC arithmetic on fabricated IoU sequences and IoU with an ignore band."""

import numpy as np
import pytest

from cdnet.eval.metrics import iou, noc, pad_curve, paired_difference, summarize


def test_noc_is_the_first_click_reaching_the_threshold():
    ious = [0.5, 0.84, 0.86, 0.89, 0.90, 0.95]
    assert noc(ious, 0.85) == 3
    assert noc(ious, 0.90) == 5  # reaching exactly the threshold counts
    assert noc([0.95], 0.90) == 1


def test_noc_is_max_clicks_when_never_reached_within_them():
    assert noc([0.5] * 20, 0.85) == 20
    assert noc([0.1, 0.2], 0.9) == 20  # a short run that never reached: still 20
    assert noc([0.5] * 20 + [0.99], 0.9) == 20  # click 21 does not count
    assert noc([0.5, 0.5, 0.95], 0.9, max_clicks=2) == 2


def test_pad_curve_keeps_the_last_iou():
    assert pad_curve([0.3, 0.92], 5) == [0.3, 0.92, 0.92, 0.92, 0.92]
    with pytest.raises(ValueError):
        pad_curve([], 5)


def test_summarize_fabricated_sequences():
    seqs = [
        [0.91],  # NoC85 1, NoC90 1
        [0.6, 0.87, 0.93],  # NoC85 2, NoC90 3
        [0.2, 0.4, 0.5, 0.86, 0.88] + [0.89] * 15,  # NoC85 4, never 90 -> 20
    ]
    s = summarize(seqs)
    assert s["objects"] == 3
    assert s["noc85"] == pytest.approx((1 + 2 + 4) / 3)
    assert s["noc90"] == pytest.approx((1 + 3 + 20) / 3)
    assert s["nof90"] == 1 and s["nof85"] == 0
    assert s["miou@1"] == pytest.approx((0.91 + 0.6 + 0.2) / 3)
    assert s["miou@3"] == pytest.approx((0.91 + 0.93 + 0.5) / 3)
    assert s["miou@5"] == pytest.approx((0.91 + 0.93 + 0.88) / 3)
    assert len(s["miou_curve"]) == 20
    assert s["miou_curve"][-1] == pytest.approx((0.91 + 0.93 + 0.89) / 3)
    assert "gain@1" not in s


def test_summarize_prior_gain():
    s = summarize([[0.8, 0.9], [0.7, 0.75, 0.85]], priors=[0.75, 0.70])
    assert s["prior_miou"] == pytest.approx(0.725)
    assert s["gain@1"] == pytest.approx(((0.8 - 0.75) + (0.7 - 0.70)) / 2)
    assert s["gain@3"] == pytest.approx(((0.9 - 0.75) + (0.85 - 0.70)) / 2)
    with pytest.raises(ValueError):
        summarize([[0.8]], priors=[0.7, 0.7])
    with pytest.raises(ValueError):
        summarize([])


def test_iou_excludes_ignored_pixels():
    gt = np.zeros((4, 4), bool)
    gt[:2] = True  # 8 pixels
    pred = np.zeros((4, 4), bool)
    pred[:3] = True  # 12 pixels, 4 false positives in row 2
    assert iou(pred, gt) == pytest.approx(8 / 12)
    ignore = np.zeros((4, 4), bool)
    ignore[2] = True  # the false positives fall in the ignore band
    assert iou(pred, gt, ignore) == 1.0
    assert iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    with pytest.raises(ValueError, match="shape"):
        iou(pred, gt[:3])


def test_paired_difference_mean_and_standard_error():
    # differences 1, 3, -1, 1: mean 1, sample sd sqrt(8/3), se sqrt(8/3) / 2
    mean, se = paired_difference([2, 5, 4, 1], [3, 8, 3, 2])
    assert mean == pytest.approx(1.0)
    assert se == pytest.approx(np.sqrt(8 / 3) / 2)
    assert paired_difference([4, 7], [4, 7]) == (0.0, 0.0)
    assert paired_difference([3], [5]) == (2.0, 0.0)  # one object: no spread to estimate
    with pytest.raises(ValueError, match="same ones"):
        paired_difference([1, 2], [1])
    with pytest.raises(ValueError):
        paired_difference([], [])
