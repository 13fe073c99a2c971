"""`clicksmith average-weights`: checkpoints' uniform average; mixed architectures refused."""

from __future__ import annotations

import torch

from cdnet.model.cdnet import CDNet
from cdnet.model.io import load_model, save_model, with_fine_head
from clicksmith.cli import main


def _saved(path, seed: int, fine: bool = False):
    torch.manual_seed(seed)
    model = CDNet(pretrained=False)
    model = with_fine_head(model) if fine else model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    save_model(model, path)
    return model.state_dict()


def test_the_average_of_two_checkpoints_is_their_mean_weights_and_stats(tmp_path, capsys):
    a, b = _saved(tmp_path / "a.pt", 1), _saved(tmp_path / "b.pt", 2)
    out = tmp_path / "soup.pt"
    assert main(["average-weights", str(out), str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]) == 0
    assert "average of 2" in capsys.readouterr().out
    soup, _ = load_model(out)
    state = soup.state_dict()
    assert torch.allclose(state["fuse8.0.weight"],
                          (a["fuse8.0.weight"] + b["fuse8.0.weight"]) / 2)
    assert torch.allclose(state["fuse8.1.running_var"],
                          (a["fuse8.1.running_var"] + b["fuse8.1.running_var"]) / 2)
    assert not torch.allclose(state["fuse8.0.weight"], a["fuse8.0.weight"])
    meta = torch.load(out, weights_only=False)["meta"]
    assert [s["file"] for s in meta["averaged"]] == [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]


def test_mixed_architectures_missing_files_and_a_single_file_are_refused(tmp_path, capsys):
    _saved(tmp_path / "plain.pt", 1)
    _saved(tmp_path / "fine.pt", 2, fine=True)
    out = tmp_path / "soup.pt"
    assert main(["average-weights", str(out), str(tmp_path / "plain.pt"),
                 str(tmp_path / "fine.pt")]) == 2
    assert "another architecture" in capsys.readouterr().out
    assert main(["average-weights", str(out), str(tmp_path / "plain.pt"),
                 str(tmp_path / "nope.pt")]) == 2
    assert "no weights file" in capsys.readouterr().out
    assert main(["average-weights", str(out), str(tmp_path / "plain.pt")]) == 2
    assert "at least two" in capsys.readouterr().out
    assert not out.exists()


def test_a_file_saved_before_a_setting_existed_averages_with_one_that_records_it(tmp_path):
    """The shipped weights' config has no `fine_trunk` key; a new run's snapshots say False."""
    _saved(tmp_path / "new.pt", 1, fine=True)
    old = torch.load(tmp_path / "new.pt", weights_only=False)
    _saved(tmp_path / "old.pt", 2, fine=True)
    payload = torch.load(tmp_path / "old.pt", weights_only=False)
    del payload["config"]["fine_trunk"]
    torch.save(payload, tmp_path / "old.pt")
    assert "fine_trunk" in old["config"]
    out = tmp_path / "soup.pt"
    assert main(["average-weights", str(out), str(tmp_path / "old.pt"),
                 str(tmp_path / "new.pt")]) == 0
    soup, _ = load_model(out)
    assert soup.fine is not None and soup.fine.trunk_channels == 0


def test_a_weighted_average_interpolates_and_bad_shares_are_refused(tmp_path):
    """Retraining's interpolation (RETRAIN_INTERPOLATE): shares [0.75, 0.25] of base and
    fine-tuned weights give base + 0.25 * (fine-tuned - base), statistics included."""
    import pytest

    from cdnet.model.average import average_models

    a, b = _saved(tmp_path / "a.pt", 1), _saved(tmp_path / "b.pt", 2)
    state = average_models([tmp_path / "a.pt", tmp_path / "b.pt"], [0.75, 0.25]).state_dict()
    for key in ("fuse8.0.weight", "fuse8.1.running_var"):
        assert torch.allclose(state[key], a[key] + 0.25 * (b[key] - a[key]), atol=1e-6)
    # shares are normalised: [3, 1] is [0.75, 0.25]
    again = average_models([tmp_path / "a.pt", tmp_path / "b.pt"], [3, 1]).state_dict()
    assert torch.allclose(again["fuse8.0.weight"], state["fuse8.0.weight"])
    for shares in ([1.0], [-1.0, 2.0], [0.0, 0.0], [float("nan"), 1.0]):
        with pytest.raises(ValueError, match="shares"):
            average_models([tmp_path / "a.pt", tmp_path / "b.pt"], shares)
