"""Masks in Label Studio results: brush RLE (encode, strict decode), polygons, result items.

Why the SDK's RLE (label_studio_sdk.converter.brush): it is the format the Label Studio editor
decodes, so using its own encoder keeps our masks byte-compatible with what annotators paint.
Label Studio stores a brush region as its RLE of an RGBA image (alpha = mask) at the image's
original resolution.

One encoder (`mask_to_rle`), one strict decoder (`rle_to_mask`, and `decode_brush` for a whole
result item: both raise ValueError with the reason, so a region of another image size is never
reshaped into nonsense), and one builder of result items (`result_items`), used by the
backend's /predict answer and the pre-label job alike.

Bitmask regions (Label Studio 1.20+ `BitmaskLabels`) carry the mask as a PNG data URL instead of
RLE. Their shape, from Label Studio's own source (HumanSignal/label-studio, 1.23):
- web/libs/editor/src/regions/BitmaskRegion.jsx: `serialize()` returns
  `{imageDataURL}` through the Image's `createSerializedResult` (which adds `original_width`,
  `original_height`, `image_rotation`); the URL is `canvas.toDataURL("image/png")` of a canvas
  of the image's natural size holding black pixels on transparent (`getImageSnapshotCanvas`);
  reading, `restoreFromImageDataURL` draws the PNG at its own size and a pixel belongs to the
  region when its alpha is above 0 (`regions/BitmaskRegion/utils.ts`,
  `getCanvasPixelBounds` and `isHoveringNonTransparentPixel`); a result is read as a bitmask
  region when `"imageDataURL" in value` (`Registry.addRegionType` there).
- web/libs/editor/src/tags/control/BitmaskLabels.jsx: the control registers as
  `bitmasklabels`, so `regions/Result.js` `serialize()` writes `type: "bitmasklabels"` and the
  labels under `value.bitmasklabels` (the control's valueType).
- label-studio-sdk 2.x, label_studio_sdk/label_interface/control_tags.py: `BitmaskLabelsTag`
  (`_label_attr_name = "bitmasklabels"`, JSON schema requiring `imageDataURL` and
  `bitmasklabels`, `format` optional) and `BitmaskLabelsValue`.
`mask_to_data_url` / `data_url_to_mask` are the pair; `mask_item` builds the item of either
control from its tag, `decode_mask` reads either kind of region.
"""

from __future__ import annotations

import base64
import binascii
import uuid

import cv2
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """A bool/0-1 HxW mask as Label Studio brush RLE (alpha 255 inside the mask)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    alpha = mask.astype(bool, copy=False).view(np.uint8) * np.uint8(255)
    return [int(v) for v in mask2rle(alpha)]


class RleText(list):
    """A brush RLE list not parsed yet: its JSON text (`text`), read when it is decoded.

    The backend leaves the RLE of a /predict task's stored regions unparsed (backend/
    lazy_rle.py): a task of 100 masks carries ~900 KB of them and a click decodes at most one.
    As a list it is empty; `rle_to_mask` (and so `decode_brush`, `decode_mask`) parses it
    first, so every decoder reads it as the list it stands for."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        super().__init__()
        self.text = text

    def values(self) -> object:
        """The parsed list (ValueError when the text is not JSON)."""
        import ujson

        try:
            return ujson.loads(self.text)
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"brush RLE is not a JSON list: {exc}") from None


def rle_to_mask(rle: object, height: int, width: int) -> np.ndarray:
    """Decode Label Studio brush RLE of a `height` x `width` image to a bool mask.

    ValueError when the RLE is malformed or encodes a different number of pixels, so a stroke
    from another image size can never be silently reshaped into nonsense.
    """
    if isinstance(rle, RleText):
        rle = rle.values()
    if not isinstance(rle, list) or not rle:
        raise ValueError("brush RLE must be a non-empty list of byte values")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rle):
        raise ValueError("brush RLE must hold integers 0..255")
    # the header's value count, checked before decoding: the decoder allocates what it says
    # (a 55 KB RLE can claim 2**30 values), so a count that is not the image's is never decoded
    count = int.from_bytes(bytes(rle[:4]), "big") if len(rle) >= 4 else 0
    if count != height * width * 4:
        raise ValueError(f"brush RLE holds {count // 4} pixels, the image has {height}x{width}")
    try:
        flat = decode_rle(rle)
    except Exception as exc:  # truncated bit streams raise ValueError/IndexError inside the SDK
        raise ValueError(f"brush RLE cannot be decoded: {exc}") from None
    if flat.size != height * width * 4:
        raise ValueError(
            f"brush RLE holds {flat.size // 4} pixels, the image has {height}x{width}"
        )
    return flat.reshape(height, width, 4)[:, :, 3] > 127


