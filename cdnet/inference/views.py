"""The frame the network sees: a crop of the image resized to a multiple of 16.

One `View` covers the crop-and-resize steps: the whole-image resize and the box (first click)
and the zoom-in around the object (later clicks). `transform_*` maps into the network frame,
`inv_transform` maps predictions back, pasting them over the previous full-resolution map. The
predictor uses views through its frame pipeline (`cdnet.inference.frame`), which chooses the
view and stacks it with the box.

Work stays proportional to the network frame, not to the photo: the image is sampled from a
cached pyramid level only a little larger than the frame, a large crop's mask is sampled at 2x2
points per network pixel, and a progressive click maps predictions back only inside the region
it corrects (`crop_probs_region`, `crop_nearest`); `crop_probs` / `paste` map the whole crop
where every pixel is taken (first click, progressive off).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from cdnet.clicks import Click
from cdnet.inference.image import PreparedImage

ZOOM_EXPAND = 1.4
ZOOM_MIN_SIZE = 200


def _multiple_of_16(n: float) -> int:
    return max(16, int(round(n / 16)) * 16)


@dataclass(frozen=True)
class View:
    y0: int
    x0: int
    y1: int
    x1: int
    out_h: int
    out_w: int

    @classmethod
    def fit(cls, y0: int, x0: int, y1: int, x1: int, size: int) -> View:
        """Crop (y0:y1, x0:x1) resized so its longer side is about `size` network pixels."""
        h, w = y1 - y0, x1 - x0
        s = size / max(h, w)
        return cls(y0, x0, y1, x1, _multiple_of_16(h * s), _multiple_of_16(w * s))

    @property
    def scale(self) -> tuple[float, float]:
        return self.out_h / (self.y1 - self.y0), self.out_w / (self.x1 - self.x0)

    @property
    def is_whole(self) -> bool:
        return self.y0 == 0 and self.x0 == 0

    def covers(self, shape: tuple[int, int]) -> bool:
        """Whether the crop is all of an image of `shape`."""
        return self.is_whole and self.y1 == shape[0] and self.x1 == shape[1]

    def crop(self, full: np.ndarray) -> np.ndarray:
        """The view's region of a full-resolution map (a view, not a copy)."""
        return full[self.y0 : self.y1, self.x0 : self.x1]

    def transform_image(self, image: np.ndarray | PreparedImage) -> np.ndarray:
        """The crop resized to the network frame, read from the smallest pyramid level that
        still has at least one pixel per network pixel (anti-aliased by the pyramid)."""
        k = 0
        if isinstance(image, PreparedImage):
            while (self.y1 - self.y0) >> (k + 1) >= self.out_h and \
                    (self.x1 - self.x0) >> (k + 1) >= self.out_w:
                k += 1
        if k == 0:
            return self._resize_crop(self.crop(getattr(image, "rgb", image)))
        h, w = image.shape
        src = image.level(k)
        ly, lx = src.shape[0] / h, src.shape[1] / w  # exact level scale (odd sizes round)
        # the crop's region on level k, resampled at about 1:1 so that it starts exactly at
        # the crop's edge (bilinear, sub-pixel shift only), then area-averaged to the frame
        th = max(self.out_h, round((self.y1 - self.y0) * ly))
        tw = max(self.out_w, round((self.x1 - self.x0) * lx))
        ay, ax = (self.y1 - self.y0) * ly / th, (self.x1 - self.x0) * lx / tw
        m = np.array([[ax, 0, 0.5 * ax + self.x0 * lx - 0.5],
                      [0, ay, 0.5 * ay + self.y0 * ly - 0.5]])
        level_crop = cv2.warpAffine(src, m, (tw, th), flags=cv2.INTER_LINEAR |
                                    cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        return self._resize_crop(level_crop)

    def _resize_crop(self, crop: np.ndarray) -> np.ndarray:
        shrink = crop.shape[0] > self.out_h
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(crop, (self.out_w, self.out_h), interpolation=interp)

    def transform_mask(self, mask: np.ndarray) -> np.ndarray:
        """The mask's crop as float32 coverage in the network frame.

        A crop at least twice the frame (a zoomed-out photo) is sampled at 2x2 points per
        network pixel instead of area-averaged: coverage in quarters, at a cost that follows
        the frame rather than the crop (a 2,500 px crop area-averaged costs as much as the
        network). Smaller crops are area-averaged exactly (in uint8, several times faster
        than in float)."""
        h, w = self.y1 - self.y0, self.x1 - self.x0
        if h >= 2 * self.out_h and w >= 2 * self.out_w:
            ys = self.y0 + ((np.arange(2 * self.out_h) + 0.5) * (h / (2 * self.out_h)))
            xs = self.x0 + ((np.arange(2 * self.out_w) + 0.5) * (w / (2 * self.out_w)))
            points = np.take(np.take(mask.view(np.uint8), ys.astype(np.intp), axis=0),
                             xs.astype(np.intp), axis=1) * np.uint8(255)
            small = cv2.resize(points, (self.out_w, self.out_h), interpolation=cv2.INTER_AREA)
        else:
            small = self._resize_crop(self.crop(mask).view(np.uint8) * np.uint8(255))
        return small.astype(np.float32) * np.float32(1 / 255)

    def transform_clicks(self, clicks: Sequence[Click]) -> list[Click]:
        sy, sx = self.scale
        # pixel centres: full-res pixel i spans [i, i+1), its centre maps to (i + .5) * s - .5
        return [Click((c.y - self.y0 + 0.5) * sy - 0.5, (c.x - self.x0 + 0.5) * sx - 0.5,
                      c.positive) for c in clicks]

    def crop_probs(self, probs: np.ndarray) -> np.ndarray:
        """Network-frame probabilities resized to the crop (float32, crop-sized)."""
        h, w = self.y1 - self.y0, self.x1 - self.x0
        return cv2.resize(probs, (w, h), interpolation=cv2.INTER_LINEAR)

    def row_blend(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every crop row: the two network-frame rows that `crop_probs` blends and the
        weight of the second, as cv2.resize INTER_LINEAR samples them."""
        n_net, n_crop = self.out_h, self.y1 - self.y0
        pos = (np.arange(n_crop) + 0.5) * (n_net / n_crop) - 0.5
        lo = np.floor(pos)
        weight = (pos - lo).astype(np.float32)
        lo = lo.astype(np.intp)
        weight[(lo < 0) | (lo >= n_net - 1)] = 0.0
        lo = np.clip(lo, 0, n_net - 1)
        return lo, np.minimum(lo + 1, n_net - 1), weight

    def crop_probs_region(self, probs: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """`crop_probs(probs)[rows, cols]` (to float rounding), computing only those rows:
        a local correction on a zoomed-out photo costs its own size, not the crop's. On a crop
        smaller than its network frame a region between two crop pixels' centres holds no crop
        pixel: the answer is then empty (cv2.resize refuses an empty band)."""
        lo, hi, weight = (a[rows] for a in self.row_blend())
        n_cols = len(range(*cols.indices(self.x1 - self.x0)))
        if len(lo) == 0 or n_cols == 0:
            return np.zeros((len(lo), n_cols), np.float32)
        band = probs[lo] * (1 - weight)[:, None] + probs[hi] * weight[:, None]
        # the horizontal pass is cv2's own (same sampling as crop_probs, and fast)
        wide = cv2.resize(band, (self.x1 - self.x0, band.shape[0]),
                          interpolation=cv2.INTER_LINEAR)
        return wide[:, cols]

    def nearest_index(self, axis: int) -> np.ndarray:
        """For every crop row (axis 0) or column (axis 1): the network-frame pixel over it."""
        n_net = self.out_h if axis == 0 else self.out_w
        n_crop = self.y1 - self.y0 if axis == 0 else self.x1 - self.x0
        idx = ((np.arange(n_crop) + 0.5) * (n_net / n_crop)).astype(np.intp)
        return np.minimum(idx, n_net - 1)

    def crop_span(self, start: int, stop: int, axis: int) -> slice:
        """The crop rows (axis 0) or columns whose network-frame pixel is in [start, stop)."""
        idx = self.nearest_index(axis)
        return slice(int(np.searchsorted(idx, start)), int(np.searchsorted(idx, stop)))

    def crop_nearest(self, small: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """A network-frame map sampled (nearest) at crop pixels `rows`, `cols`."""
        picked = np.take(small, self.nearest_index(0)[rows], axis=0)
        return np.take(picked, self.nearest_index(1)[cols], axis=1)

    def paste(self, full: np.ndarray, crop: np.ndarray) -> np.ndarray:
        """A copy of `full` with `crop` written over the view's region."""
        out = full.copy()
        out[self.y0 : self.y1, self.x0 : self.x1] = crop
        return out

    def paste_probs(self, previous: np.ndarray, crop_probs: np.ndarray) -> np.ndarray:
        """Full-resolution float32 probabilities: `crop_probs` inside the view, `previous`
        (a mask or a probability map) elsewhere."""
        out = previous.astype(np.float32)  # a new array already: write into it
        out[self.y0 : self.y1, self.x0 : self.x1] = crop_probs
        return out

    def inv_transform(self, probs: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Network-frame probabilities pasted into a copy of the full-resolution `previous`."""
        return self.paste_probs(previous, self.crop_probs(probs))

    def box_mask(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """The pixels of `box` (y0, x0, y1, x1, full-resolution) inside this view's crop."""
        return box_mask(box, (self.y1 - self.y0, self.x1 - self.x0), (self.y0, self.x0))


def box_mask(box: tuple[float, float, float, float], shape: tuple[int, int],
             origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A bool mask of `shape` whose pixel (0, 0) is image pixel `origin`, True inside `box`
    (y0, x0, y1, x1 in image pixels; a pixel counts when the box covers any of it)."""
    y0, x0, y1, x1 = box
    m = np.zeros(shape, bool)
    m[max(int(y0) - origin[0], 0) : max(int(np.ceil(y1)) - origin[0], 0),
      max(int(x0) - origin[1], 0) : max(int(np.ceil(x1)) - origin[1], 0)] = True
    return m


def whole_view(shape: tuple[int, int], size: int) -> View:
    return View.fit(0, 0, shape[0], shape[1], size)


def box_view(box: tuple[float, float, float, float], shape: tuple[int, int], size: int,
             expand: float = ZOOM_EXPAND, min_size: int = ZOOM_MIN_SIZE) -> View:
    """A view of `box` (y0, x0, y1, x1) expanded `expand` times, at least `min_size`, clamped."""
    h, w = shape
    y0, x0, y1, x1 = box
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    bh = min(h, max((y1 - y0) * expand, min_size))
    bw = min(w, max((x1 - x0) * expand, min_size))
    ny0 = int(np.clip(round(cy - bh / 2), 0, h - bh))
    nx0 = int(np.clip(round(cx - bw / 2), 0, w - bw))
    return View.fit(ny0, nx0, ny0 + int(round(bh)), nx0 + int(round(bw)), size)


def click_view(click: Click, shape: tuple[int, int], size: int, side: int) -> View:
    """A view of about `side` x `side` image pixels centred on `click` (clamped to the image):
    the first click's frame on a project of small objects (`cdnet.inference.scale`)."""
    return box_view((click.y, click.x, click.y + 1, click.x + 1), shape, size, min_size=side)


def zoom_view(mask: np.ndarray, clicks: Sequence[Click], size: int,
              min_size: int = ZOOM_MIN_SIZE, expand: float = ZOOM_EXPAND) -> View:
    """RITM-style zoom-in: around the current mask, the positive clicks and the newest click,
    their box `expand` times wide and at least `min_size` image pixels a side.

    The newest click is included whatever its sign: a negative click outside the object's box
    (removing a stray blob) must be inside the frame the network sees.
    """
    ys, xs = [], []
    bx, by, bw, bh = cv2.boundingRect(mask.view(np.uint8))  # (0, 0, 0, 0) when empty
    if bw:
        ys += [by, by + bh]
        xs += [bx, bx + bw]
    for i, c in enumerate(clicks):
        if c.positive or i == len(clicks) - 1:
            ys += [c.y, c.y + 1]
            xs += [c.x, c.x + 1]
    if not ys:
        return whole_view(mask.shape, size)
    return box_view((min(ys), min(xs), max(ys), max(xs)), mask.shape, size, expand=expand,
                    min_size=min_size)
