"""The review-ranking benchmark's metrics on hand-made scores, where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmark_module import load_benchmark

quality_ranking = load_benchmark("quality_ranking")


def test_recall_counts_bad_masks_among_the_worst_fifth():
    ious = [0.5, 0.6, 0.95, 0.97, 0.99, 0.9, 0.92, 0.93, 0.96, 0.98]
    perfect = list(ious)  # scores ranked exactly like the IoU
    assert quality_ranking.recall_worst(perfect, ious) == 1.0
    inverted = [-i for i in ious]
    assert quality_ranking.recall_worst(inverted, ious) == 0.0


def test_recall_at_a_share_subsamples_only_bad_masks():
    rng = np.random.default_rng(0)
    ious = np.concatenate([rng.uniform(0.9, 1.0, 60), rng.uniform(0.2, 0.8, 60)])
    # at half bad no ranking can put more than 2/5 of the bad masks in the worst fifth
    perfect = list(ious)
    assert quality_ranking.recall_worst(perfect, list(ious)) == pytest.approx(24 / 60)
    # at 20% bad a perfect ranking finds them all, in every draw
    mean, p5 = quality_ranking.recall_at_share(perfect, list(ious), 0.2)
    assert mean == 1.0 and p5 == 1.0
    noise = list(rng.random(120))  # a ranking that knows nothing finds about a fifth
    mean, p5 = quality_ranking.recall_at_share(noise, list(ious), 0.2)
    assert 0.05 < mean < 0.4 and p5 <= mean
