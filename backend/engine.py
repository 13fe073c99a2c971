"""The interaction engine: one prompt + the stored session → the current mask.

The rules (Label Studio sends one kind of smart region per request, so a keypoint request holds
no box and a box request no keypoints; the session carries the others over):
- keypoints: the request holds the session's clicks plus new ones → extend (progressive, only the
  new clicks are run); it holds some but not all of them → a click was deleted: recompute from the
  session's base prior and box with the clicks that remain; it holds none of them → auto-accept
  deleted the accepted regions: the new clicks extend the session.
- a box differing from the session's → start over inside the box (base prior kept).
- brush strokes not yet applied → added to (erasing strokes: removed from) the current mask and
  the base prior; clicks then refine that.
- no session → the base prior is the newest brush region of this label on the task (drafts,
  annotations, predictions), so clicks refine what the annotator already has.
- a session, and that newest task region is not a mask this session answered → the annotator
  edited the answer in Label Studio (brush eraser or brush): it becomes the current mask.
- tool controls (backend.tools: superpixel, lasso, refine) edit the current mask; every edited
  pixel (strokes and adopted edits included) is locked against later clicks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from backend.errors import ApiError
from backend.masks import pack_mask, rle_to_mask, unpack_mask
from backend.prompts import Prompt
from backend.sessions import SessionRecord
from backend.tools import Locks, mask_digest, remember, run_tools
from cdnet.clicks import Click
from cdnet.inference.views import box_mask


@dataclass
class Outcome:
    """The mask to return and how it was obtained (for metrics and tests)."""

    mask: np.ndarray
    quality: float
    kind: str  # new | extend | recompute | repeat | stroke | box | adopt | superpixel | lasso...
    clicks_run: int
    path: np.ndarray | None = None  # an open edge lasso's snapped path, (N, 2) (y, x) pixels


def click_key(c: dict) -> tuple[float, float, bool]:
    return (round(float(c["y"]), 3), round(float(c["x"]), 3), bool(c["positive"]))


def find_seed(task: dict, prompt: Prompt, height: int, width: int) -> np.ndarray | None:
    """The newest brush region of the prompt's label and control in the task, as a mask."""
    for item in task_regions(task, prompt, height, width):
        try:
            return rle_to_mask(item["value"]["rle"], height, width)
        except ValueError:
            continue  # a corrupt stored region is no reason to refuse the click
    return None


def task_regions(task: dict, prompt: Prompt, height: int, width: int) -> list[dict]:
    """The brush regions of the prompt's label and control in the task, newest first.

    Containers (drafts, annotations, predictions) are ordered by their update time, newest
    last; within one, the last matching region wins. Regions of another image size are skipped.
    """
    candidates: list[tuple[str, int, dict]] = []
    for rank, key in enumerate(("predictions", "annotations", "drafts")):
        containers = task.get(key) or []
        if not isinstance(containers, list):
            continue
        for container in containers:
            if not isinstance(container, dict) or container.get("was_cancelled"):
                continue
            stamp = str(container.get("updated_at") or container.get("created_at") or "")
            for item in container.get("result") or []:
                if _is_region_of(item, prompt, height, width):
                    candidates.append((stamp, rank, item))
    ordered = sorted(enumerate(candidates), key=lambda c: (c[1][0], c[1][1], c[0]), reverse=True)
    return [c[1][2] for c in ordered]


def _is_region_of(item: Any, prompt: Prompt, height: int, width: int) -> bool:
    if not isinstance(item, dict) or str(item.get("type", "")).lower() != "brushlabels":
        return False
    value = item.get("value")
    if not isinstance(value, dict) or "rle" not in value:
        return False
    return (
        item.get("from_name") == prompt.brush.name
        and item.get("to_name") == prompt.target.name
        and prompt.label in (value.get("brushlabels") or [])
        and item.get("original_width") == width
        and item.get("original_height") == height
    )


