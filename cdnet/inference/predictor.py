"""Where a click becomes a mask.

`Predictor` is immutable after loading: every call takes the image and the interaction so far
and returns a new `Result`. `Session` is the convenience wrapper for one image: it holds the
clicks, the current mask and an undo stack; its `state` serialises so a web backend can keep it
in Redis and resume it on another worker.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from cdnet.clicks import Click
from cdnet.inference import defaults
from cdnet.inference.frame import Box, BoxStep, Framing
from cdnet.inference.image import PreparedImage, as_mask
from cdnet.inference.pieces import far_pieces
from cdnet.inference.runner import FlipAveraged, NetOutput, OnnxRunner, Runner, TorchRunner
from cdnet.inference.scale import ObjectScale
from cdnet.inference.views import ZOOM_EXPAND, ZOOM_MIN_SIZE


@dataclass(frozen=True)
class Result:
    mask: np.ndarray  # bool HxW
    quality: float  # predicted IoU of `mask`
    disagreement: float = 0.0  # spread between the diversified heads
    probs_source: np.ndarray | Callable[[], np.ndarray] | None = field(
        default=None, repr=False, compare=False)

    @cached_property
    def probs(self) -> np.ndarray:
        """float32 HxW in [0, 1]. Built on first use: on a 12 MP photo the full-resolution
        float map costs more than the click itself, and most callers only need `mask`."""
        src = self.probs_source
        if src is None:
            return self.mask.astype(np.float32)
        return src() if callable(src) else src


@dataclass(frozen=True)
class SessionState:
    """Everything needed to continue an interaction on another process."""

    clicks: tuple[Click, ...]
    mask: np.ndarray
    prior: np.ndarray | None = None
    box: Box | None = None
    quality: float = 0.0

    def to_bytes(self) -> bytes:
        header = {"clicks": [c.to_dict() for c in self.clicks], "shape": list(self.mask.shape),
                  "has_prior": self.prior is not None, "box": self.box, "quality": self.quality}
        buf = io.BytesIO()
        np.save(buf, np.packbits(self.mask))
        if self.prior is not None:
            np.save(buf, np.packbits(self.prior))
        head = json.dumps(header).encode()
        return zlib.compress(len(head).to_bytes(4, "big") + head + buf.getvalue(), 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionState:
        try:
            raw = zlib.decompress(data)
            n = int.from_bytes(raw[:4], "big")
            header = json.loads(raw[4 : 4 + n])
            buf = io.BytesIO(raw[4 + n :])
            shape = tuple(header["shape"])
            count = shape[0] * shape[1]
            mask = np.unpackbits(np.load(buf))[:count].reshape(shape).astype(bool)
            prior = None
            if header["has_prior"]:
                prior = np.unpackbits(np.load(buf))[:count].reshape(shape).astype(bool)
        except (zlib.error, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a serialised session state: {exc}") from exc
        box = tuple(header["box"]) if header["box"] else None
        clicks = tuple(Click.from_dict(c) for c in header["clicks"])
        return cls(clicks, mask, prior, box, float(header.get("quality", 0.0)))


DROP_FAR_MODES = ("off", "first", "new")


@dataclass(frozen=True)
class Predictor:
    runner: Runner
    model_version: str
    base_size: int = defaults.BASE_SIZE
    zoom_size: int = defaults.ZOOM_SIZE
    progressive: bool = True
    progressive_join: float = defaults.PROGRESSIVE_JOIN  # network px: nearer changes join
    score_size: int = defaults.SCORE_SIZE  # longer side of score_mask's view
    # drop far pieces no positive click explains (cdnet.inference.pieces) from answers made
    # without a prior: "off", "first" (the first click only) or "new" (pieces new at any click)
    drop_far: str = defaults.DROP_FAR
    # a project's object scale (cdnet.inference.scale): the first click's crop around it and
    # the zoom-in's smallest side (image px) and its context around the mask; None,
    # ZOOM_MIN_SIZE and ZOOM_EXPAND: the general frames
    first_view: int | None = None
    zoom_min: int = ZOOM_MIN_SIZE
    zoom_expand: float = ZOOM_EXPAND

    def __post_init__(self) -> None:
        if self.drop_far not in DROP_FAR_MODES:
            raise ValueError(f"drop_far must be one of {DROP_FAR_MODES}, got {self.drop_far!r}")
        if (self.first_view is not None and self.first_view < 16) or self.zoom_min < 16:
            raise ValueError(f"first_view and zoom_min must be >= 16 image px, got "
                             f"{self.first_view} and {self.zoom_min}")

    def for_scale(self, scale: ObjectScale | None) -> Predictor:
        """This predictor with the frames for a project whose objects have `scale` (None: the
        general frames). Shares the runner: as cheap as a dataclass copy."""
        if scale is None:
            return replace(self, first_view=None, zoom_min=ZOOM_MIN_SIZE, zoom_expand=ZOOM_EXPAND)
        return replace(self, first_view=scale.first_view, zoom_min=scale.zoom_min,
                       zoom_expand=scale.zoom_expand)

    @property
    def label(self) -> str:
        """The model version, marked when test-time flip is on: reports must tell them apart."""
        return self.model_version + (" +flip" if isinstance(self.runner, FlipAveraged) else "") \
            + self.frames_label

    @property
    def frames_label(self) -> str:
        """" @<first view>/<zoom-in minimum>px" while a project's frames are set, else ""."""
        return f" @{self.first_view}/{self.zoom_min}px" if self.first_view else ""

    @property
    def framing(self) -> Framing:
        """How the network's frame is chosen for each call (`cdnet.inference.frame`)."""
        return Framing(self.base_size, self.zoom_size,
                       self.progressive_join if self.progressive else None,
                       self.first_view, self.zoom_min, self.zoom_expand)

    # --- one-shot API -----------------------------------------------------------------
    def prepare(self, image: np.ndarray | PreparedImage) -> PreparedImage:
        return PreparedImage.of(image)

    def predict(self, image, clicks: Sequence[Click] = (), prior_mask: np.ndarray | None = None,
                box: Box | None = None) -> Result:
        s = self.session(image, prior_mask=prior_mask, box=box)
        for c in clicks:
            s.add_click(c)
        if not clicks and prior_mask is None:
            return self._zero_click(s.image, s.state.box)
        return s.result

    def session(self, image, prior_mask: np.ndarray | None = None, box: Box | None = None,
                state: SessionState | None = None) -> Session:
        img = self.prepare(image)
        if state is None:
            prior = None if prior_mask is None else as_mask(prior_mask, img.shape)
            box = None if box is None else BoxStep.check(box, img.shape)
            mask = prior.copy() if prior is not None else np.zeros(img.shape, bool)
            quality = self.score_mask(img, prior) if prior is not None else 0.0
            state = SessionState((), mask, prior, box, quality)
        elif state.mask.shape != img.shape:
            raise ValueError(f"session state is for a {state.mask.shape} image, got {img.shape}")
        return Session(self, img, state)

    def score_mask(self, image, mask: np.ndarray) -> float:
        """Predicted IoU of any given mask: the network judges it as a prior, with no clicks,
        in a view of `score_size` px around it, once: without test-time flip even when the
        clicks use it (the flip averages the answer's probabilities; a score does not need it,
        and the plain run costs about half). `score_size` (192 served) was chosen on held-out
        training objects (benchmarks/results/quality_ranking_score_size.md)."""
        img = self.prepare(image)
        mask = as_mask(mask, img.shape, "mask")
        net = self.framing.for_mask(mask, self.score_size).transform(img, (), mask)
        return float(self.scoring_runner(*net).quality[1])

    @property
    def scoring_runner(self) -> Runner:
        """The runner score_mask uses: the plain network under a FlipAveraged runner."""
        return self.runner.inner if isinstance(self.runner, FlipAveraged) else self.runner

    # --- the step -------------------------------------------------------------------
    def step(self, image: PreparedImage, state: SessionState, click: Click) -> tuple[
            SessionState, Result]:
        """State after one more click, and its result. Pure: `state` is not modified."""
        self._check_click(click, image.shape)
        clicks = state.clicks + (click,)
        # where the network looks (the whole image or the box first, then the zoom-in)
        frame = self.framing.for_click(state.mask, clicks, state.box)
        net = frame.transform(image, clicks, state.mask)  # image, clicks and mask, resized
        out = self.runner(*net)  # the network (and its mirrored run, with test-time flip)
        # back onto the photo, inside the box: the whole crop, or the click's regions of change
        mask, probs = frame.inv_transform(out.probs, state.mask, net, click)
        if self.drop_far != "off" and state.prior is None and (
                self.drop_far == "new" or not state.clicks) and (mask & ~state.mask).any():
            # only pixels new at this click can be dropped: none new, nothing to look for
            mask = mask & ~(far_pieces(mask, clicks) & ~state.mask)
        quality = float(out.quality[0])
        new_state = SessionState(clicks, mask, state.prior, state.box, quality)
        return new_state, Result(mask, quality, _disagreement(out), probs)

    # --- internals ------------------------------------------------------------------
    def _zero_click(self, image: PreparedImage, box: Box | None) -> Result:
        """No clicks, no prior: the network's guess of the main object (or the box's object)."""
        empty = np.zeros(image.shape, bool)
        if box is not None:
            start = SessionState((), empty, None, box, 0.0)
            return self.step(image, start, BoxStep(box).centre)[1]
        frame = self.framing.whole(image.shape)
        out = self.runner(*frame.transform(image, ()))
        mask, probs = frame.inv_transform(out.probs, empty)
        return Result(mask, float(out.quality[0]), _disagreement(out), probs)

    @staticmethod
    def _check_click(click: Click, shape: tuple[int, int]) -> None:
        if not isinstance(click, Click):
            raise ValueError(f"expected a Click, got {type(click).__name__}")
        if not (np.isfinite(click.y) and np.isfinite(click.x)):
            raise ValueError(f"click coordinates must be finite, got {click}")
        if not (0 <= click.y < shape[0] and 0 <= click.x < shape[1]):
            raise ValueError(f"click (y={click.y}, x={click.x}) is outside the "
                             f"{shape[0]}x{shape[1]} image")


