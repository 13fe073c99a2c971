"""A lightweight CDNet: MobileNetV2 trunk, Feature Diffusion, Pixel Diffusion, diversified heads.

Input per image: RGB (0-255), positive/negative click disk maps and the prior mask (the current
mask; zeros when starting from scratch). Output: final logits at input resolution, the latent
heads' logits (stride 4), a coarse stride-16 prediction, and two quality estimates:
predicted IoU of the output mask and of the input prior.

Optionally (`fine_head`) a small stride-2 refinement adds a correction to the stride-4 logits
from the stem's stride-2 features. Why: the objects that never reach 90% IoU lose it in a band
of about half a stride-4 cell along the boundary; even a perfect stride-4 map, upsampled, caps
some of them at 0.90-0.96 IoU, a stride-2 map at 0.96-0.99.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cdnet.model.mobilenet_v2 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MobileNetV2,
    conv_bn_relu,
    load_imagenet_mobilenet_v2,
)

NUM_AUX_CHANNELS = 3  # positive clicks, negative clicks, prior mask


class CDNetOutput(NamedTuple):
    logits: torch.Tensor  # (B, 1, H, W) final, after pixel diffusion
    head_logits: torch.Tensor  # (B, K, H/4, W/4) diversified latent heads
    coarse_logits: torch.Tensor  # (B, 1, H/16, W/16) destination map of the FDM
    quality: torch.Tensor  # (B, 2) predicted IoU of [output mask, prior mask]


def separable(cin: int, cout: int) -> nn.Sequential:
    """Depthwise 3x3 + pointwise: a 3x3 conv at a fraction of the parameters."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class FeatureDiffusion(nn.Module):
    """Non-local diffusion of click evidence to similar-looking features (CDNet's FDM).

    Two branches. The foreground branch attends from every position to positions weighted by the
    positive-click Gaussian (the source); its message is gated by a learned coarse foreground
    prediction (the destination). The background branch does the same with negative clicks and
    the coarse background. With no clicks of a kind, its source is uniform: plain non-local
    attention, which keeps the module well-defined for the zero-click case.
    """

    def __init__(self, channels: int, key_dim: int = 32, value_dim: int = 64):
        super().__init__()
        self.query = nn.Conv2d(channels, key_dim, 1)
        self.key = nn.Conv2d(channels, key_dim, 1)
        self.value = nn.Conv2d(channels, value_dim, 1)
        self.coarse = nn.Conv2d(channels, 1, 1)
        self.out = nn.Sequential(nn.Conv2d(2 * value_dim, channels, 1, bias=False),
                                 nn.BatchNorm2d(channels))
        nn.init.zeros_(self.out[1].weight)  # start as identity: pretrained features untouched
        self.scale = 1.0 / math.sqrt(key_dim)

    def forward(self, feats: torch.Tensor, sources: torch.Tensor):
        b, _, h, w = feats.shape
        q = self.query(feats).flatten(2).transpose(1, 2)  # B, N, Dk
        k = self.key(feats).flatten(2)  # B, Dk, N
        v = self.value(feats).flatten(2).transpose(1, 2)  # B, N, Dv
        affinity = torch.bmm(q, k) * self.scale  # B, N, N
        coarse = self.coarse(feats)
        fg = torch.sigmoid(coarse).flatten(2).transpose(1, 2)  # B, N, 1
        src = torch.log(sources.flatten(2) + 1e-3)  # B, 2, N: log source weights
        msg_fg = torch.bmm(torch.softmax(affinity + src[:, 0:1], dim=-1), v) * fg
        msg_bg = torch.bmm(torch.softmax(affinity + src[:, 1:2], dim=-1), v) * (1 - fg)
        msg = torch.cat([msg_fg, msg_bg], dim=2).transpose(1, 2).reshape(b, -1, h, w)
        return feats + self.out(msg), coarse


