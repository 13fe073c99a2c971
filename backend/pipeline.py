"""The interaction pipeline: one prompt in pixels + the stored session → the current mask.

`run_interaction` is the whole path, one step a line:
    load_session      the stored record, or a new one (its prior: the task's newest region)
    next_object       the click starts another object of the label: a new session (and region)
    adopt_edit        the annotator edited our answer in Label Studio: that becomes the mask
    apply_strokes     brush strokes add to / erase from the mask and its prior
    apply_tools       superpixel fill, edge lasso, refine bands
    run_clicks        the network, once per click it has not seen
    finalise          locks and box applied, the quality settled, the record updated

The rules (Label Studio sends one kind of smart region per request, so a keypoint request holds
no box and a box request no keypoints; the session carries the others over):
- keypoints: the request holds the session's clicks plus new ones → extend (progressive, only the
  new clicks are run); it holds some but not all of them → a click was deleted: recompute from the
  session's base prior and box with the clicks that remain; it holds none of them → auto-accept
  deleted the accepted regions: the new clicks extend the session, unless they start the next
  object (below).
- a box differing from the session's → start over inside the box (base prior kept), as a new
  object: a region of its own.
- none of the session's clicks and a positive first click → the next object of the label (a
  new session, empty prior, a region of its own) when the session's clicks had come back before
  (Auto-Accept off: ✓ or ✗ removed them), when the click is outside the session's box, or when
  it is far from the mask for the mask's size (Auto-Accept on; `next_object`, `far_from`).
- brush strokes not yet applied → added to (erasing strokes: removed from) the current mask and
  the base prior; clicks then refine that.
- no session → the base prior is the newest brush region of this label on the task (drafts,
  annotations, predictions), so clicks refine what the annotator already has; a first click far
  from it (another object) starts from nothing.
- a session, and that newest task region is not a mask this session answered → the annotator
  edited the answer in Label Studio (brush eraser or brush): it becomes the current mask.
- tool controls (backend.tools: superpixel, lasso, refine) edit the current mask; every edited
  pixel (strokes and adopted edits included) is locked against later clicks.

Network runs happen in exactly two places: `Work.step` (one per click) and `finalise` (the
answer's score: `score_mask` of the mask exactly as returned, one plain network run, unless the
session's stored mask is that very mask and already carries it). A prior that clicks refine
right away is never scored: its score would be thrown away.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

import cv2
import numpy as np

from backend.errors import ApiError
from backend.packing import pack_mask, unpack_mask
from backend.prompts import PixelPrompt
from backend.sessions import Box, SessionRecord, new_region_id
from backend.tools import Locks, mask_digest, remember, run_tools
from cdnet.clicks import Click
from cdnet.inference.image import PreparedImage, as_mask
from cdnet.inference.predictor import SessionState
from cdnet.inference.views import box_mask
from clicksmith.models import SegmentationModel


class Kind(StrEnum):
    """How a request's mask was obtained (the `kind` label of the interactions metric)."""

    NEW = "new"
    EXTEND = "extend"
    RECOMPUTE = "recompute"
    REPEAT = "repeat"
    STROKE = "stroke"
    BOX = "box"
    ADOPT = "adopt"
    SUPERPIXEL = "superpixel"
    LASSO = "lasso"
    LASSO_POINT = "lasso_point"
    REFINE = "refine"
    NEXT = "next"  # a new object of the same label: the previous session ended


# `next_object` (Auto-Accept on): a lone positive click farther than NEXT_OBJECT_DISTANCE times
# the square root of the mask's area from the mask's body (the mask eroded by NEXT_OBJECT_CORE
# times that root) starts another object (chosen with benchmarks/next_object.py)
NEXT_OBJECT_DISTANCE = 0.55
NEXT_OBJECT_CORE = 0.1
# ...and never one within this share of the image's longer side of the mask: an edge fix
NEXT_OBJECT_MARGIN = 0.02


@dataclass
class Outcome:
    """The mask to return and how it was obtained (for metrics and tests)."""

    mask: np.ndarray
    quality: float
    kind: Kind
    clicks_run: int
    path: np.ndarray | None = None  # an open edge lasso's snapped path, (N, 2) (y, x) pixels
    region: str | None = None  # the id of the Label Studio region the answer fills


