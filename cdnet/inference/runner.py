"""Run the network on one prepared input: torch eager or ONNX Runtime, same numbers out.

torch is imported only by `TorchRunner`: the serving image has ONNX Runtime and no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch


class NetOutput(NamedTuple):
    probs: np.ndarray  # (H, W) float32 in the network frame
    head_probs: np.ndarray  # (K, H/4, W/4)
    quality: np.ndarray  # (2,) predicted IoU of [output, prior]


class Runner(Protocol):
    name: str

    def __call__(self, image: np.ndarray, clicks: np.ndarray, prior: np.ndarray) -> NetOutput:
        """image (H,W,3) uint8; clicks (2,H,W) float32; prior (H,W) float32."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def network_inputs(image: np.ndarray, clicks: np.ndarray, prior: np.ndarray):
    """The three float32 NCHW arrays the network takes."""
    img = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
    return img, clicks[None].astype(np.float32), prior[None, None].astype(np.float32)


class TorchRunner:
    name = "torch"

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        import torch

        self.torch = torch
        self.model = model.eval()
        self.threads = threads

    def __call__(self, image, clicks, prior) -> NetOutput:
        torch = self.torch
        # OpenMP thread counts are per calling thread: a web server's request threads would
        # otherwise run with the machine's core count instead of the configured one.
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            out = self.model(*(torch.from_numpy(a)
                               for a in network_inputs(image, clicks, prior)))
            return NetOutput(torch.sigmoid(out.logits)[0, 0].numpy(),
                             torch.sigmoid(out.head_logits)[0].numpy(), out.quality[0].numpy())


# ONNX metadata key holding the model_version of the weights an ONNX file was exported from
VERSION_KEY = "clicksmith_model_version"


class OnnxRunner:
    name = "onnx"

    def __init__(self, path: Path, threads: int = 2):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    @property
    def exported_from(self) -> str | None:
        """The model_version stamped at export time (None for a file without the stamp)."""
        return self.session.get_modelmeta().custom_metadata_map.get(VERSION_KEY)

    def __call__(self, image, clicks, prior) -> NetOutput:
        img, clk, pri = network_inputs(image, clicks, prior)
        logits, heads, _, quality = self.session.run(
            None, {"image": img, "clicks": clk, "prior": pri})
        return NetOutput(_sigmoid(logits[0, 0]), _sigmoid(heads[0]), quality[0])


class FlipAveraged:
    """Test-time flip: the network also sees the view mirrored left-right, and the two answers
    are averaged (as RITM's evaluation does). Left-right is where a network trained with random
    flips is equally right either way, so averaging cancels part of its noise on thin parts and
    boundaries, at the price of a second network run per click.

    It is the innermost step of the predictor's frame pipeline (`cdnet.inference.frame`: box,
    view, flip), kept here as a runner rather than in `Frame`: its transform (mirror the image,
    click maps and prior) and its inverse (mirror the answers back and average the two runs)
    act only on the network-frame arrays right around the network call, identically for every
    view, and need none of the photo's geometry. The step next to the network wraps the
    network, which is what a runner is; so it composes with any runner (torch, ONNX), and
    `runner.name` / `Predictor.label` say when it is on."""

    def __init__(self, inner: Runner):
        self.inner = inner
        self.name = f"{inner.name}+flip"

    def __call__(self, image, clicks, prior) -> NetOutput:
        plain = self.inner(image, clicks, prior)
        mirrored = self.inner(np.ascontiguousarray(image[:, ::-1]),
                              np.ascontiguousarray(clicks[..., ::-1]),
                              np.ascontiguousarray(prior[..., ::-1]))
        return NetOutput((plain.probs + mirrored.probs[..., ::-1]) / 2,
                         (plain.head_probs + mirrored.head_probs[..., ::-1]) / 2,
                         (plain.quality + mirrored.quality) / 2)