class PixelDiffusion(nn.Module):
    """Colour-affinity diffusion of logits over a local neighbourhood, iterated (CDNet's PDM).

    Each step replaces a logit by the affinity-weighted mean of itself and its 16 neighbours
    (dilations 1 and 2), the affinity being a learned Gaussian of the colour difference; clicked
    pixels are pushed towards their label after each step so clicks are never diffused away.
    Implemented with shifted slices of a padded tensor: vectorised and ONNX-exportable.
    """

    OFFSETS = [(dy * d, dx * d) for d in (1, 2) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
               if (dy, dx) != (0, 0)]

    def __init__(self, iterations: int = 10):
        super().__init__()
        self.iterations = iterations
        self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))
        self.click_strength = nn.Parameter(torch.tensor(1.0))
        self.mix = nn.Parameter(torch.tensor(0.0))  # sigmoid(0)=0.5 of diffused vs raw

    @staticmethod
    def _neighbours(x: torch.Tensor, pad: int) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, 16, H, W): x shifted by each offset (replicate padding)."""
        h, w = x.shape[-2:]
        p = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        return torch.stack([p[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]
                            for dy, dx in PixelDiffusion.OFFSETS], dim=2)

    def forward(self, logits: torch.Tensor, image: torch.Tensor, clicks: torch.Tensor):
        colour = image / 255.0
        diff = (self._neighbours(colour, 2) - colour.unsqueeze(2)).pow(2).sum(1)  # B, 16, H, W
        affinity = torch.exp(-diff / (2 * torch.exp(self.log_sigma) ** 2))
        norm = 1.0 + affinity.sum(1, keepdim=True)
        push = self.click_strength * (clicks[:, 0:1] - clicks[:, 1:2])
        x = logits
        for _ in range(self.iterations):
            x = (x + (affinity * self._neighbours(x, 2)[:, 0]).sum(1, keepdim=True)) / norm
            x = x + push
        m = torch.sigmoid(self.mix)
        return m * x + (1 - m) * logits


class FineHead(nn.Module):
    """A stride-2 correction to add to the stride-4 logits, from the decoder's features, the stem's
    stride-2 features (image, clicks and prior already mixed in) and the image itself. Its last
    layer starts at zero, so adding it to trained weights changes nothing until it is trained.

    `trunk_channels` (16, or 0 for none): also the trunk's first block's stride-2 features,
    which the stride-4 path computes anyway: one 3x3 conv of the image (the stem) says little
    about where an edge lies, the pretrained block after it more."""

    def __init__(self, decoder_channels: int = 48, stem_channels: int = 32,
                 trunk_channels: int = 0):
        super().__init__()
        self.trunk_channels = trunk_channels
        self.reduce = conv_bn_relu(decoder_channels, 16, kernel=1)
        self.body = nn.Sequential(separable(16 + stem_channels + 3 + 1 + trunk_channels, 24),
                                  separable(24, 16))
        self.out = nn.Conv2d(16, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, logits4, decoder4, stem2, image2, trunk2=None):
        size = stem2.shape[-2:]
        up = F.interpolate(logits4, size=size, mode="bilinear", align_corners=False)
        d = F.interpolate(self.reduce(decoder4), size=size, mode="bilinear", align_corners=False)
        parts = [d, stem2, image2, up] + ([trunk2] if self.trunk_channels else [])
        return self.out(self.body(torch.cat(parts, 1)))


class CDNet(nn.Module):
    def __init__(self, num_heads: int = 4, pdm_iterations: int = 10, pretrained: bool = True,
                 fine_head: bool = False, fine_trunk: bool = False):
        super().__init__()
        trunk = load_imagenet_mobilenet_v2() if pretrained else MobileNetV2()
        feats = trunk.features
        self.stem_aux = nn.Conv2d(NUM_AUX_CHANNELS, 32, 3, 2, 1, bias=False)
        nn.init.zeros_(self.stem_aux.weight)  # new input channels start at zero
        self.stem = feats[0]
        self.stage4 = feats[1:4]  # stride 4, 24 ch
        self.stage8 = feats[4:7]  # stride 8, 32 ch
        self.stage16 = feats[7:14]  # stride 16, 96 ch
        self.fdm = FeatureDiffusion(96)
        self.reduce16 = conv_bn_relu(96, 64, kernel=1)
        self.fuse8 = separable(64 + 32, 64)
        self.fuse4 = nn.Sequential(separable(64 + 24, 48), separable(48, 48))
        self.main_head = nn.Conv2d(48, 1, 1)
        self.heads = nn.Conv2d(48, num_heads, 1)
        self.pdm = PixelDiffusion(pdm_iterations)
        self.quality_head = nn.Sequential(nn.Linear(2 * 48 + 5, 32), nn.ReLU(inplace=True),
                                          nn.Linear(32, 2))
        if fine_trunk and not fine_head:
            raise ValueError("fine_trunk feeds the fine head: it needs fine_head=True")
        self.fine = FineHead(trunk_channels=16 if fine_trunk else 0) if fine_head else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)

    def forward(self, image: torch.Tensor, clicks: torch.Tensor,
                prior: torch.Tensor) -> CDNetOutput:
        """image (B,3,H,W) 0-255; clicks (B,2,H,W) disks; prior (B,1,H,W) in [0,1].

        H and W must be multiples of 16.
        """
        x = (image - self.mean) / self.std
        aux = torch.cat([clicks, prior], dim=1)
        x2 = self.stem[2](self.stem[1](self.stem[0](x) + self.stem_aux(aux)))
        f2 = self.stage4[0](x2)  # the trunk's first block: stride 2, 16 ch
        f4 = self.stage4[1:](f2)
        f8 = self.stage8(f4)
        f16 = self.stage16(f8)
        sources = F.max_pool2d(clicks, 16)  # inputs are multiples of 16: one cell per f16 pixel
        sources = F.avg_pool2d(sources, 3, 1, 1)  # a soft Gaussian-like spread at stride 16
        f16, coarse = self.fdm(f16, sources)
        d = self.reduce16(f16)
        d = F.interpolate(d, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        d = self.fuse8(torch.cat([d, f8], 1))
        d = F.interpolate(d, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        d = self.fuse4(torch.cat([d, f4], 1))
        raw = self.main_head(d)
        heads = self.heads(d)
        small_image = F.avg_pool2d(image, 4)
        small_clicks = F.max_pool2d(clicks, 4)
        refined = self.pdm(raw, small_image, small_clicks)
        quality = self._quality(d, refined, heads, F.avg_pool2d(prior, 4))
        logits = F.interpolate(refined, size=image.shape[-2:], mode="bilinear",
                               align_corners=False)
        if self.fine is not None:  # added at full size: zero-initialised, it changes nothing
            correction = self.fine(refined, d, x2, F.avg_pool2d(x, 2), f2)
            logits = logits + F.interpolate(correction, size=image.shape[-2:], mode="bilinear",
                                            align_corners=False)
        return CDNetOutput(logits, heads, coarse, quality)

    def _quality(self, d, logits, heads, prior) -> torch.Tensor:
        p = torch.sigmoid(logits)
        area = p.mean((2, 3)) + 1e-4
        fg_feat = (d * p).mean((2, 3)) / area
        bg_feat = (d * (1 - p)).mean((2, 3)) / (1 - area + 2e-4)
        spread = torch.sigmoid(heads).std(1, keepdim=True).mean((2, 3))
        confidence = (2 * p - 1).abs().mean((2, 3))
        prior_area = prior.mean((2, 3))
        inter = (p * prior).sum((2, 3))
        soft_iou = inter / (p.sum((2, 3)) + prior.sum((2, 3)) - inter + 1.0)
        stats = torch.cat([area, spread, confidence, prior_area, soft_iou], 1)
        return torch.sigmoid(self.quality_head(torch.cat([fg_feat, bg_feat, stats], 1)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