@dataclass
class Work:
    """One request's interaction while it is being answered; never outlives the request."""

    predictor: SegmentationModel
    image: PreparedImage
    prompt: PixelPrompt
    record: SessionRecord
    state: SessionState  # the predictor's: clicks it has seen, current mask, quality
    base: np.ndarray | None  # the prior clicks refine (None: none)
    locks: Locks
    kind: Kind
    scored: tuple[np.ndarray, float] | None = None  # a mask and its score_mask, known already
    clicks_run: int = 0
    stroked: bool = False
    tools_acted: bool = False
    path: np.ndarray | None = None

    @property
    def box(self) -> Box | None:
        return self.record.box

    def restart(self, prior: np.ndarray | None) -> None:
        """Start the predictor afresh from `prior` inside the box (runs no network)."""
        state = self.predictor.session(self.image, box=self.box).state  # checks the box
        if prior is not None:
            prior = as_mask(prior, state.mask.shape)
            state = replace(state, mask=prior.copy(), prior=prior)
        self.state = state

    def edit(self, new: np.ndarray, lock: bool) -> None:
        """Continue from mask `new` (the predictor's clicks kept); the base prior gains and
        loses the same pixels; `lock`: the changed pixels are locked against later clicks."""
        if self.box is not None:
            new = new & box_mask(self.box, new.shape)
        current = self.state.mask
        added, removed = new & ~current, current & ~new
        if lock:
            self.locks.fix(added | removed, new)
        base = np.zeros(new.shape, bool) if self.base is None else self.base
        self.base = (base | added) & ~removed
        self.state = replace(self.state, mask=new.copy())

    def step(self, click: Click) -> None:
        """One network run: the predictor's answer to one more click. (Its state's quality, the
        click run's own estimate, is replaced by the answer's score in `finalise`.)"""
        self.state, _ = self.predictor.step(self.image, self.state, click)
        self.clicks_run += 1


def scorer_id(predictor: SegmentationModel) -> str:
    """What a stored score_mask depends on besides the mask and the image: the model version
    and the score view's size."""
    return f"{predictor.model_version}/{getattr(predictor, 'score_size', '')}"


def run_interaction(predictor: SegmentationModel, image: PreparedImage, url: str,
                    prompt: PixelPrompt, record: SessionRecord | None,
                    newest_region: np.ndarray | None, tool_cache: dict | None = None,
                    superpixel_size: int = 16) -> tuple[Outcome, SessionRecord]:
    """Answer one prompt. `newest_region`: the task's newest brush region of this label and
    control, decoded (the prior of a new session; an edit to adopt in a running one);
    `tool_cache`: per-image storage for the tools (superpixels)."""
    work = load_session(predictor, image, url, prompt, record, newest_region)
    next_object(work)
    adopt_edit(work, newest_region)
    apply_strokes(work)
    apply_tools(work, tool_cache, superpixel_size)
    run_clicks(work)
    return finalise(work)


def load_session(predictor: SegmentationModel, image: PreparedImage, url: str, prompt: PixelPrompt,
                 record: SessionRecord | None, newest_region: np.ndarray | None) -> Work:
    """The stored session to continue, or a new one whose prior is the task's newest region.
    A box that differs from the session's starts over inside it (the base prior kept)."""
    shape = prompt.shape
    if record is not None and (record.image != url or tuple(record.shape) != shape):
        record = None  # the task's image changed: the old session means nothing here
    if record is None:
        record = SessionRecord(url, shape, state=b"", box=prompt.box, region=new_region_id())
        work = Work(predictor, image, prompt, record, SessionState((), np.zeros(shape, bool)),
                    newest_region, Locks.load(b"", b"", shape), Kind.NEW)
        work.restart(newest_region)
        return work
    if not record.region:  # stored before sessions had regions
        record.region = new_region_id()
    state = predictor.session(image, state=SessionState.from_bytes(record.state)).state
    base = unpack_mask(record.base) if record.base else None
    work = Work(predictor, image, prompt, record, state, base,
                Locks.load(record.locks[0], record.locks[1], shape), Kind.REPEAT)
    if record.scored_by and record.scored_by == scorer_id(predictor):
        work.scored = (state.mask, state.quality)  # the last answer, with its score_mask
    box = prompt.box
    if box is not None and (record.box is None or not np.allclose(box, record.box, atol=0.5)):
        record.box, record.clicks, record.implicit = box, [], []
        # a new box is a new object (drawing one is how an annotator picks out the next of
        # several): a region of its own, and no Auto-Accept evidence of the old object's
        record.region, record.accumulated = new_region_id(), False
        work.restart(base)
        work.locks.limit(box_mask(box, shape))
        work.kind = Kind.BOX
    return work


