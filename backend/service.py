"""The /predict work: a Label Studio request in, one prediction per task out.

Why a class holding the per-process parts (model, image cache, sessions, metrics): the app
factory builds one per app, so tests and gunicorn workers never share hidden globals.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from backend.errors import ApiError
from backend.image_cache import CachedImage, ImageCache, TaskImages
from backend.metrics import Metrics
from backend.pipeline import Outcome, run_interaction
from backend.prompts import ContextLimits, Prompt, parse_context
from backend.sessions import (
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    session_key,
)
from backend.tools import precompute_superpixels
from clicksmith.labelstudio.config import ConfigError, ImageTarget, ProjectConfig, parse_config
from clicksmith.labelstudio.regions import newest_region_mask
from clicksmith.labelstudio.results import result_items
from clicksmith.models import ModelService, SegmentationModel
from clicksmith.queue import JobQueue
from clicksmith.settings import Settings

log = logging.getLogger(__name__)

PREDICT_MODEL_WAIT_S = 60.0


class Backend:
    """Everything one app instance needs to answer Label Studio."""

    def __init__(self, settings: Settings, model: ModelService) -> None:
        self.settings = settings
        self.model = model
        self.metrics = Metrics()
        self.images = ImageCache(settings.image_cache_size, settings.image_cache_bytes)
        self.fetcher = TaskImages(settings)  # the adapter's image rules, errors as ApiError
        if settings.redis_url:
            self.sessions: SessionStore = RedisSessionStore(settings.redis_url,
                                                            settings.session_ttl_seconds)
        else:
            self.sessions = MemorySessionStore(
                settings.session_cache_size, settings.session_ttl_seconds
            )
        self.jobs = JobQueue(settings)  # connects to Redis on first use only
        # torch runs one inference at a time per process; with the threaded dev server this
        # keeps two requests from fighting over the same CPU threads
        self.predict_lock = threading.Lock()
        # per-image work started ahead of need (superpixels); one thread, so it never takes
        # more than one of the cores away from clicks
        self.background = ThreadPoolExecutor(1, thread_name_prefix="clicksmith-precompute")

    # --- /setup -----------------------------------------------------------------------
    def setup(self, body: dict) -> dict:
        schema = body.get("schema")
        if schema is None:
            raise ApiError(400, "the /setup body has no 'schema' (the labeling config)")
        config = self.config(schema)
        predictor = self.model.get(timeout=2.5)
        return {
            "model_version": predictor.model_version,
            "images": sorted(config.targets),
        }

    @staticmethod
    def config(xml: object) -> ProjectConfig:
        try:
            return parse_config(xml)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None

    # --- /predict ---------------------------------------------------------------------
    def predict(self, body: dict) -> dict:
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise ApiError(400, "the /predict body needs 'tasks': a list of task objects")
        config = self.config(body.get("label_config"))
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise ApiError(400, "'params' must be an object")
        prompts = parse_context(params.get("context"), config, ContextLimits.of(self.settings))
        if not prompts:
            # Retrieve-predictions without clicks: nothing to segment. An empty list makes Label
            # Studio store nothing, so tasks stay available for `clicksmith prelabel`.
            return {"results": []}
        if len(tasks) != 1:
            raise ApiError(400, f"an interactive request must hold one task, got {len(tasks)}")
        task = tasks[0]
        predictor = self.model.get(timeout=PREDICT_MODEL_WAIT_S)
        project = str(body.get("project") or task.get("project") or "none")
        items: list[dict] = []
        qualities: list[float] = []
        for prompt in prompts:
            outcome, image = self._run_prompt(predictor, project, task, prompt)
            qualities.append(outcome.quality)
            items += self._result_items(prompt, outcome, image)
            self.metrics.inc("interactions", kind=outcome.kind.value)
            self.metrics.inc("clicks_run", outcome.clicks_run)
        score = float(min(qualities))
        return {
            "results": [
                {"result": items, "score": score, "model_version": predictor.model_version}
            ]
        }

    def _image(self, predictor: SegmentationModel, task: dict,
               target: ImageTarget) -> tuple[str, CachedImage]:
        data = task.get("data")
        url = data.get(target.value_key) if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise ApiError(400, f"task data has no image URL in field {target.value_key!r}")
        task_id = task.get("id") if isinstance(task.get("id"), int) else None

        def build() -> CachedImage:
            rgb = self.fetcher.load(url, task_id)
            with self.predict_lock:
                prepared = predictor.prepare(rgb)
            return CachedImage(prepared, rgb.shape[0], rgb.shape[1])

        return url, self.images.get(url, build)

    def _run_prompt(
        self, predictor: SegmentationModel, project: str, task: dict, prompt: Prompt
    ) -> tuple[Outcome, CachedImage]:
        """One (image, label) of the request: image → prompt in pixels → session → answer."""
        url, image = self._image(predictor, task, prompt.target)
        sizes = prompt.target.superpixel_sizes(self.settings.superpixel_size)
        if sizes:  # start them now, while the annotator is busy with clicks
            precompute_superpixels(image.prepared.rgb, sorted(sizes), image.tools,
                                   self.background)
            self.images.trim()  # their maps count against the cache's bytes from now on
        pixels = prompt.in_pixels(image.height, image.width)
        newest = newest_region_mask(task, prompt.brush.name, prompt.target.name, prompt.label,
                                    image.height, image.width)
        key = session_key(project, task.get("id"), prompt.target.name, prompt.brush.name,
                          prompt.label)
        with self.sessions.lock(key):
            record = self.sessions.get(key)
            try:
                with self.predict_lock:
                    outcome, record = run_interaction(
                        predictor, image.prepared, url, pixels, record, newest, image.tools,
                        self.settings.superpixel_size)
            except ValueError as exc:  # the predictor's own checks (box, click, shapes)
                raise ApiError(400, str(exc)) from None
            self.sessions.put(key, record)
        return outcome, image

    @staticmethod
    def _result_items(prompt: Prompt, outcome: Outcome, image: CachedImage) -> list[dict]:
        polygon = prompt.target.polygon_for(prompt.label)
        return result_items(
            outcome.mask, brush=prompt.brush.name, image=prompt.target.name, label=prompt.label,
            score=outcome.quality, polygon=None if polygon is None else polygon.name,
            path=outcome.path,
        )
