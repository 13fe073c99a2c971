"""The network itself: strict ImageNet load, shapes, size budget, the diffusion modules."""

from __future__ import annotations

import pytest
import torch

from cdnet.model.cdnet import CDNet, PixelDiffusion, count_parameters
from cdnet.model.mobilenet_v2 import MobileNetV2, imagenet_weights_path


def test_imagenet_weights_load_strictly():
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    net = MobileNetV2()
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(net.features[0][0].weight, state["features.0.0.weight"])


def test_a_wrong_checkpoint_is_refused_by_strict_loading():
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    state.pop("classifier.1.bias")
    with pytest.raises(RuntimeError, match="classifier.1.bias"):
        MobileNetV2().load_state_dict(state, strict=True)


def test_new_input_channels_start_at_zero_and_rgb_path_is_pretrained():
    model = CDNet(pretrained=True)
    assert torch.count_nonzero(model.stem_aux.weight) == 0
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.stem[0].weight, state["features.0.0.weight"])


def test_model_fits_the_4mb_budget():
    n = count_parameters(CDNet(pretrained=False))
    assert n * 4 <= 4_000_000, f"{n} parameters = {n * 4 / 1e6:.2f} MB fp32"


@pytest.mark.parametrize("h,w", [(64, 96), (256, 256), (400, 272)])
def test_output_shapes_and_ranges(h, w):
    model = CDNet(pretrained=False).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, h, w) * 255, torch.zeros(2, 2, h, w), torch.zeros(2, 1, h, w))
    assert out.logits.shape == (2, 1, h, w)
    assert out.head_logits.shape == (2, 4, h // 4, w // 4)
    assert out.coarse_logits.shape == (2, 1, h // 16, w // 16)
    assert out.quality.shape == (2, 2)
    assert ((out.quality >= 0) & (out.quality <= 1)).all()


def test_pixel_diffusion_spreads_within_a_colour_region_not_across_an_edge():
    pdm = PixelDiffusion(iterations=10)
    with torch.no_grad():
        pdm.mix.fill_(20.0)  # use the diffused logits only
        pdm.click_strength.fill_(0.0)
    image = torch.zeros(1, 3, 32, 32)
    image[..., 16:] = 255  # a sharp vertical edge between two flat regions
    logits = torch.zeros(1, 1, 32, 32)
    logits[..., 10, 10] = 10.0  # evidence in the left region
    out = pdm(logits, image, torch.zeros(1, 2, 32, 32))
    assert out[0, 0, 10, 12] > 0.05  # spread to a neighbour of the same colour
    assert out[0, 0, 10, 17].abs() < 1e-3  # blocked by the colour edge


def test_pixel_diffusion_keeps_clicked_pixels_on_their_side():
    pdm = PixelDiffusion(iterations=10)
    logits = torch.full((1, 1, 16, 16), -3.0)
    clicks = torch.zeros(1, 2, 16, 16)
    clicks[0, 0, 8, 8] = 1
    with torch.no_grad():
        out = pdm(logits, torch.zeros(1, 3, 16, 16), clicks)
    assert out[0, 0, 8, 8] > logits[0, 0, 8, 8]


def _inputs(h: int = 64, w: int = 64):
    torch.manual_seed(0)
    clicks = torch.zeros(1, 2, h, w)
    clicks[0, 0, h // 2 - 3 : h // 2 + 3, w // 2 - 3 : w // 2 + 3] = 1
    return torch.rand(1, 3, h, w) * 255, clicks, torch.zeros(1, 1, h, w)


def test_a_fine_head_added_to_trained_weights_changes_nothing_until_trained(tmp_path):
    from cdnet.model.io import load_model, save_model, with_fine_head

    torch.manual_seed(1)
    base = CDNet(pretrained=False).eval()
    with torch.no_grad():  # not a fresh init: weights a trained model could have
        for p in base.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    grown = with_fine_head(base).eval()
    assert grown.fine is not None and with_fine_head(grown) is grown
    assert 0 < count_parameters(grown) - count_parameters(base) < 10_000
    with torch.no_grad():
        before, after = base(*_inputs()).logits, grown(*_inputs()).logits
    assert torch.equal(before, after)
    with torch.no_grad():  # once trained (here: a constant correction of +1), it is added
        grown.fine.out.bias.fill_(1.0)
        changed = grown(*_inputs()).logits
    assert torch.allclose(changed, before + 1.0, atol=1e-5)
    save_model(grown, tmp_path / "fine.pt")
    loaded, _ = load_model(tmp_path / "fine.pt")
    assert loaded.fine is not None
    with torch.no_grad():
        assert torch.equal(loaded(*_inputs()).logits, changed)


def test_trunk_features_fed_to_a_trained_fine_head_change_nothing_until_trained(tmp_path):
    from cdnet.model.io import load_model, model_config, save_model, with_fine_head

    torch.manual_seed(2)
    base = with_fine_head(CDNet(pretrained=False)).eval()
    with torch.no_grad():  # a trained head, its last layer no longer zero
        for p in base.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    grown = with_fine_head(base, trunk=True).eval()
    assert model_config(grown)["fine_trunk"] and with_fine_head(grown, trunk=True) is grown
    assert with_fine_head(grown) is grown  # asking for less keeps what it has
    assert grown.fine.body[0][0].weight.shape[0] == base.fine.body[0][0].weight.shape[0] + 16
    with torch.no_grad():
        before, after = base(*_inputs()).logits, grown(*_inputs()).logits
    assert torch.equal(before, after)
    with torch.no_grad():  # once the new inputs are read, the answer depends on them
        grown.fine.body[0][3].weight[:, -16:].fill_(0.05)
        changed = grown(*_inputs()).logits
    assert (changed - before).abs().max() > 1e-3
    save_model(grown, tmp_path / "trunk.pt")
    loaded, _ = load_model(tmp_path / "trunk.pt")
    assert loaded.fine.trunk_channels == 16
    with torch.no_grad():
        assert torch.equal(loaded(*_inputs()).logits, changed)
    with pytest.raises(ValueError, match="needs fine_head"):
        CDNet(pretrained=False, fine_trunk=True)
