"""scripts/pack_training_data.py: what travels to a GPU machine is the training split only."""

from __future__ import annotations

import tarfile

import cv2
import numpy as np

from cdnet.train.data import scan, split
from cdnet.train.loop import TrainConfig
from tests.benchmark_module import load_script


def _folder(root, n=40):
    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / f"p{i}.jpg"), img)
        m = np.zeros((60, 80), np.uint8)
        m[10 : 20 + i % 30, 5:40] = 255
        cv2.imwrite(str(root / "masks" / f"p{i}.png"), m)
    return root


def test_pack_holds_the_training_split_and_the_same_masks(tmp_path):
    pack = load_script("scripts/pack_training_data.py")
    src = _folder(tmp_path / "train_toy")
    train, held_out = split(scan(src), TrainConfig.val_fraction)
    assert held_out and train  # the toy folder exercises both sides of the split
    out = tmp_path / "pack"
    assert pack.main([str(src), "--out", str(out)]) == 0
    images = sorted(p.stem for p in (out / "train_toy" / "images").iterdir())
    assert images == sorted(e.image.stem for e in train)
    with tarfile.open(out / "masks.tar.xz") as tar:
        tar.extractall(out, filter="data")
    for e in train:
        packed = cv2.imread(str(out / "train_toy" / "masks" / e.masks[0].name), 0)
        assert np.array_equal(packed, cv2.imread(str(e.masks[0]), 0))
        img = cv2.imread(str(out / "train_toy" / "images" / f"{e.image.stem}.webp"))
        assert img.shape == (60, 80, 3)
    assert len(scan(out / "train_toy")) == len(train)  # trains as a folder of its own
    # never writes into a folder that already holds something
    assert pack.main([str(src), "--out", str(out)]) == 2
