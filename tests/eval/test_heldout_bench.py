"""benchmarks/heldout.py, the checkpoint chooser: one row per weights file and one run per view
size, progressive join and test-time flip, on real held-out training objects with the shipped
weights."""

from __future__ import annotations

import json

import pytest

from cdnet.model.io import BUNDLED_WEIGHTS
from tests.benchmark_module import load_benchmark

from ._paths import SHARED, need_dataset

heldout = load_benchmark("heldout")


def test_progressive_runs_one_result_per_join(tmp_path, capsys):
    need_dataset("train_weizmann_horse")
    out = tmp_path / "heldout.json"
    rc = heldout.main([str(BUNDLED_WEIGHTS), "--progressive", "on", "--joins", "4", "12",
                       "--max-objects", "2", "--threads", "1", "--shared", str(SHARED),
                       "--out", str(out)])
    assert rc == 0
    runs = json.loads(out.read_text())
    assert [r["progressive_join"] for r in runs] == [4.0, 12.0]
    assert all(r["progressive"] is True and r["objects"] == 2 for r in runs)
    assert all(1.0 <= r["noc90"] <= 20.0 for r in runs)
    printed = capsys.readouterr().out
    assert "progressive on" in printed and "join 4" in printed and "join 12" in printed


def test_progressive_off_records_no_join_and_flip_both_runs_each(tmp_path, capsys):
    need_dataset("train_weizmann_horse")
    out = tmp_path / "heldout.json"
    assert heldout.main([str(BUNDLED_WEIGHTS), "--max-objects", "1", "--threads", "1",
                         "--flip", "both", "--shared", str(SHARED), "--out", str(out)]) == 0
    plain, flipped = json.loads(out.read_text())
    assert plain["progressive"] is False and plain["progressive_join"] is None
    (source, row), = plain["per_source"].items()  # one object: one training folder
    assert source.startswith("train_") and row["objects"] == 1
    assert row["noc90"] == plain["noc90"] == plain["noc90_source_mean"]
    assert (plain["flip"], flipped["flip"]) == (False, True)
    assert "320/320 flip" in capsys.readouterr().out


def test_the_backend_is_chosen_and_recorded(tmp_path):
    """auto takes the ONNX file exported from the bundled weights; torch is asked for by name."""
    need_dataset("train_weizmann_horse")
    runners = []
    for backend in ("auto", "torch"):
        out = tmp_path / f"{backend}.json"
        assert heldout.main([str(BUNDLED_WEIGHTS), "--max-objects", "1", "--threads", "1",
                             "--backend", backend, "--shared", str(SHARED),
                             "--out", str(out)]) == 0
        (run,) = json.loads(out.read_text())
        runners.append(run["runner"])
    assert runners == ["OnnxRunner", "TorchRunner"]


def test_missing_weights_and_bad_sizes_are_refused(tmp_path, capsys):
    assert heldout.main([str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o.json")]) == 2
    assert "no weights file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        heldout.main([str(BUNDLED_WEIGHTS), "--sizes", "320x320"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:  # joins without progressive on would rerun one run
        heldout.main([str(BUNDLED_WEIGHTS), "--joins", "8", "16"])
    assert exc.value.code == 2
    assert "--joins applies only with --progressive on" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_per_source_weighs_every_training_folder_alike():
    # two objects of folder a (NoC@90 2 and 20: never reached), one of folder b (NoC@90 1)
    result = {"max_clicks": 20, "per_object": [{"ious": [0.5, 0.95]}, {"ious": [0.3] * 20},
                                               {"ious": [0.92]}]}
    out = heldout.per_source(result, ["a", "a", "b"])
    assert out["per_source"] == {"a": {"objects": 2, "noc90": 11.0, "miou@1": 0.4},
                                 "b": {"objects": 1, "noc90": 1.0, "miou@1": 0.92}}
    assert out["noc90_source_mean"] == 6.0  # pooled over the three objects it would be 23 / 3
    with pytest.raises(ValueError):  # a source for every object, no more, no less
        heldout.per_source(result, ["a", "b"])


def test_heldout_objects_are_trainings_split_folder_by_folder():
    from cdnet.train.data import split_folders
    from cdnet.train.loop import TrainConfig, validation_samples

    for name in heldout.DEFAULT_DATASETS:
        need_dataset(name)
    samples, sources = heldout.heldout_objects(SHARED, extra=1)
    roots = [SHARED / "datasets" / d for d in heldout.DEFAULT_DATASETS]
    _, val = split_folders(roots, TrainConfig.val_fraction)
    pooled = validation_samples(val, None, extra_per_image=1)
    assert [s.name for s in samples] == [s.name for s in pooled]
    assert len(sources) == len(samples) and len(set(sources)) > 1
    folder_of = {e.image.stem: e.image.parent.parent.name for e in val}
    pairs = zip(samples, sources, strict=True)
    assert all(folder_of[s.name.split("#")[0]] == src for s, src in pairs)


def test_later_weights_are_set_against_the_first_per_column(tmp_path, capsys):
    need_dataset("train_weizmann_horse")
    twin = tmp_path / "twin.pt"
    twin.write_bytes(BUNDLED_WEIGHTS.read_bytes())
    out = tmp_path / "heldout.json"
    assert heldout.main([str(BUNDLED_WEIGHTS), str(twin), "--max-objects", "2", "--threads",
                         "1", "--shared", str(SHARED), "--out", str(out)]) == 0
    first, second = json.loads(out.read_text())
    assert len(first["noc90_per_object"]) == 2
    assert sum(first["noc90_per_object"]) / 2 == pytest.approx(first["noc90"])
    assert "noc90_vs_first" not in first
    assert second["noc90_vs_first"] == {"weights": str(BUNDLED_WEIGHTS), "mean": 0.0,
                                        "standard_error": 0.0}  # the same weights: no gap
    assert f"{twin} vs {BUNDLED_WEIGHTS} (320/320): NoC@90 +0.00 +- 0.00" in capsys.readouterr().out


def test_differences_pair_runs_of_the_same_column_only():
    def run(weights, flip, per_object):
        return {"weights": weights, "base_size": 320, "zoom_size": 320, "flip": flip,
                "progressive_join": None, "noc90_per_object": per_object}

    runs = [run("a", False, [2, 4, 20]), run("a", True, [2, 3, 20]),
            run("b", False, [1, 4, 18]), run("b", True, [3, 3, 20])]
    lines = heldout.differences(runs)
    assert runs[2]["noc90_vs_first"]["mean"] == pytest.approx(-1.0)  # (-1 + 0 - 2) / 3
    assert runs[3]["noc90_vs_first"]["mean"] == pytest.approx(1 / 3)  # against a's flip run
    assert len(lines) == 2 and "flip" not in lines[0] and "320/320 flip" in lines[1]


def test_column_name_tells_joins_apart():
    run = {"base_size": 320, "zoom_size": 384, "flip": True, "progressive_join": 8.0}
    assert heldout.column_name(run) == "320/384 join 8 flip"
    assert heldout.column_name({**run, "progressive_join": None, "flip": False}) == "320/384"
