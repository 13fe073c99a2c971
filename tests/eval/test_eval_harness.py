"""The shared click loop: its semantics on simple segmenters, the OpenCV baseline through it,
the real CDNet predictor through it, and the shipped model against a fixed NoC bound."""

import json
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from cdnet.clicks import Click
from cdnet.eval.clicker import next_click
from cdnet.eval.datasets import Dataset, Sample
from cdnet.eval.grabcut_baseline import GrabCutPredictor
from cdnet.eval.metrics import iou
from cdnet.eval.noc import evaluate
from cdnet.eval.report import markdown_table, write_report
from clicksmith.cli import main as clicksmith

from ._paths import need_dataset

# NoC@90 that the shipped model must beat on the first 5 GrabCut objects (progressive off).
# Measured: OpenCV GrabCut baseline 11.6, untrained model 20.0, cdnet-mnv2-2dfeb92c 8.0,
# cdnet-mnv2-0a5c3d6b 5.4, cdnet-mnv2-f7d99220 (320 px views) 7.2 although its mean over all
# 50 objects is better (3.68 vs 4.46): five objects are a smoke test, not a ranking; shipped
# cdnet-mnv2-3ee72ce9 5.8 (mean over 50: 3.64); cdnet-mnv2-9d3ead20 5.8 (mean over 50: 3.54);
# cdnet-mnv2-9600d5e0 5.0 as served with test-time flip (the default), 5.6 without
# (mean over 50: 3.18 / 3.24); cdnet-mnv2-87199062 6.6 with flip, 6.0 without (mean
# over 50: 3.46 / 3.42); cdnet-mnv2-f4d60779 (stride-2 head) 4.8 with flip, 5.6 without
# (mean over 50: 2.88 / 3.16; 5.0 with flip once far pieces were dropped, DROP_FAR=new);
# shipped cdnet-mnv2-ecd2a552 (trained with the hand-traced folders) 4.4 with flip and
# drop-far, 5.0 without flip (mean over 50: 2.72 / 2.78).
# The bound fails the baseline, the untrained model, the 8.0 weights and the 6.6 of 87199062.
NOC90_BOUND_GRABCUT5 = 6.0


@dataclass(frozen=True)
class _Res:
    mask: np.ndarray


class DiskSegmenter:
    """A real (if naive) segmenter: disks of radius r at positive clicks minus negative ones."""

    model_version = "disks"

    def __init__(self, r: int):
        self.r = r

    def session(self, image, prior_mask=None):
        outer = self

        class S:
            clicks: list = []

            def add_click(self, c: Click):
                self.clicks = [*self.clicks, c]
                m = np.zeros(image.shape[:2], np.uint8) if prior_mask is None \
                    else prior_mask.astype(np.uint8)
                for k in self.clicks:
                    cv2.circle(m, (int(k.x), int(k.y)), outer.r, int(k.positive), -1)
                return _Res(m.astype(bool))

        return S()


def disk_sample(name="disk", shape=(40, 48), centre=(20, 24), r=8, noise=True):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    gt = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r
    rng = np.random.default_rng(0)
    img = np.where(gt[..., None], [220, 60, 40], [30, 90, 160]).astype(np.int16)
    if noise:
        img = img + rng.integers(-20, 21, img.shape)
    return Sample(name, np.clip(img, 0, 255).astype(np.uint8), gt, None)


def test_loop_stops_at_the_first_click_reaching_090():
    s = disk_sample()
    r = evaluate(DiskSegmenter(8), [s], progress=False)
    # the first click lands at the disk centre and an r=8 disk there is the object itself
    assert r["per_object"][0]["clicks"] == [[20, 24, True]]
    assert r["noc90"] == 1 and r["noc85"] == 1 and r["nof90"] == 0 and r["miou@1"] == 1.0


