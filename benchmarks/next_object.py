"""How often `backend.pipeline.next_object` tells "the next object" from "more of this one".

With Auto-Accept on, a lone positive click away from the current mask is either a refinement of
the object (a missed part) or the first click on another object of the same label; the backend
starts a new object when the click is far from the mask's body against the mask's size
(`backend.pipeline.far_from`). This measures both errors, for that rule and for the others
considered (plain distance from the mask, asking the network about the click alone), on images
with several instances of one label, with a simulated annotator (RITM's: each click at the
deepest point of the largest error):
- same object: object A's session, then up to REFINES further clicks; each positive one that
  lands away from the mask (beyond the edge margin) is a case that must NOT start a new object
  (else a false split);
- next object: after A's session, a click at the deepest point of B, the instance of the same
  label nearest to A (touching ones first): a case that MUST start a new object (else a merge;
  also a merge when the click lands within the edge margin of A's mask).
Rates are printed per rule. Training folders only (never grabcut/berkeley):

    python benchmarks/next_object.py [--per-set 60] [--out benchmarks/results/next_object.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.pipeline import (  # noqa: E402
    NEXT_OBJECT_CORE,
    NEXT_OBJECT_DISTANCE,
    NEXT_OBJECT_MARGIN,
    far_from,
)
from cdnet import Click, load_predictor  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"
SETS = ("train_feralcats", "train_coco128seg", "domain_nuclei")
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
REFINES = 3


def near_mask(mask: np.ndarray, y: int, x: int) -> bool:
    h, w = mask.shape
    r = max(1, int(np.ceil(NEXT_OBJECT_MARGIN * max(h, w))))
    return bool(mask[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].any())


def shared(alone: np.ndarray, mask: np.ndarray) -> float:
    return float((alone & mask).sum() / max(1, int(mask.sum())))


def deepest(region: np.ndarray) -> tuple[int, int]:
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


def instances(folder: Path) -> dict[str, list[tuple[int, Path]]]:
    """image stem -> [(class, mask path)] for images with two or more instances of a class."""
    classes: dict[str, int] = {}
    table = folder / "classes.txt"
    if table.is_file():  # "<image stem>: 0=45,1=50,..." (mask index = class), else one class
        for line in table.read_text().splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            stem, _, pairs = line.partition(":")
            for pair in pairs.split(","):
                k, _, cls = pair.strip().partition("=")
                if k.isdigit() and cls.isdigit():
                    classes[f"{stem.strip()}_{k}"] = int(cls)
    found: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in sorted((folder / "masks").glob("*.png")):
        m = re.match(r"(.+)_(\d+)$", path.stem)
        if m:
            found[m.group(1)].append((classes.get(path.stem, 0), path))
    return {stem: items for stem, items in found.items() if len(items) >= 2}


def read(path: Path, colour: bool) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if colour else img > 127


def pair_of(masks: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray] | None:
    """The largest instance and the nearest other instance of its class."""
    masks = [(c, m) for c, m in masks if m.sum() >= 200]
    if len(masks) < 2:
        return None
    masks.sort(key=lambda cm: -int(cm[1].sum()))
    cls, a = masks[0]
    others = [m for c, m in masks[1:] if c == cls and not (m & a).all()]
    if not others:
        return None
    gap = ndimage.distance_transform_edt(~a)
    b = min(others, key=lambda m: float(gap[m].min()))
    return a, b & ~a


def features(alone: np.ndarray, mask: np.ndarray, y: int, x: int) -> dict:
    """What else might tell the two cases apart (recorded for analysis, not used to decide)."""
    gap = ndimage.distance_transform_edt(~mask)
    ring = ndimage.binary_dilation(mask, iterations=3)
    depth = ndimage.distance_transform_edt(mask)
    size = float(np.sqrt(mask.sum()))
    eroded = {}
    for f in (0.05, 0.1, 0.15):
        core = depth > f * size
        eroded[f"dist_core_{f}"] = (float(ndimage.distance_transform_edt(~core)[y, x])
                                    if core.any() else 1e9)
    return {"dist": float(gap[y, x]), "size": size, **eroded,
            "alone_size": float(np.sqrt(alone.sum())),
            "shared_alone": float((alone & mask).sum() / max(1, alone.sum())),
            "touch": float((alone & ring & ~mask).sum() / max(1, (ring & ~mask).sum()))}


def run(per_set: int) -> dict:
    predictor = load_predictor()
    cases: dict[str, list[dict]] = {"same": [], "next": []}
    per: dict[str, dict[str, int]] = {}
    t0 = time.monotonic()
    for name in SETS:
        folder = DATASETS / name
        if not folder.is_dir():
            print(f"{name}: not found, skipped")
            continue
        used = 0
        for stem, items in instances(folder).items():
            if used >= per_set:
                break
            image_path = next(iter(sorted((folder / "images").glob(stem + ".*"))), None)
            if image_path is None:
                continue
            pair = pair_of([(c, read(p, False)) for c, p in items])
            if pair is None:
                continue
            a, b = pair
            image = read(image_path, True)
            if image.shape[:2] != a.shape:
                continue
            used += 1
            session = predictor.session(image)
            mask = session.add_click(Click(*deepest(a), True)).mask
            for _ in range(REFINES):
                fn, fp = a & ~mask, mask & ~a
                positive = fn.sum() >= fp.sum()
                err = fn if positive else fp
                if err.sum() < 20:
                    break
                y, x = deepest(err)
                if positive and not near_mask(mask, y, x):
                    alone = predictor.predict(image, [Click(y, x, True)]).mask
                    cases["same"].append({"set": name, "stem": stem, "far": far_from(mask, y, x),
                                          "took": bool(alone[y, x]),
                                          "shared": shared(alone, mask),
                                          **features(alone, mask, y, x)})
                mask = session.add_click(Click(y, x, positive)).mask
            y, x = deepest(b)
            case = {"set": name, "stem": stem, "near": near_mask(mask, y, x),
                    "far": far_from(mask, y, x)}
            if not case["near"]:
                alone = predictor.predict(image, [Click(y, x, True)]).mask
                case |= {"took": bool(alone[y, x]), "shared": shared(alone, mask),
                         **features(alone, mask, y, x)}
            cases["next"].append(case)
        per[name] = {"images": used}
        print(f"{name}: {used} images, {time.monotonic() - t0:.0f}s", flush=True)

    def rates(split) -> dict[str, float]:
        same, nxt = cases["same"], cases["next"]
        return {"false_split": sum(map(split, same)) / max(1, len(same)),
                "merge": sum(not split(c) for c in nxt) / max(1, len(nxt))}

    def body(t: float):
        key = f"dist_core_{NEXT_OBJECT_CORE}"
        return lambda c: not c.get("near", False) and c[key] > t * c["size"]

    def network(t: float):
        return lambda c: not c.get("near", False) and c["took"] and c["shared"] < t

    table = {
        "served (far_from)": rates(lambda c: c["far"]),
        **{f"distance from the body > {t:.2f} x sqrt(area)": rates(body(t))
           for t in (0.4, 0.45, 0.5, 0.55, 0.6, 0.7)},
        **{f"distance from the mask > {t:.2f} x sqrt(area)": rates(
            lambda c, t=t: not c.get("near", False) and c["dist"] > t * c["size"])
           for t in (0.3, 0.4, 0.5)},
        **{f"network: the click's own answer covers < {t:.1f} of the mask": rates(network(t))
           for t in THRESHOLDS},
    }
    return {"model": predictor.model_version, "per_set": per, "refines": REFINES,
            "served": {"distance": NEXT_OBJECT_DISTANCE, "core": NEXT_OBJECT_CORE,
                       "margin": NEXT_OBJECT_MARGIN}, "same_cases": len(cases["same"]),
            "next_cases": len(cases["next"]),
            "next_within_margin": sum(c["near"] for c in cases["next"]),
            "table": table, "cases": cases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-set", type=int, default=60)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" /
                        "next_object.json")
    args = parser.parse_args(argv)
    result = run(args.per_set)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['same_cases']} same-object clicks away from the mask, "
          f"{result['next_cases']} next-object clicks ({result['next_within_margin']} within "
          f"the margin of the first mask)")
    for rule, row in result["table"].items():
        print(f"  {rule}: false splits {row['false_split']:.1%}, merges {row['merge']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
