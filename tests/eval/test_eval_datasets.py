"""Dataset folders: images/, masks/, optional ignore/, single- and multi-object naming."""

import cv2
import numpy as np
import pytest

from cdnet.eval.datasets import Dataset, resolve

from ._paths import need_dataset


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "tiny"
    red = np.zeros((6, 8, 3), np.uint8)
    red[..., 2] = 255  # BGR on disk: pure red
    _write(root / "images" / "a.png", red)
    _write(root / "images" / "b.jpg", np.full((5, 7, 3), 128, np.uint8))
    mask_a = np.zeros((6, 8), np.uint8)
    mask_a[1:4, 2:6] = 255
    _write(root / "masks" / "a.png", mask_a)
    ign = np.zeros((6, 8), np.uint8)
    ign[0] = 255
    _write(root / "ignore" / "a.png", ign)
    for k in range(2):
        m = np.zeros((5, 7), np.uint8)
        m[k, :] = 255
        _write(root / "masks" / f"b_{k}.png", m)
    return root


def test_folder_is_read_as_samples(folder):
    ds = Dataset(folder)
    assert ds.name == "tiny" and len(ds) == 3
    a, b0, b1 = list(ds)
    assert [a.name, b0.name, b1.name] == ["a", "b_0", "b_1"]
    assert a.image.dtype == np.uint8 and a.image.shape == (6, 8, 3)
    assert tuple(a.image[0, 0]) == (255, 0, 0)  # RGB order
    assert a.gt.dtype == bool and a.gt.sum() == 12 and a.gt[1, 2] and not a.gt[0, 0]
    assert a.ignore is not None and a.ignore.dtype == bool and a.ignore.sum() == 8
    assert b0.ignore is None and b0.image.shape == (5, 7, 3)
    assert b0.gt[0].all() and not b0.gt[1].any() and b1.gt[1].all()
    assert len(Dataset(folder, max_objects=2)) == 2


def test_bad_folders_raise_clear_errors(folder, tmp_path):
    _write(folder / "masks" / "c.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="c.png in .* has no image"):
        Dataset(folder)
    (folder / "masks" / "c.png").unlink()
    _write(folder / "masks" / "a.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        Dataset(folder)[0]
    with pytest.raises(ValueError, match="neither a folder nor a name"):
        resolve(tmp_path / "nope")
    with pytest.raises(ValueError, match="neither a folder nor a name"):
        resolve("no_such_dataset_name")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match="needs images/ and masks/"):
        Dataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="max_objects"):
        Dataset(folder, max_objects=0)


def test_grabcut_by_name_has_its_ignore_band():
    folder = need_dataset("grabcut")
    ds = Dataset("grabcut")
    assert ds.root == folder.resolve() and len(ds) == 50
    s = ds[1]
    assert s.image.shape[:2] == s.gt.shape and s.ignore is not None
    assert s.ignore.any() and 0 < s.gt.mean() < 1
    # the band lies on the object boundary: it touches both object and background pixels
    band = cv2.dilate(s.ignore.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert (band & s.gt).any() and (band & ~s.gt & ~s.ignore).any()


def test_berkeley_by_name():
    need_dataset("berkeley")
    ds = Dataset("berkeley")
    assert len(ds) == 100
    assert ds[0].ignore is None and ds[0].gt.any()