def _size(value: object, what: str) -> int:
    """A positive pixel count (an int, or a float holding one, as JSON may give)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"brush result has no numeric {what}")
    if value != int(value) or value <= 0:
        raise ValueError(f"brush result {what} {value!r} is not a positive whole number")
    return int(value)


def decode_brush(item: object) -> np.ndarray:
    """A brushlabels result item as a bool HxW mask (ValueError naming what is wrong)."""
    if not isinstance(item, dict):
        raise ValueError("a result item must be an object")
    value = item.get("value")
    if not isinstance(value, dict) or "rle" not in value:
        raise ValueError("brush result lacks value.rle")
    if value.get("format", "rle") != "rle":
        raise ValueError(f"brush result format {value.get('format')!r} is not rle")
    height = _size(item.get("original_height"), "original_height")
    width = _size(item.get("original_width"), "original_width")
    return rle_to_mask(value["rle"], height, width)


_DATA_URL_PREFIX = "data:image/png;base64,"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def mask_to_data_url(mask: np.ndarray) -> str:
    """A bool/0-1 HxW mask as a Label Studio bitmask: a PNG data URL of the same size, black
    (0, 0, 0, 255) inside the mask and transparent (0, 0, 0, 0) outside, as the editor's own
    `getImageDataURL` writes it."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[:, :, 3] = mask.astype(bool, copy=False).view(np.uint8) * np.uint8(255)
    ok, png = cv2.imencode(".png", rgba, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGBA array
        raise ValueError("the mask could not be encoded as PNG")
    return _DATA_URL_PREFIX + base64.b64encode(png.tobytes()).decode("ascii")


def data_url_to_mask(url: object, height: int, width: int) -> np.ndarray:
    """Decode a Label Studio bitmask (PNG data URL) of a `height` x `width` image to a bool mask.

    A pixel is in the mask when its alpha is above 0, which is what the editor shows as the
    region; a PNG without an alpha channel is opaque, so all of it is the region. ValueError
    when the URL is not a base64 PNG data URL or the PNG is of another size (its header is
    checked before decoding, so a small PNG claiming a huge size is never decompressed).
    """
    if not isinstance(url, str) or not url.startswith("data:"):
        raise ValueError("bitmask imageDataURL must be a data: URL")
    header, sep, payload = url.partition(",")
    if not sep or header.lower() != _DATA_URL_PREFIX[:-1]:
        raise ValueError(f"bitmask imageDataURL is {header[:40]!r}, not data:image/png;base64")
    try:
        png = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("bitmask imageDataURL is not valid base64") from None
    if len(png) < 24 or not png.startswith(_PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("bitmask imageDataURL does not hold a PNG")
    size = (int.from_bytes(png[20:24], "big"), int.from_bytes(png[16:20], "big"))
    if size != (height, width):
        raise ValueError(f"bitmask PNG is {size[1]}x{size[0]}, the image has {width}x{height}")
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.shape[:2] != (height, width):
        raise ValueError("bitmask PNG cannot be decoded")
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, 3] > 0
    return np.ones((height, width), bool)


def decode_bitmask(item: object) -> np.ndarray:
    """A bitmasklabels result item as a bool HxW mask (ValueError naming what is wrong)."""
    if not isinstance(item, dict):
        raise ValueError("a result item must be an object")
    value = item.get("value")
    if not isinstance(value, dict) or "imageDataURL" not in value:
        raise ValueError("bitmask result lacks value.imageDataURL")
    height = _size(item.get("original_height"), "original_height")
    width = _size(item.get("original_width"), "original_width")
    return data_url_to_mask(value["imageDataURL"], height, width)


# the result type and value keys of each control that receives a mask (by its tag)
MASK_TYPES = {"BrushLabels": "brushlabels", "BitmaskLabels": "bitmasklabels"}


def decode_mask(item: object) -> np.ndarray:
    """A brushlabels or bitmasklabels result item as a bool HxW mask (ValueError otherwise)."""
    kind = str(item.get("type", "")).lower() if isinstance(item, dict) else ""
    if kind == "bitmasklabels":
        return decode_bitmask(item)
    return decode_brush(item)


def mask_to_polygons(mask: np.ndarray, min_area: float = 16.0,
                     min_iou: float = 0.98) -> list[list[list[float]]]:
    """The mask's parts as Label Studio polygons: lists of [x%, y%] points, largest first.

    Simplified by cdnet.tools.polygons with the coarsest tolerance that keeps IoU >= `min_iou`
    (few vertices keep the editor responsive); holes are joined to their part's outline through
    a zero-width bridge, since Label Studio polygons have no holes. Parts smaller than
    `min_area` pixels are left out when the rest still meets `min_iou` (specks would each be a
    region to delete).
    """
    from cdnet.tools.polygons import keyhole_ring, mask_to_parts

    mask = mask.astype(bool)
    h, w = mask.shape
    kept = mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    small = stats[1:, cv2.CC_STAT_AREA] < min_area
    if small.any():
        drop = np.concatenate([[False], small])
        lost = int(stats[1:, cv2.CC_STAT_AREA][small].sum())
        if 1.0 - lost / max(int(mask.sum()), 1) >= min_iou:  # IoU of the kept part vs the mask
            kept = mask & ~drop[labels]
    polygons = []
    for part in mask_to_parts(kept, min_iou=min_iou, keyhole=True):
        ring = keyhole_ring(part)
        if len(ring) < 3:
            continue
        polygons.append([[float(x) * 100.0 / w, float(y) * 100.0 / h] for x, y in ring.tolist()])
    return polygons


def path_points(path: np.ndarray, tolerance: float = 1.0) -> list[tuple[float, float]]:
    """An (N, 2) (y, x) pixel path as simplified (x, y) points for an open polygon."""
    pts = np.ascontiguousarray(path[:, ::-1], dtype=np.int32).reshape(-1, 1, 2)
    approx = cv2.approxPolyDP(pts, tolerance, False).reshape(-1, 2)
    return [(float(x), float(y)) for x, y in approx.tolist()]


def _new_id() -> str:
    return uuid.uuid4().hex[:10]


def mask_value(mask: np.ndarray, tag: str, label: str) -> dict:
    """The `value` of a mask region of control tag `tag` (BrushLabels or BitmaskLabels)."""
    if tag == "BitmaskLabels":
        return {"imageDataURL": mask_to_data_url(mask), "bitmasklabels": [label]}
    if tag == "BrushLabels":
        return {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]}
    raise ValueError(f"a {tag} control does not receive masks")