def next_object(work: Work) -> None:
    """Decide whether this request starts the next object of the same label (see the module's
    rules); if so, start a new session with a region of its own.

    Why: an image often holds several objects of one label (every cat, every cell), and Label
    Studio sends nothing that says "next object". With Auto-Accept off, ✓ and ✗ both remove
    the keypoints, so a context without the session's clicks, once they had come back, ends the
    session: exact. With Auto-Accept on every click arrives alone (the accepted regions are
    deleted), and a click over an existing region selects it instead of sending a request, so a
    lone positive click is either an addition to the object (a missed part, beside or away from
    its mask) or the first click on another one. Nothing in the request tells them apart; how
    far the click is from the body of the mask, against the mask's size, tells best
    (`far_from`). benchmarks/next_object.py measured the candidates on images with several
    instances of one label (a simulated annotator): this rule takes 15% of refining clicks
    away from the mask for a new object and 46% of next-object clicks for a refinement;
    asking the network about the click alone (a new object when its answer covers under half
    of the mask) took 76% / 35%, and costs a network run. A click on or near the mask is an
    edge fix; a negative click removes: neither starts an object."""
    prompt, record = work.prompt, work.record
    if (not prompt.clicks or prompt.strokes or prompt.tool_points or prompt.refines
            or work.kind not in (Kind.NEW, Kind.REPEAT)):
        return  # a box restarted the session already; tools and strokes edit this object
    have = {click_key(c) for c in record.clicks}
    if any(click_key(c) in have for c in prompt.clicks):
        return  # the session's clicks came back: this object, still being refined
    first, current = prompt.clicks[0], work.state.mask
    if not first.positive or not current.any():
        return
    if work.kind is Kind.REPEAT and any(work.record.locks):
        return  # painted, erased or edited by hand: the annotator's object, clicks refine it
    if work.kind is Kind.REPEAT and record.accumulated:
        _new_object(work)  # ✓ or ✗ removed the keypoints (Auto-Accept off): a new session
        return
    if work.box is not None:
        y0, x0, y1, x1 = work.box
        if not (y0 <= first.y <= y1 and x0 <= first.x <= x1):
            _new_object(work)  # outside the box: this session's mask can never reach it
        return  # inside it: this object
    if far_from(current, int(first.y), int(first.x)):
        _new_object(work)