def test_loop_gives_the_standard_clicks_and_counts_failures_as_20():
    s = disk_sample(noise=False)
    r = evaluate(DiskSegmenter(0), [s, disk_sample("b", r=5)], progress=False)
    assert r["noc90"] == 20 and r["nof90"] == 2 and r["clicks"] == 40
    # replay: every click is the standard clicker's answer to the previous prediction
    run = r["per_object"][0]
    pred, given = np.zeros_like(s.gt), []
    for (y, x, pos), v in zip(run["clicks"], run["ious"], strict=True):
        c = next_click(s.gt, pred, None, given)
        assert (c.y, c.x, c.positive) == (y, x, pos)
        given.append(c)
        pred[y, x] = True  # a radius-0 disk is the clicked pixel
        assert v == pytest.approx(iou(pred, s.gt), abs=1e-5)
    assert len({(y, x) for y, x, _ in run["clicks"]}) == 20  # never the same pixel twice


def test_prior_mode_reports_gain_and_uses_the_same_priors_for_every_method():
    samples = [disk_sample("p1", r=10), disk_sample("p2", centre=(18, 20), r=9)]
    a = evaluate(DiskSegmenter(3), samples, mode="prior", progress=False, max_clicks=3)
    b = evaluate(GrabCutPredictor(), samples, mode="prior", progress=False, max_clicks=3)
    assert a["prior_miou"] == b["prior_miou"]
    assert abs(a["prior_miou"] - 0.75) < 0.03
    assert a["gain@1"] == pytest.approx(a["miou@1"] - a["prior_miou"])
    assert b["gain@3"] > 0  # GrabCut with 3 clicks improves a 0.75 pre-label of a clear disk
    with pytest.raises(ValueError, match="mode"):
        evaluate(DiskSegmenter(3), samples, mode="degraded-ish", progress=False)


def test_grabcut_baseline_segments_a_clear_object_through_the_harness():
    s = disk_sample(shape=(80, 96), centre=(40, 48), r=6)  # inside the first click's box
    r = evaluate(GrabCutPredictor(), [s], progress=False, max_clicks=5)
    assert r["method"] == "opencv-grabcut" and r["objects"] == 1
    assert r["miou@1"] > 0.9  # a red disk on blue: colour models separate it at once
    assert r["spc"] > 0


@pytest.mark.slow
def test_grabcut_baseline_on_real_grabcut_images():
    need_dataset("grabcut")
    r = evaluate(GrabCutPredictor(), "grabcut", max_objects=2, progress=False, max_clicks=5)
    assert r["dataset"] == "grabcut" and r["objects"] == 2
    assert [o["name"] for o in r["per_object"]] == ["106024", "124080"]
    assert all(o["clicks"][0][2] for o in r["per_object"])  # the first click is positive
    assert r["miou@5"] > 0.6  # measured 0.83; a broken loop or baseline gives ~0.1


def _real_predictor(progressive):
    from cdnet import load_predictor

    return load_predictor(progressive=progressive)


@pytest.mark.slow
def test_cdnet_predictor_runs_through_the_same_harness():
    folder = need_dataset("grabcut")
    s = Dataset(folder, max_objects=1)[0]
    off = _real_predictor(False)
    session = off.session(s.image)
    res = session.add_click(next_click(s.gt, np.zeros_like(s.gt), s.ignore))
    assert np.array_equal(res.mask, res.probs > 0.5)  # progressive off: mask = probs > 0.5
    for p in (off, _real_predictor(True)):
        r = evaluate(p, [s], progress=False, max_clicks=2, label=p.model_version)
        o = r["per_object"][0]
        assert 1 <= len(o["clicks"]) <= 2 and len(o["ious"]) == len(o["clicks"])
        assert o["ious"][0] > 0.8 and r["spc"] > 0  # the first click finds the object (0.89)


@pytest.mark.slow
def test_shipped_model_beats_the_noc_bound_on_5_grabcut_images():
    need_dataset("grabcut")
    r = evaluate(_real_predictor(False), "grabcut", max_objects=5, progress=False)
    assert r["noc90"] < NOC90_BOUND_GRABCUT5, r["per_object"]


@pytest.fixture
def tiny_folder(tmp_path):
    root = tmp_path / "tiny"
    for i, (c, r) in enumerate([((20, 24), 9), ((18, 22), 7)]):
        s = disk_sample(centre=c, r=r)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "images" / f"o{i}.png"), s.image[..., ::-1])
        cv2.imwrite(str(root / "masks" / f"o{i}.png"), s.gt.astype(np.uint8) * 255)
    return root