def result_items(mask: np.ndarray, *, brush: str, image: str, label: str, score: float,
                 polygon: str | None = None, path: np.ndarray | None = None,
                 tag: str = "BrushLabels", region_id: str | None = None) -> list[dict]:
    """Label Studio result items for `mask` (HxW, the image's original size) of `label`.

    Always the mask region (control `brush` on Image `image`, in the format of its `tag`:
    BrushLabels RLE or BitmaskLabels PNG, see `mask_value`); with a PolygonLabels control
    `polygon`: the mask's parts as closed polygons too, led by `path` (an open edge lasso's
    (N, 2) (y, x) pixels, shown as an open polygon) when it has two points or more. The mask
    item's `id` is `region_id` when given (an interactive session's one region: Label Studio
    stores an accepted suggestion under its id, so the same id updates that region in place),
    and its polygons' ids are derived from it (`<region_id>_<part>`, the lasso path's
    `<region_id>_path`); without it every id is fresh and random. The rest is fixed, key order
    included (what the backend answered before this builder was shared).
    """
    h, w = mask.shape
    common = {
        "to_name": image,
        "original_width": int(w),
        "original_height": int(h),
        "image_rotation": 0,
        "score": float(score),
        "readonly": False,
    }
    value = mask_value(mask, tag, label)  # ValueError for a tag that receives no mask
    items = [{
        "id": region_id or _new_id(),
        "from_name": brush,
        "type": MASK_TYPES[tag],
        "value": value,
        **common,
    }]
    if polygon is None:
        return items
    if path is not None and len(path) > 1:
        # an open edge lasso: show its snapped path (the mask itself is unchanged yet)
        items.append({
            "id": f"{region_id}_path" if region_id else _new_id(),
            "from_name": polygon,
            "type": "polygonlabels",
            "value": {
                "points": [[float(x) * 100.0 / w, float(y) * 100.0 / h]
                           for x, y in path_points(path)],
                "closed": False,
                "polygonlabels": [label],
            },
            "meta": {"text": ["lasso path"]},
            **common,
        })
    for k, points in enumerate(mask_to_polygons(mask)):
        items.append({
            "id": f"{region_id}_{k}" if region_id else _new_id(),
            "from_name": polygon,
            "type": "polygonlabels",
            "value": {"points": points, "closed": True, "polygonlabels": [label]},
            **common,
        })
    return items


def brush_item(mask: np.ndarray, *, brush: str, image: str, label: str,
               score: float, tag: str = "BrushLabels") -> dict:
    """The one mask result item of `mask` (`result_items` without polygons), in the format of
    the control's `tag` (BrushLabels: RLE, BitmaskLabels: PNG)."""
    (item,) = result_items(mask, brush=brush, image=image, label=label, score=score, tag=tag)
    return item
