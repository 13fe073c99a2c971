"""The frame pipeline: what the network sees for one click, and how its answer comes back.

In RITM's style, each test-time step is an object that maps the inputs into its frame
(`transform`) and the prediction back out of it (`inv_transform`); a `Frame` stacks the steps
for one network call and undoes them in reverse order:

    photo ─ BoxStep ─ View ─ FlipAveraged ─ network
            image     crop,  (the runner:
            frame     resize  mirrored too)

into the network frame (`Frame.transform`), outermost step first:
  1. `BoxStep`: while no click is positive, the box's centre is the positive click.
  2. `View`: the crop of the photo the network looks at, resized to about `size` pixels: the
     whole photo, the box (first click), a crop around the click (first click, on a project of
     small objects: `cdnet.inference.scale`) or the zoom-in around the mask and the clicks
     (later clicks). The image, the clicks and the mask so far (the prior) are mapped into it.
back to the photo (`Frame.inv_transform`), innermost step first:
  2. `View`: the probabilities, from the network frame back onto the crop. Either the whole
     crop is taken (first click, progressive off) or, progressive, only the regions of change
     the click touches, which are found in the network frame (where the network's detail
     lives) and mapped back inside their bounding box only (a click on a 12 MP photo costs its
     correction, not the crop).
  1. `BoxStep`: the proposal is clamped to the box, wherever it is decided: in the network
     frame before the regions of change are found, and at full resolution where pixels are
     written.

Test-time flip is the innermost step, and it stays in the runner (`runner.FlipAveraged`):
its transform and inverse touch only the network-frame arrays right around the network call
(mirror the image, click maps and prior; mirror the answers back and average), and its inverse
is an average of two runs rather than a map of one answer, so a step next to the network is a
runner wrapping the network. It is the same for every frame, owns no geometry of the photo,
and as a runner it is what `Predictor.label` and `runner.name` report and what benchmarks
swap in and out around any runner.

`Framing` is the policy that picks the frame for a call (which view, the box, whole crop or
progressive) from the predictor's settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import cv2
import numpy as np

from cdnet.clicks import Click
from cdnet.inference.image import PreparedImage
from cdnet.inference.progressive import regions_of_change
from cdnet.inference.views import (
    ZOOM_EXPAND,
    ZOOM_MIN_SIZE,
    View,
    box_mask,
    box_view,
    click_view,
    whole_view,
    zoom_view,
)
from cdnet.model.encoding import CLICK_RADIUS, click_maps

Box = tuple[float, float, float, float]  # y0, x0, y1, x1 in pixels


class NetInput(NamedTuple):
    """What the runner takes, in the network frame."""

    image: np.ndarray  # (H, W, 3) uint8
    clicks: np.ndarray  # (2, H, W) float32 click maps
    prior: np.ndarray  # (H, W) float32: coverage of the mask so far


@dataclass(frozen=True)
class BoxStep:
    """The annotator's box: the object is inside it. Its centre stands for the positive click
    until one is given, and nothing outside it is ever added to the mask."""

    box: Box

    @staticmethod
    def check(box: Box, shape: tuple[int, int]) -> Box:
        """`box` as floats, clipped to the image; ValueError when nothing of it is left."""
        y0, x0, y1, x1 = (float(v) for v in box)
        y0, x0 = max(0.0, y0), max(0.0, x0)
        y1, x1 = min(float(shape[0]), y1), min(float(shape[1]), x1)
        if not (y1 - y0 >= 1 and x1 - x0 >= 1):
            raise ValueError(f"box {box} is empty or outside the {shape[0]}x{shape[1]} image")
        return (y0, x0, y1, x1)

    @property
    def centre(self) -> Click:
        y0, x0, y1, x1 = self.box
        return Click((y0 + y1) / 2, (x0 + x1) / 2)

    def transform_clicks(self, clicks: tuple[Click, ...]) -> tuple[Click, ...]:
        """The clicks the network sees: the box's centre first while none is positive."""
        return clicks if any(c.positive for c in clicks) else (self.centre,) + clicks

    def inv_transform_net(self, view: View, proposed: np.ndarray) -> np.ndarray:
        """`proposed` (bool, the network frame of `view`) with the pixels outside the box off."""
        sy, sx = view.scale
        y0, x0, y1, x1 = self.box
        proposed &= box_mask(((y0 - view.y0) * sy, (x0 - view.x0) * sx,
                              (y1 - view.y0) * sy, (x1 - view.x0) * sx), proposed.shape)
        return proposed

    def inv_transform(self, proposed: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        """`proposed` (bool, full resolution, its pixel (0, 0) at image pixel `origin`) with the
        pixels outside the box off."""
        proposed &= box_mask(self.box, proposed.shape, origin)
        return proposed


@dataclass(frozen=True)
class Frame:
    """The steps for one network call: the box (if any), then the view; `join` is how the
    answer comes back: None takes the whole crop, a number refines progressively (changes
    closer than `join` network pixels count as one region)."""

    view: View
    box: BoxStep | None = None
    join: float | None = None

    def transform(self, image: PreparedImage, clicks: tuple[Click, ...],
                  mask: np.ndarray | None = None) -> NetInput:
        """The image, the clicks and the mask so far (None: nothing) in the network frame."""
        view = self.view
        if self.box is not None:
            clicks = self.box.transform_clicks(clicks)
        if view.covers(image.shape):  # the same for every click on this image: computed once
            rgb = image.cached(("view", view), lambda: view.transform_image(image))
        else:
            rgb = view.transform_image(image)
        maps = click_maps(view.transform_clicks(clicks), view.out_h, view.out_w)
        if mask is None:
            prior = np.zeros((view.out_h, view.out_w), np.float32)
        else:
            prior = view.transform_mask(mask)
        return NetInput(rgb, maps, prior)

    def inv_transform(self, probs: np.ndarray, previous: np.ndarray,
                      net: NetInput | None = None, click: Click | None = None,
                      ) -> tuple[np.ndarray, Callable[[], np.ndarray] | np.ndarray]:
        """The network's probabilities (network frame) back onto the photo: the new mask, and
        its full-resolution probabilities (built on first use). `previous` is the mask before
        this call; progressive refinement also needs this call's `net` input and `click`."""
        if self.join is None:
            return self._take_crop(probs, previous)
        if net is None or click is None:
            raise ValueError("progressive refinement needs the network input and the click")
        return self._refine(probs, previous, net.prior, click)

    def _take_crop(self, probs: np.ndarray, previous: np.ndarray):
        """Every pixel of the crop takes the network's answer."""
        view = self.view
        crop = view.crop_probs(probs)
        proposed = crop > 0.5
        if self.box is not None:
            proposed = self.box.inv_transform(proposed, (view.y0, view.x0))
        if view.covers(previous.shape):  # nothing of `previous` is left: no paste to make
            return proposed, crop
        return view.paste(previous, proposed), partial(view.paste_probs, previous, crop)

    def _refine(self, probs: np.ndarray, previous: np.ndarray, prior: np.ndarray,
                click: Click):
        """Progressive: only the regions of change that the click touches are taken."""
        view = self.view
        proposed = probs > 0.5
        if self.box is not None:
            proposed = self.box.inv_transform_net(view, proposed)
        c = view.transform_clicks([click])[0]
        region = regions_of_change(prior > 0.5, proposed, (c.y, c.x), CLICK_RADIUS,
                                   self.join).view(np.uint8)
        # with the click's own disk (a change thinner than a network pixel is still a change),
        # grown by a pixel to hold the blended boundary between network pixels
        cv2.circle(region, (int(round(c.x)), int(round(c.y))), int(np.ceil(CLICK_RADIUS)), 1, -1)
        region = cv2.dilate(region, np.ones((3, 3), np.uint8))
        bx, by, bw, bh = cv2.boundingRect(region)
        rows, cols = view.crop_span(by, by + bh, 0), view.crop_span(bx, bx + bw, 1)
        take = view.crop_nearest(region, rows, cols).view(bool)
        fine = view.crop_probs_region(probs, rows, cols) > 0.5
        oy, ox = view.y0 + rows.start, view.x0 + cols.start
        if self.box is not None:
            fine = self.box.inv_transform(fine, (oy, ox))
        mask = previous.copy()
        target = mask[oy : view.y0 + rows.stop, ox : view.x0 + cols.stop]
        np.copyto(target, fine, where=take)
        return mask, partial(view.inv_transform, probs, previous)


@dataclass(frozen=True)
class Framing:
    """Which frame the network gets, from the predictor's settings: the longer side of the
    whole-image view (`base_size`) and of the box and zoom-in views (`zoom_size`), and
    progressive refinement (`join`, network px) or None for taking the whole crop.
    `first_view` (image px): the first click sees a crop of that side around it instead of the
    whole image; `zoom_min` (image px): the zoom-in's smallest side; `zoom_expand`: the zoom-in
    is the box of the mask and the clicks this many times wide. The three follow a project's
    object scale (`cdnet.inference.scale`); None, ZOOM_MIN_SIZE and ZOOM_EXPAND are the general
    frames."""

    base_size: int
    zoom_size: int
    join: float | None
    first_view: int | None = None
    zoom_min: int = ZOOM_MIN_SIZE
    zoom_expand: float = ZOOM_EXPAND

    def for_click(self, previous: np.ndarray, clicks: tuple[Click, ...],
                  box: Box | None) -> Frame:
        """The frame for the newest of `clicks` on a mask so far `previous`. The first click
        (nothing masked yet) sees the box, the crop around it (`first_view`) or the whole image,
        and takes the whole crop; later
        clicks see the zoom-in around the mask and the clicks."""
        step = BoxStep(box) if box else None
        if len(clicks) == 1 and not previous.any():
            if box:
                view = box_view(box, previous.shape, self.zoom_size)
            elif self.first_view:
                view = click_view(clicks[0], previous.shape, self.zoom_size, self.first_view)
            else:
                view = whole_view(previous.shape, self.base_size)
            return Frame(view, step)
        view = zoom_view(previous, clicks, self.zoom_size, self.zoom_min, self.zoom_expand)
        return Frame(view, step, self.join)

    def for_mask(self, mask: np.ndarray, size: int) -> Frame:
        """The frame in which the network judges `mask` (no clicks), `size` px on its longer
        side: around the mask, or the whole image when it is empty."""
        view = zoom_view(mask, (), size) if mask.any() else whole_view(mask.shape, size)
        return Frame(view)

    def whole(self, shape: tuple[int, int]) -> Frame:
        return Frame(whole_view(shape, self.base_size))