def test_cli_evaluates_a_folder_and_writes_the_report(tiny_folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = clicksmith(["eval", str(tiny_folder), "--model", "none", "--max-clicks", "3",
                     "--out", str(out), "--no-progress"])
    assert rc == 0
    data = json.loads((out / "noc.json").read_text())
    (res,) = data["results"]
    assert res["dataset"] == "tiny" and res["method"] == "opencv-grabcut" and res["objects"] == 2
    assert "| tiny | opencv-grabcut |" in (out / "noc.md").read_text()
    assert (out / "noc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "NoC@90" in capsys.readouterr().out


@pytest.mark.parametrize("argv, env, flipped", [
    (["--flip", "on"], "false", True),
    ([], "true", True),  # FLIP_AVERAGE is the default when --flip is not given
    (["--flip", "off"], "true", False),
])
def test_cli_labels_flip_runs_so_reports_tell_them_apart(argv, env, flipped, tiny_folder,
                                                          tmp_path, monkeypatch):
    monkeypatch.setenv("FLIP_AVERAGE", env)
    out = tmp_path / "out"
    assert clicksmith(["eval", str(tiny_folder), "--baseline", "none", "--max-clicks", "2",
                       "--out", str(out), "--no-progress", *argv]) == 0
    (res,) = json.loads((out / "noc.json").read_text())["results"]
    assert res["method"].endswith(" +flip") is flipped
    assert res["method"].startswith(res["model_version"])


@pytest.mark.parametrize("argv, reason", [
    (["no_such_dataset"], "neither a folder nor a name"),
    (["--max-objects", "0"], "--max-objects"),
    (["--model", "none", "--baseline", "none"], "nothing to evaluate"),
    (["--weights", "/nonexistent.pt"], "is not a file"),
])
def test_cli_bad_input_exits_2_with_a_reason(argv, reason, tiny_folder, capsys):
    if argv[0] != "no_such_dataset":
        argv = [str(tiny_folder), *argv]
    assert clicksmith(["eval", *argv]) == 2
    assert reason in capsys.readouterr().err


def test_report_table_lists_every_result(tmp_path):
    samples = [disk_sample()]
    rs = [evaluate(DiskSegmenter(8), samples, progress=False, label="disks-8"),
          evaluate(DiskSegmenter(2), samples, progress=False, label="disks-2", max_clicks=4)]
    table = markdown_table(rs)
    assert "| samples | disks-8 |" in table and "| samples | disks-2 |" in table
    paths = write_report(rs, tmp_path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.md", "x.png"]
    assert paths["json"].exists()


def test_evaluate_accepts_a_factory_and_rejects_non_predictors():
    r = evaluate(lambda: DiskSegmenter(8), [disk_sample()], progress=False)
    assert r["method"] == "disks" and r["noc90"] == 1
    with pytest.raises(ValueError, match="predictor"):
        evaluate(42, [disk_sample()], progress=False)
    with pytest.raises(ValueError, match="without .session"):
        evaluate(lambda: 42, [disk_sample()], progress=False)


def test_a_run_resumes_from_finished_objects():
    samples = [disk_sample("a"), disk_sample("b", centre=(18, 22))]
    saved: list = []
    first = evaluate(DiskSegmenter(0), samples, progress=False, max_clicks=4,
                     on_object=saved.append)
    assert [o["name"] for o in saved] == ["a", "b"] and saved == first["per_object"]
    # object "a" comes from the earlier run (4 failed clicks), "b" is computed anew (1 click)
    resumed = evaluate(DiskSegmenter(8), samples, progress=False, max_clicks=4,
                       done={"a": saved[0]}, on_object=saved.append)
    assert resumed["per_object"][0] == saved[0]
    assert len(resumed["per_object"][1]["clicks"]) == 1 and len(saved) == 3
    assert resumed["noc90"] == pytest.approx((4 + 1) / 2)
