"""Per-object NoC results of a model kept between retrains, so a gate evaluates only what is new.

A retrain's gate runs the candidate and the serving model through the NoC protocol on the
project's held-out corrections and on a general set. Between two retrains the serving model and
the general set seldom change and the held-out corrections only grow, so most of the serving
model's evaluation would repeat the previous run's, and a promoted candidate's own evaluation
is exactly what the next run would compute for it as the serving model. Keeping those results
roughly halves a retrain's evaluation time (README "Retraining").

An entry is reused only when everything that decides it is unchanged: the weights (their
content-derived version), the inference settings that change a result, the code of `cdnet/`
outside its training package (any change invalidates every entry) and the object itself (its
image, mask and ignore files' bytes, so an edited correction is evaluated again). Files are
per model version, written atomically; versions no longer in the registry are pruned, so the
cache stays bounded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from cdnet.eval.datasets import Dataset
from cdnet.fileio import atomic_write_json
from clicksmith.settings import Settings

log = logging.getLogger(__name__)

CDNET = Path(__file__).resolve().parents[1] / "cdnet"
# the settings that change what a click returns, hence an object's NoC (load_configured_predictor)
RESULT_SETTINGS = ("progressive", "progressive_join", "flip_average", "base_size", "zoom_size",
                   "drop_far")
MAX_ENTRIES = 20_000  # per version and fingerprint: far above any project's held-out objects
MAX_FINGERPRINTS = 4  # per version: the general frames, a project's frames, and a change or two


def code_digest() -> str:
    """One digest of the source of cdnet/ that decides a click's answer and its NoC (all but
    the training code): results from other code are never reused."""
    h = hashlib.blake2b(digest_size=12)
    for path in sorted(p for p in CDNET.rglob("*.py") if "train" not in p.relative_to(CDNET).parts):
        h.update(str(path.relative_to(CDNET)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(settings: Settings, protocol: dict) -> str:
    """What besides the weights and the object decides a result: settings, protocol, code."""
    parts = {k: getattr(settings, k) for k in RESULT_SETTINGS}
    parts.update(protocol=protocol, code=code_digest())
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(),
                           digest_size=12).hexdigest()


def object_digests(ds: Dataset) -> dict[str, str]:
    """Each object's name -> a digest of its image, mask and ignore files' bytes."""
    out = {}
    for name, *files in ds.items():
        h = hashlib.blake2b(digest_size=16)
        for f in files:
            h.update(f.read_bytes() if f is not None else b"-")
        out[name] = h.hexdigest()
    return out


class EvalCache:
    """The results of one model version under one fingerprint, in `root/<version>.json`.

    The file keeps the results of up to MAX_FINGERPRINTS fingerprints, most recently saved
    first: a retrain judges the serving model in the general frames and in a project's frames
    (review.retrain), and each must find its own results at the next run."""

    def __init__(self, root: Path, version: str, fingerprint: str) -> None:
        self.path = root / f"{version}.json"
        self.fingerprint = fingerprint
        self.entries: dict[str, dict] = dict(self._stored().get(fingerprint, {}))

    def _stored(self) -> dict[str, dict]:
        """fingerprint -> entries, as on disk now (a damaged file: nothing)."""
        try:
            data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (OSError, ValueError) as exc:  # a damaged file costs one full evaluation
            log.warning("eval cache %s unreadable (%s): evaluating from scratch", self.path, exc)
            return {}
        by_fp = data.get("by_fingerprint") if isinstance(data, dict) else None
        if not isinstance(by_fp, dict):
            return {}
        return {fp: e for fp, e in by_fp.items() if isinstance(e, dict)}

    def reusable(self, digests: dict[str, str]) -> dict[str, dict]:
        """The stored runs of objects whose digest is unchanged, by object name."""
        return {name: e["run"] for name, e in self.entries.items()
                if digests.get(name) == e.get("digest")}

    def add(self, name: str, digest: str, run: dict) -> None:
        self.entries[name] = {"digest": digest, "run": run}

    def save(self) -> None:
        if len(self.entries) > MAX_ENTRIES:
            self.entries = dict(list(self.entries.items())[-MAX_ENTRIES:])
        others = [(fp, e) for fp, e in self._stored().items() if fp != self.fingerprint]
        by_fp = dict([(self.fingerprint, self.entries)] + others[: MAX_FINGERPRINTS - 1])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"by_fingerprint": by_fp})


def prune(root: Path, keep_versions: set[str]) -> None:
    """Delete the files of versions not in `keep_versions` (rejected candidates, removed
    versions): the cache never outgrows the registry."""
    for path in root.glob("*.json") if root.is_dir() else []:
        if path.stem not in keep_versions:
            path.unlink(missing_ok=True)
