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

from typing import Any

import numpy as np

from backend.prompts import Prompt
from clicksmith.labelstudio.results import rle_to_mask


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