def _disagreement(out: NetOutput) -> float:
    """The spread between the diversified heads."""
    return float(out.head_probs.std(0).mean())


@dataclass
class Session:
    """Clicks on one image, with undo. Not thread-safe: one session per interaction."""

    predictor: Predictor
    image: PreparedImage
    state: SessionState
    _history: list = field(default_factory=list, repr=False)
    _result: Result | None = field(default=None, repr=False)

    @property
    def clicks(self) -> tuple[Click, ...]:
        return self.state.clicks

    @property
    def result(self) -> Result:
        if self._result is None:
            m = self.state.mask
            self._result = Result(m.copy(), self.state.quality)
        return self._result

    def add_click(self, click: Click) -> Result:
        self._history.append((self.state, self._result))
        self.state, self._result = self.predictor.step(self.image, self.state, click)
        return self._result

    def undo(self) -> Result:
        """Back to before the last click; beyond the first click this is a no-op."""
        if self._history:
            self.state, self._result = self._history.pop()
        elif self.state.clicks:  # resumed from a serialised state: replay what remains
            replay = self.predictor.session(self.image, self.state.prior, self.state.box)
            for c in self.state.clicks[:-1]:
                replay.add_click(c)
            self.state, self._result = replay.state, replay.result
        return self.result


def load_predictor(path: str | Path | None = None, *, progressive: bool = True,
                   backend: str = "auto", base_size: int = defaults.BASE_SIZE,
                   zoom_size: int = defaults.ZOOM_SIZE, threads: int = 2,
                   progressive_join: float = defaults.PROGRESSIVE_JOIN,
                   flip: bool = defaults.FLIP_AVERAGE,
                   score_size: int = defaults.SCORE_SIZE,
                   drop_far: str = defaults.DROP_FAR) -> Predictor:
    """The predictor for bundled weights (or `path`), on ONNX Runtime when it is available.

    `backend`: "auto" uses the ONNX file beside the weights when it exists and was exported
    from them (same digest), torch otherwise; "onnx" / "torch" force one. Without torch
    installed (the serving image), only a matching ONNX file can serve.
    `flip`: average each answer with the network's answer on the mirrored view (never for
    score_mask). `score_size`: longer side of score_mask's view. `drop_far`: which far pieces
    no positive click explains are dropped ("new", served: chosen on held-out training objects,
    see cdnet/inference/pieces.py).
    """
    from cdnet.model.files import onnx_path_for, version_of

    if backend not in {"auto", "onnx", "torch"}:
        raise ValueError(f"backend must be auto, onnx or torch, got {backend!r}")
    version = version_of(path)
    onnx_file = onnx_path_for(path)
    runner: Runner | None = None
    if backend == "onnx" and not onnx_file.is_file():
        raise FileNotFoundError(f"no ONNX file {onnx_file}: run clicksmith export-onnx")
    if backend != "torch" and onnx_file.is_file():
        try:
            onnx_runner = OnnxRunner(onnx_file, threads)  # one session: checked, then used
        except ImportError:
            if backend == "onnx":
                raise
        else:
            if backend == "onnx" or onnx_runner.exported_from == version:
                runner = onnx_runner
    if runner is None:
        runner = _torch_runner(path, version, threads)
    if flip:
        runner = FlipAveraged(runner)
    return Predictor(runner, version, base_size, zoom_size, progressive, progressive_join,
                     score_size, drop_far)


def _torch_runner(path: str | Path | None, version: str, threads: int) -> TorchRunner:
    """The weights on torch; without torch, a reason that says how to serve them anyway."""
    try:
        import torch
    except ImportError:
        where = path or "the bundled weights"
        raise RuntimeError(
            f"{where} ({version}) have no ONNX export made from them, and torch is not "
            "installed here (an ONNX-only install such as the serving image): run "
            f"`clicksmith export-onnx{f' --weights {path}' if path else ''}` where torch is "
            "installed, or install torch") from None
    from cdnet.model.io import load_model

    torch.set_num_threads(threads)
    model, _ = load_model(Path(path) if path else None)
    return TorchRunner(model, threads)