class Engine:
    """Runs prompts against the predictor with a session record; pure apart from the predictor."""

    def __init__(self, predictor: Any, superpixel_size: int = 16) -> None:
        self.p = predictor
        self.superpixel_size = superpixel_size

    def run(
        self,
        image: Any,
        url: str,
        shape: tuple[int, int],
        prompt: Prompt,
        record: SessionRecord | None,
        seed: np.ndarray | None,
        task_region: list | None = None,
        cache: dict | None = None,
    ) -> tuple[Outcome, SessionRecord]:
        """`seed`: the task's newest region when there is no session; `task_region`: its RLE
        when there is one (adopted when it is not a mask this session answered); `cache`: per
        image storage for the tools (superpixels)."""
        from cdnet import SessionState

        h, w = shape
        if record is not None and (record.image != url or tuple(record.shape) != shape):
            record = None  # the task's image changed: the old session means nothing here
        box = prompt.box(h, w)

        if record is None:
            base = seed
            rec_box = box
            session = self._new_session(image, base, rec_box)
            record = SessionRecord(url, shape, [], list(rec_box) if rec_box else None, "", b"")
            kind = "new"
        else:
            base = unpack_mask(record.base) if record.base else None
            rec_box = tuple(record.box) if record.box else None
            state = SessionState.from_bytes(record.state)
            session = self.p.session(image, state=state)
            kind = "repeat"
            if box is not None and (rec_box is None or not np.allclose(box, rec_box, atol=0.5)):
                rec_box = box
                record.clicks = []
                record.extra["implicit"] = []
                session = self._new_session(image, base, rec_box)
                record.box = list(rec_box)
                kind = "box"
        clicks_run = 0
        locks = Locks.load(record.locks[0], record.locks[1], shape)
        if rec_box is not None and kind == "box":
            locks.limit(box_mask(rec_box, shape))
        seen = list(record.extra.get("seen", []))
        if kind == "new" and seed is not None:
            seen = remember(seen, mask_digest(seed))
        elif task_region is not None and kind != "new":
            edited = self._edited_region(task_region, shape, seen)
            if edited is not None:
                seen = remember(seen, mask_digest(edited))
                session, base = self._edit(image, session, base, edited, locks, rec_box)
                kind = "adopt"

        applied = set(record.extra.get("strokes", []))
        fresh = [s for s in prompt.strokes if s.digest not in applied]
        if fresh:
            current = session.result.mask.copy()
            base = np.zeros(shape, bool) if base is None else base.copy()
            for s in fresh:
                m = s.mask(h, w)
                if s.positive:
                    current |= m
                    base |= m
                else:
                    current &= ~m
                    base &= ~m
                locks.fix(m, s.positive)
            if rec_box is not None:
                inside = box_mask(rec_box, shape)
                current &= inside
                base &= inside
            session = self.p.session(image, prior_mask=current, box=rec_box)
            record.extra["strokes"] = sorted(applied | {s.digest for s in fresh})
            kind = "stroke"

        acted = False
        path = None
        if prompt.tool_points or prompt.refines:
            rgb = self.p.prepare(image).rgb
            tools = run_tools(rgb, session.result.mask, prompt, record.extra, locks, cache,
                              self.superpixel_size)
            path = tools.path
            if tools.kinds:
                acted = True
                session, base = self._edit(image, session, base, tools.mask, None, rec_box)
                kind = tools.kinds[-1]

        if prompt.has_points:
            wanted = [c.to_dict() for c in prompt.clicks(h, w)]
            have = [click_key(c) for c in record.clicks]
            kept = [k for k in (click_key(c) for c in wanted) if k in have]
            new = [c for c in wanted if click_key(c) not in have]
            for c in new:  # a click right on a locked pixel of the other polarity frees it
                locks.release_at(float(c["y"]), float(c["x"]), bool(c["positive"]))
            if kept == have or not kept:
                # extension, or auto-accept: the accepted regions are gone, only new clicks came
                for c in new:
                    session.add_click(self._click(c))
                clicks_run += len(new)
                record.clicks = record.clicks + new
                if new and kind == "repeat":
                    kind = "extend"
            else:
                session = self._new_session(image, base, rec_box)
                replay = list(record.extra.get("implicit", [])) + wanted
                for c in replay:
                    session.add_click(self._click(c))
                clicks_run += len(replay)
                record.clicks = wanted
                kind = "recompute"
        elif kind in ("new", "box") and not fresh and not acted and not prompt.tool_points:
            # a bare box: the network's guess of the boxed object (its centre click implied)
            if rec_box is None:
                raise ApiError(400, "the context holds no keypoint, box or brush stroke")
            y0, x0, y1, x1 = rec_box
            centre = Click((y0 + y1) / 2, (x0 + x1) / 2, True)
            session.add_click(centre)
            record.extra["implicit"] = [centre.to_dict()]
            clicks_run += 1

        result = session.result
        final = locks.apply(result.mask)
        if rec_box is not None:
            final &= box_mask(rec_box, shape)
        if not np.array_equal(final, result.mask):
            session = self.p.session(image, state=replace(session.state, mask=final))
        record.state = session.state.to_bytes()
        record.base = pack_mask(base) if base is not None else b""
        record.locks = locks.dump()
        record.extra["seen"] = remember(seen, mask_digest(final))
        return Outcome(final, float(result.quality), kind, clicks_run, path), record

    @staticmethod
    def _edited_region(rle: list, shape: tuple[int, int], seen: list) -> np.ndarray | None:
        """The task's newest region when it is none of the masks this session answered."""
        try:
            mask = rle_to_mask(rle, shape[0], shape[1])
        except ValueError:
            return None  # a corrupt stored region is no reason to refuse the request
        return None if mask_digest(mask) in seen else mask

    def _edit(self, image: Any, session: Any, base: np.ndarray | None, new: np.ndarray,
              locks: Locks | None, box: Any) -> tuple[Any, np.ndarray]:
        """The session continued from mask `new` (its clicks kept), and the base prior with the
        same pixels added and removed; `locks` given: the changed pixels are locked."""
        if box is not None:
            new = new & box_mask(box, new.shape)
        current = session.result.mask
        added, removed = new & ~current, current & ~new
        if locks is not None:
            locks.fix(added | removed, new)
        base = np.zeros(new.shape, bool) if base is None else base
        base = (base | added) & ~removed
        return self.p.session(image, state=replace(session.state, mask=new.copy())), base

    def _new_session(self, image: Any, base: np.ndarray | None, box: Any) -> Any:
        return self.p.session(image, prior_mask=base, box=box)

    @staticmethod
    def _click(c: dict) -> Click:
        return Click(float(c["y"]), float(c["x"]), bool(c["positive"]))
