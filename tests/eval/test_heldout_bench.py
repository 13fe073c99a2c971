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
    assert (plain["flip"], flipped["flip"]) == (False, True)
    assert "320/320 flip" in capsys.readouterr().out


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
