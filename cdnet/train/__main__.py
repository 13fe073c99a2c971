"""`python -m cdnet.train ...`: the same as `clicksmith train ...`, needing only the model's own
dependencies (torch, numpy, OpenCV, tqdm), so it runs on a lent GPU machine where the backend's
and the job queue's packages are not installed."""

from __future__ import annotations

import argparse
import sys

from cdnet.train.cli import configure, run

if __name__ == "__main__":  # guarded: the clicker's worker processes import this module too
    parser = argparse.ArgumentParser(prog="python -m cdnet.train", description=__doc__)
    configure(parser)
    sys.exit(run(parser.parse_args()))
