"""A tiny training folder in the `train_*` layout, shared by the training tests."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


@pytest.fixture()
def dataset(tmp_path):
    """Four images with one or two objects each, in the train_* folder layout."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(4):
        img = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
        a = np.zeros((120, 160), np.uint8)
        cv2.circle(a, (50 + 10 * i, 60), 25, 255, -1)
        img[a > 0] = (200, 150, 60)
        cv2.imwrite(str(tmp_path / "images" / f"im_{i}.jpg"), img)
        if i % 2:
            b = np.zeros_like(a)
            cv2.rectangle(b, (110, 20), (150, 60), 255, -1)
            cv2.imwrite(str(tmp_path / "masks" / f"im_{i}_0.png"), a)
            cv2.imwrite(str(tmp_path / "masks" / f"im_{i}_1.png"), b)
        else:
            cv2.imwrite(str(tmp_path / "masks" / f"im_{i}.png"), a)
    return tmp_path
