"""Where the shared datasets live relative to this checkout (never copied into the project)."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
DATASETS = SHARED / "datasets"


def need_dataset(name: str) -> Path:
    """The dataset folder, or skip the test with the reason it cannot run here."""
    folder = DATASETS / name
    if not (folder / "masks").is_dir():
        pytest.skip(f"{folder} is absent: the shared evaluation datasets are not mounted beside "
                    "the repository (../shared/datasets)")
    return folder
