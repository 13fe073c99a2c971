"""The `clicksmith` command: one entry point, subcommands living beside the code they run.

Each subcommand is a module exposing `configure(parser)` and `run(args) -> int`; it is imported
only when invoked, so `clicksmith status` does not pay for loading torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules are imported lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("backend.cli", "run the Label Studio ML backend HTTP service"),
    "train": ("cdnet.train.cli", "train (or resume training) the CDNet model"),
    "eval": ("cdnet.eval.cli", "NoC evaluation on GrabCut / Berkeley / a dataset folder"),
    "export-onnx": ("cdnet.onnx_export", "export weights to ONNX and check them against torch"),
    "average-weights": ("cdnet.model.average", "average checkpoints of one run into one model"),
    "worker": ("review.worker", "run an RQ worker for pre-label / review / retrain jobs"),
    "prelabel": ("review.prelabel_cli", "pre-label a Label Studio project"),
    "review": ("review.review_cli", "rank a project's masks by predicted quality"),
    "retrain": ("review.retrain_cli", "fine-tune on collected corrections, promote if better"),
    "status": ("review.status_cli", "show progress of a queued job"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    top = argparse.ArgumentParser(
        prog="clicksmith",
        description="Interactive segmentation for Label Studio.",
        epilog="commands:\n" + "\n".join(f"  {n:<16} {h}" for n, (_, h) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("command", choices=sorted(COMMANDS), metavar="command")
    top.add_argument("args", nargs=argparse.REMAINDER)
    if not argv:
        top.print_help()
        return 2
    ns = top.parse_args(argv[:1])
    module_name, help_text = COMMANDS[ns.command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"clicksmith {ns.command}: not available in this build ({exc})", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"clicksmith {ns.command}", description=help_text)
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