def far_from(mask: np.ndarray, y: int, x: int) -> bool:
    """Whether pixel (y, x) is farther from the body of `mask` than NEXT_OBJECT_DISTANCE times
    the square root of the mask's area (and than NEXT_OBJECT_MARGIN of the image's longer side
    beyond the mask's edge).

    The body is the mask eroded by NEXT_OBJECT_CORE times that root: a thin leak of the mask
    onto the next object (two touching objects of one colour) must not make that object's
    middle look close. Measured on a strided window around the click (stride limit / 64), so
    a 30 MP mask costs what a small one does: no distance transform per click."""
    h, w = mask.shape
    size = float(np.sqrt(mask.sum()))
    erode = NEXT_OBJECT_CORE * size
    limit = max(NEXT_OBJECT_DISTANCE * size, erode + NEXT_OBJECT_MARGIN * max(h, w), 1.0)
    r = int(np.ceil(limit + erode)) + 1
    step = max(1, r // 64)
    y0, x0 = max(0, y - r), max(0, x - r)
    window = mask[y0:y + r + 1:step, x0:x + r + 1:step]
    k = int(round(erode / step))
    if k > 0 and window.any():
        body = _eroded(window, k)
        if body.any():
            window = body
        elif _eroded_whole(mask, erode).any():
            return True  # the mask has a body, none of it within the limit: only a leak is
        else:  # a thin mask everywhere (a pole, a cable): its plain distance decides
            limit = max(NEXT_OBJECT_DISTANCE * size, NEXT_OBJECT_MARGIN * max(h, w), 1.0)
    ys, xs = np.nonzero(window)
    if not len(ys):
        return True
    d2 = (ys * step + y0 - y) ** 2 + (xs * step + x0 - x) ** 2
    return bool(d2.min() > limit * limit)


def _eroded(mask: np.ndarray, k: int) -> np.ndarray:
    """`mask` eroded by a disc of radius `k` pixels (outside the array counts as inside)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    return cv2.erode(mask.astype(np.uint8), kernel) > 0


def _eroded_whole(mask: np.ndarray, erode: float) -> np.ndarray:
    """The whole mask's body (eroded by `erode` px), coarsely: on its bounding box at a stride
    of erode / 4, so a large mask costs little; only asked when no body is near a click."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    step = max(1, int(erode // 4))
    box = mask[rows[0]:rows[-1] + 1:step, cols[0]:cols[-1] + 1:step]
    padded = np.pad(box, 1)  # the box's edge is the mask's edge: outside counts as outside
    return _eroded(padded, max(1, int(round(erode / step))))


def _new_object(work: Work) -> None:
    """A new session for another object of the label: no clicks, box, prior or locks of the
    old one, a region id of its own; what it knows of the task carries over (the masks it
    answered, so that their regions are never taken for an edit of the new object, and the
    strokes and tool points already applied). The request's clicks then run from nothing."""
    old = work.record
    work.record = replace(SessionRecord(old.image, old.shape, state=b""), seen=list(old.seen),
                          applied_strokes=list(old.applied_strokes),
                          points_done=list(old.points_done), refined=list(old.refined),
                          region=new_region_id())
    work.base = None
    work.locks = Locks.load(b"", b"", tuple(old.shape))
    work.restart(None)
    work.kind = Kind.NEXT


def adopt_edit(work: Work, newest_region: np.ndarray | None) -> None:
    """Reconcile with what Label Studio sent: the task's newest region is either a mask this
    session answered (nothing to do) or the annotator's edit of it, which becomes the mask."""
    if newest_region is None:
        return
    digest = mask_digest(newest_region)
    if work.kind in (Kind.NEW, Kind.NEXT):  # the new session's prior, or another object's
        work.record.seen = remember(work.record.seen, digest)
        return
    if digest in work.record.seen:
        return
    work.record.seen = remember(work.record.seen, digest)
    current = work.state.mask
    if current.any() and not (newest_region & current).any():
        return  # another object's region (several of one label): not an edit of this one
    work.edit(newest_region, lock=True)
    work.kind = Kind.ADOPT


def apply_strokes(work: Work) -> None:
    """Brush strokes not applied before: added to (erasers: removed from) the mask and the base
    prior, and locked. The predictor then starts from that mask."""
    applied = set(work.record.applied_strokes)
    fresh = [s for s in work.prompt.strokes if s.digest not in applied]
    if not fresh:
        return
    h, w = work.prompt.shape
    current = work.state.mask.copy()
    base = np.zeros((h, w), bool) if work.base is None else work.base.copy()
    for stroke in fresh:
        m = stroke.mask(h, w)
        if stroke.positive:
            current |= m
            base |= m
        else:
            current &= ~m
            base &= ~m
        work.locks.fix(m, stroke.positive)
    if work.box is not None:
        inside = box_mask(work.box, (h, w))
        current &= inside
        base &= inside
    work.base = base
    work.restart(current)
    work.record.applied_strokes = sorted(applied | {s.digest for s in fresh})
    work.stroked = True
    work.kind = Kind.STROKE


def apply_tools(work: Work, tool_cache: dict | None, superpixel_size: int) -> None:
    """Superpixel points, lasso points and refine bands: each edits the mask and is locked."""
    prompt = work.prompt
    if not (prompt.tool_points or prompt.refines):
        return
    tools = run_tools(work.image.rgb, work.state.mask, prompt.tool_points, prompt.refines,
                      work.record, work.locks, tool_cache, superpixel_size)
    work.path = tools.path
    if tools.kinds:
        work.tools_acted = True
        work.edit(tools.mask, lock=False)  # run_tools locked what it changed
        work.kind = Kind(tools.kinds[-1])


def click_key(c: Click) -> tuple[float, float, bool]:
    """A click's identity across requests (Label Studio round-trips percentages)."""
    return (round(float(c.y), 3), round(float(c.x), 3), bool(c.positive))


def run_clicks(work: Work) -> None:
    """Only the clicks the session has not seen run; a deleted click recomputes from the base
    prior; a bare box is the network's guess of the boxed object (its centre click implied)."""
    record, prompt = work.record, work.prompt
    if prompt.clicks:
        have = [click_key(c) for c in record.clicks]
        wanted = list(prompt.clicks)
        kept = [k for k in (click_key(c) for c in wanted) if k in have]
        new = [c for c in wanted if click_key(c) not in have]
        for c in new:  # a click right on a locked pixel of the other polarity frees it
            work.locks.release_at(c.y, c.x, c.positive)
        if kept and work.kind is not Kind.NEXT:  # (a new object's first click is not "kept")
            record.accumulated = True  # the editor keeps the keypoints: Auto-Accept is off
        if kept == have or not kept:
            # extension, or auto-accept: the accepted regions are gone, only new clicks came
            for c in new:
                work.step(c)
            record.clicks = record.clicks + new
            if new and work.kind is Kind.REPEAT:
                work.kind = Kind.EXTEND
            return
        work.restart(work.base)
        for c in record.implicit + wanted:
            work.step(c)
        record.clicks = wanted
        work.kind = Kind.RECOMPUTE
        return
    if work.kind in (Kind.NEW, Kind.BOX) and not (work.stroked or work.tools_acted
                                                  or prompt.tool_points):
        if work.box is None:
            raise ApiError(400, "the context holds no keypoint, box or brush stroke")
        y0, x0, y1, x1 = work.box
        centre = Click((y0 + y1) / 2, (x0 + x1) / 2, True)
        work.step(centre)
        record.implicit = [centre]


def finalise(work: Work) -> tuple[Outcome, SessionRecord]:
    """Locks and box applied to the mask, the answer scored, the record brought up to date.

    The score follows the one rule for a mask's score (clicksmith.prelabel.mask_score): every
    answer's score is `score_mask` of the mask exactly as returned (locks and box applied),
    computed here and only here, whatever produced the mask: a click, a stroke, a tool's edit,
    an adopted edit, a prior. Not the click run's own quality (`quality[0]`, an estimate for
    the network's raw output in its frame, about 0.1 below score_mask on average), and never a
    score kept from an earlier mask. The one saving: when the returned mask is bit-identical
    to the session's stored mask, which carries its score_mask (`Work.scored`: a repeated
    request, a click that changed nothing), that score is reused and no network runs. Cost:
    one plain network run at SCORE_SIZE per answer that changes the mask (about a fifth of a
    flip-averaged click in-process at 1024x1024; per click over HTTP:
    benchmarks/results/http_latency_score.md). The stored state's quality is that score, so
    the next request can reuse it."""
    state = work.state
    final = work.locks.apply(state.mask)
    if work.box is not None:
        final &= box_mask(work.box, final.shape)
    if work.scored is not None and np.array_equal(final, work.scored[0]):
        quality = work.scored[1]  # this very mask was scored before: no network run
    else:
        quality = work.predictor.score_mask(work.image, final)
    state = replace(state, mask=final, quality=float(quality))
    record = work.record
    record.state = state.to_bytes()
    record.scored_by = scorer_id(work.predictor)
    record.base = pack_mask(work.base) if work.base is not None else b""
    record.locks = work.locks.dump()
    record.seen = remember(record.seen, mask_digest(final))
    return (Outcome(final, float(state.quality), work.kind, work.clicks_run, work.path,
                    record.region), record)
