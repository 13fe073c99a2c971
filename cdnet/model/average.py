"""`clicksmith average-weights OUT IN...`: one model from several checkpoints of one run.

Why: the last few snapshots of a cosine schedule differ by noise; their uniform average (a
"model soup") is often as good as the best of them without picking the luckiest one, and two
earlier releases shipped that way (cdnet/weights/README.md). Every floating-point tensor is
averaged, BatchNorm statistics included; integer counters are taken from the last file.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cdnet.model.cdnet import CDNet
from cdnet.model.io import build_model, file_digest, full_config, read_model_file, save_model


def average_models(paths: Sequence[str | Path], shares: Sequence[float] | None = None) -> CDNet:
    """The average of the weights in `paths` (all of one architecture), in eval mode: uniform,
    or weighted by `shares` (non-negative, normalised to sum 1; e.g. [0.5, 0.5] of a base
    model and its fine-tuned copy, the interpolation retraining uses against forgetting).

    ValueError when fewer than two files are given, one is not a model file, their
    architectures differ or the shares do not fit; FileNotFoundError for a missing file."""
    if len(paths) < 2:
        raise ValueError("averaging needs at least two weights files")
    if shares is None:
        shares = [1.0] * len(paths)
    if len(shares) != len(paths) or any(not w >= 0 for w in shares) or sum(shares) <= 0:
        raise ValueError(f"shares must be {len(paths)} non-negative numbers with a positive "
                         f"sum, got {list(shares)}")
    total = float(sum(shares))
    shares = [w / total for w in shares]
    payloads = [read_model_file(Path(p)) for p in paths]
    config = full_config(payloads[0].get("config"))
    for p, payload in zip(paths, payloads, strict=True):
        if full_config(payload.get("config")) != config:
            raise ValueError(f"{p} has another architecture "
                             f"({full_config(payload.get('config'))}) than {paths[0]} ({config})")
    states = [payload["state_dict"] for payload in payloads]
    averaged = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            averaged[key] = sum(w * s[key].float() for w, s in zip(shares, states,
                                                                    strict=True)).to(last.dtype)
        else:
            averaged[key] = last.clone()
    model = build_model(config)
    model.load_state_dict(averaged, strict=True)
    return model.eval()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="the averaged weights file to write")
    parser.add_argument("weights", nargs="+", help="two or more weights files of one architecture")


def run(args: argparse.Namespace) -> int:
    missing = [w for w in args.weights if not Path(w).is_file()]
    if missing:
        print(f"clicksmith average-weights: no weights file {', '.join(missing)}")
        return 2
    try:
        model = average_models(args.weights)
    except ValueError as exc:
        print(f"clicksmith average-weights: {exc}")
        return 2
    sources = [{"file": str(w), "digest": file_digest(Path(w))} for w in args.weights]
    save_model(model, Path(args.out), meta={"averaged": sources})
    print(f"wrote {args.out}: the uniform average of {len(sources)} weights files")
    return 0
