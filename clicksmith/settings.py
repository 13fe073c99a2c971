"""Settings: `config/defaults.toml` is the one place for defaults; environment variables override.

Why a plain frozen dataclass built by a function, not a module-level global: the Flask app
factory, RQ jobs and tests each build their own `Settings` from the environment they are given,
so nothing leaks between them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = Path(os.environ.get("CLICKSMITH_CONFIG_DIR", REPO_ROOT / "config"))
LABELING_CONFIG = CONFIG_DIR / "labeling.xml"


@dataclass(frozen=True)
class Settings:
    model_path: str
    model_registry: str
    inference_backend: str
    base_size: int
    zoom_size: int
    score_size: int
    progressive: bool
    progressive_join: float
    flip_average: bool
    drop_far: str
    torch_threads: int
    host: str
    port: int
    request_read_timeout_seconds: float
    label_studio_url: str
    label_studio_api_key: str
    allowed_image_hosts: str
    local_image_roots: str
    basic_auth_user: str
    basic_auth_pass: str
    webhook_secret: str
    max_image_pixels: int
    max_request_bytes: int
    max_json_depth: int
    max_context_regions: int
    max_clicks_per_request: int
    max_rle_values: int
    session_ttl_seconds: int
    session_cache_size: int
    image_cache_size: int
    image_cache_bytes: int
    superpixel_size: int
    redis_url: str
    queue_name: str
    prelabel_batch_size: int
    retrieve_budget_seconds: float
    job_timeout_seconds: int
    job_retries: int
    corrections_root: str
    retrain_base_data: str
    retrain_eval_data: str
    retrain_iterations: int
    retrain_timeout_seconds: int
    retrain_lr: float
    retrain_crop: int
    retrain_layers: str
    retrain_replay: float
    retrain_freeze_bn: bool
    retrain_interpolate: float
    retrain_min_holdout: int
    retrain_min_gain_se: float
    retrain_project_scale: bool
    retrain_general_data: str
    retrain_general_objects: int
    retrain_general_tolerance: float
    retrain_lock_stale_seconds: float
    telemetry: bool
    telemetry_pending_ttl_seconds: int
    telemetry_max_objects: int
    telemetry_keep_days: int


def _coerce(raw: str, like: object, name: str) -> object:
    """Convert an environment string to the type of the default, with a clear error."""
    if isinstance(like, bool):
        low = raw.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"{name.upper()}={raw!r} is not a boolean (use true/false)")
    if isinstance(like, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{name.upper()}={raw!r} is not an integer") from None
    if isinstance(like, float):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{name.upper()}={raw!r} is not a number") from None
    return raw


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Defaults from `config/defaults.toml`, then environment variables, then `overrides`."""
    env = os.environ if env is None else env
    with open(CONFIG_DIR / "defaults.toml", "rb") as f:
        values: dict[str, object] = tomllib.load(f)
    known = {f.name for f in fields(Settings)}
    missing = known - values.keys()
    if missing:
        raise ValueError(f"config/defaults.toml lacks keys: {sorted(missing)}")
    for name in known:
        if name.upper() in env:
            values[name] = _coerce(env[name.upper()], values[name], name)
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    values.update(overrides)
    return Settings(**{k: values[k] for k in known})
