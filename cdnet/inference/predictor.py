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
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import cv2
import numpy as np

from cdnet.clicks import Click
from cdnet.inference import defaults
from cdnet.inference.image import PreparedImage, as_mask
from cdnet.inference.progressive import regions_of_change
from cdnet.inference.runner import FlipAveraged, NetOutput, OnnxRunner, Runner, TorchRunner
from cdnet.inference.views import View, box_mask, box_view, whole_view, zoom_view
from cdnet.model.encoding import CLICK_RADIUS, click_maps

Box = tuple[float, float, float, float]  # y0, x0, y1, x1 in pixels


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


@dataclass(frozen=True)
class Predictor:
    runner: Runner
    model_version: str
    base_size: int = defaults.BASE_SIZE
    zoom_size: int = defaults.ZOOM_SIZE
    progressive: bool = True
    progressive_join: float = defaults.PROGRESSIVE_JOIN  # network px: nearer changes join

    @property
    def label(self) -> str:
        """The model version, marked when test-time flip is on: reports must tell them apart."""
        return self.model_version + (" +flip" if isinstance(self.runner, FlipAveraged) else "")

    # --- one-shot API -----------------------------------------------------------------
    def prepare(self, image: np.ndarray | PreparedImage) -> PreparedImage:
        return PreparedImage.of(image)

    def predict(self, image, clicks: Sequence[Click] = (), prior_mask: np.ndarray | None = None,
                box: Box | None = None) -> Result:
        s = self.session(image, prior_mask=prior_mask, box=box)
        for c in clicks:
            s.add_click(c)
        if not clicks and prior_mask is None:
            return self._zero_click(s.image, box)
        return s.result

    def session(self, image, prior_mask: np.ndarray | None = None, box: Box | None = None,
                state: SessionState | None = None) -> Session:
        img = self.prepare(image)
        if state is None:
            prior = None if prior_mask is None else as_mask(prior_mask, img.shape)
            box = None if box is None else self._check_box(box, img.shape)
            mask = prior.copy() if prior is not None else np.zeros(img.shape, bool)
            quality = self.score_mask(img, prior) if prior is not None else 0.0
            state = SessionState((), mask, prior, box, quality)
        elif state.mask.shape != img.shape:
            raise ValueError(f"session state is for a {state.mask.shape} image, got {img.shape}")
        return Session(self, img, state)

    def score_mask(self, image, mask: np.ndarray) -> float:
        """Predicted IoU of any given mask: the network judges it as a prior, with no clicks."""
        img = self.prepare(image)
        mask = as_mask(mask, img.shape, "mask")
        view = zoom_view(mask, (), self.zoom_size) if mask.any() else self._whole(img)
        out = self._run(img, view, (), view.transform_mask(mask))
        return float(out.quality[1])

    # --- the step -------------------------------------------------------------------
    def step(self, image: PreparedImage, state: SessionState, click: Click) -> tuple[
            SessionState, Result]:
        """State after one more click, and its result. Pure: `state` is not modified."""
        self._check_click(click, image.shape)
        clicks = state.clicks + (click,)
        first = not state.clicks and not state.mask.any()
        if first:
            view = box_view(state.box, image.shape, self.zoom_size) if state.box else \
                self._whole(image)
        else:
            view = zoom_view(state.mask, clicks, self.zoom_size)
        net_clicks = clicks
        if state.box and not any(c.positive for c in clicks):
            y0, x0, y1, x1 = state.box
            net_clicks = (Click((y0 + y1) / 2, (x0 + x1) / 2),) + clicks
        prior = view.transform_mask(state.mask)
        out = self._run(image, view, net_clicks, prior)
        quality = float(out.quality[0])
        disagreement = float(out.head_probs.std(0).mean())
        if self.progressive and not first:
            mask = self._refine_locally(view, state, out.probs, prior, click)
            full_probs = lambda: view.inv_transform(out.probs, state.mask)  # noqa: E731
        else:
            probs = view.crop_probs(out.probs)
            proposed = probs > 0.5
            if state.box:
                proposed &= view.box_mask(state.box)
            mask = view.paste(state.mask, proposed)
            full_probs = partial(view.paste_probs, state.mask, probs)
        new_state = SessionState(clicks, mask, state.prior, state.box, quality)
        return new_state, Result(mask, quality, disagreement, full_probs)

    def _refine_locally(self, view: View, state: SessionState, probs: np.ndarray,
                        prior: np.ndarray, click: Click) -> np.ndarray:
        """Progressive refinement. The regions of change are found in the network frame
        (where the network's own detail lives) and then applied at full resolution inside
        their bounding box only: on a 12 MP photo a click costs its correction, not the crop.
        """
        proposed = probs > 0.5
        if state.box:
            sy, sx = view.scale
            y0, x0, y1, x1 = state.box
            proposed &= box_mask(((y0 - view.y0) * sy, (x0 - view.x0) * sx,
                                  (y1 - view.y0) * sy, (x1 - view.x0) * sx), proposed.shape)
        c = view.transform_clicks([click])[0]
        region = regions_of_change(prior > 0.5, proposed, (c.y, c.x), CLICK_RADIUS,
                                   self.progressive_join).view(np.uint8)
        # with the click's own disk (a change thinner than a network pixel is still a change),
        # grown by a pixel to hold the blended boundary between network pixels
        cv2.circle(region, (int(round(c.x)), int(round(c.y))), int(np.ceil(CLICK_RADIUS)), 1, -1)
        region = cv2.dilate(region, np.ones((3, 3), np.uint8))
        bx, by, bw, bh = cv2.boundingRect(region)
        rows, cols = view.crop_span(by, by + bh, 0), view.crop_span(bx, bx + bw, 1)
        take = view.crop_nearest(region, rows, cols).view(bool)
        fine = view.crop_probs_region(probs, rows, cols) > 0.5
        oy, ox = view.y0 + rows.start, view.x0 + cols.start
        if state.box:
            fine &= box_mask(state.box, fine.shape, (oy, ox))
        mask = state.mask.copy()
        target = mask[oy : view.y0 + rows.stop, ox : view.x0 + cols.stop]
        np.copyto(target, fine, where=take)
        return mask

    # --- internals ------------------------------------------------------------------
    def _zero_click(self, image: PreparedImage, box: Box | None) -> Result:
        """No clicks, no prior: the network's guess of the main object (or the box's object)."""
        shape = image.shape
        if box is not None:
            box = self._check_box(box, shape)
            y0, x0, y1, x1 = box
            return self.predict(image, [Click((y0 + y1) / 2, (x0 + x1) / 2)], box=box)
        view = self._whole(image)
        out = self._run(image, view, (), np.zeros((view.out_h, view.out_w), np.float32))
        probs = view.inv_transform(out.probs, np.zeros(shape, np.float32))
        return Result(probs > 0.5, float(out.quality[0]), float(out.head_probs.std(0).mean()),
                      probs)

    def _whole(self, image: PreparedImage) -> View:
        return whole_view(image.shape, self.base_size)

    def _run(self, image: PreparedImage, view: View, clicks: Sequence[Click],
             prior: np.ndarray) -> NetOutput:
        """The network on `view`; `prior` is the mask already in the network frame
        (`view.transform_mask`), which the caller may need again."""
        if view.is_whole and view.y1 == image.shape[0] and view.x1 == image.shape[1]:
            rgb = image.cached(("view", view), lambda: view.transform_image(image))
        else:
            rgb = view.transform_image(image)
        maps = click_maps(view.transform_clicks(clicks), view.out_h, view.out_w)
        return self.runner(rgb, maps, prior)

    @staticmethod
    def _check_click(click: Click, shape: tuple[int, int]) -> None:
        if not isinstance(click, Click):
            raise ValueError(f"expected a Click, got {type(click).__name__}")
        if not (np.isfinite(click.y) and np.isfinite(click.x)):
            raise ValueError(f"click coordinates must be finite, got {click}")
        if not (0 <= click.y < shape[0] and 0 <= click.x < shape[1]):
            raise ValueError(f"click (y={click.y}, x={click.x}) is outside the "
                             f"{shape[0]}x{shape[1]} image")

    @staticmethod
    def _check_box(box: Box, shape: tuple[int, int]) -> Box:
        y0, x0, y1, x1 = (float(v) for v in box)
        y0, x0 = max(0.0, y0), max(0.0, x0)
        y1, x1 = min(float(shape[0]), y1), min(float(shape[1]), x1)
        if not (y1 - y0 >= 1 and x1 - x0 >= 1):
            raise ValueError(f"box {box} is empty or outside the {shape[0]}x{shape[1]} image")
        return (y0, x0, y1, x1)


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
                   flip: bool = defaults.FLIP_AVERAGE) -> Predictor:
    """The predictor for bundled weights (or `path`), on ONNX Runtime when it is available.

    `backend`: "auto" uses the ONNX file beside the weights when it exists and was exported
    from them (same digest), torch otherwise; "onnx" / "torch" force one.
    `flip`: average each answer with the network's answer on the mirrored view.
    """
    import torch

    from cdnet.model.io import load_model, onnx_path_for

    if backend not in {"auto", "onnx", "torch"}:
        raise ValueError(f"backend must be auto, onnx or torch, got {backend!r}")
    torch.set_num_threads(threads)
    model, version = load_model(Path(path) if path else None)
    runner: Runner
    onnx_file = onnx_path_for(path)
    runner = TorchRunner(model, threads)
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
    if flip:
        runner = FlipAveraged(runner)
    return Predictor(runner, version, base_size, zoom_size, progressive, progressive_join)
