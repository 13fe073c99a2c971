"""The /predict work: a Label Studio request in, one prediction per task out.

Why a class holding the per-process parts (model, image cache, sessions, metrics): the app
factory builds one per app, so tests and gunicorn workers never share hidden globals.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from backend.errors import ApiError
from backend.image_cache import CachedImage, ImageCache, TaskImages
from backend.metrics import Metrics
from backend.pipeline import Outcome, run_interaction
from backend.prompts import ContextLimits, Prompt, parse_context, project_id
from backend.region_cache import RegionMasks
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
from clicksmith.prelabel import task_prediction
from clicksmith.queue import JobQueue, QueueUnavailable
from clicksmith.registry import ProjectScales
from clicksmith.settings import Settings
from clicksmith.telemetry import Interaction, ObjectKey, Telemetry

log = logging.getLogger(__name__)

PREDICT_MODEL_WAIT_S = 60.0
PRELABEL_JOB = "review.prelabel.prelabel_batch"  # (project_id, task_ids, run_id=None)
CLICK_BUCKETS = (0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50)  # per object (telemetry histograms)
SECONDS_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class Backend:
    """Everything one app instance needs to answer Label Studio."""

    def __init__(self, settings: Settings, model: ModelService) -> None:
        self.settings = settings
        self.model = model
        self.metrics = Metrics()
        self.images = ImageCache(settings.image_cache_size, settings.image_cache_bytes)
        self.regions = RegionMasks()  # task regions decoded once, not once per click
        self.fetcher = TaskImages(settings)  # the adapter's image rules, errors as ApiError
        if settings.redis_url:
            self.sessions: SessionStore = RedisSessionStore(settings.redis_url,
                                                            settings.session_ttl_seconds)
        else:
            self.sessions = MemorySessionStore(
                settings.session_cache_size, settings.session_ttl_seconds
            )
        self.jobs = JobQueue(settings)  # connects to Redis on first use only
        self.telemetry = Telemetry(settings, on_failure=lambda op: self.metrics.inc(
            "telemetry_failures", op=op))  # off without REDIS_URL
        self._project_versions: dict[int, str] = {}  # model_version set per project (retrieve)
        self.scales = ProjectScales(settings)  # the frames a retrain adopted per project
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
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise ApiError(400, "'params' must be an object")
        if params.get("context") is None:
            # Label Studio's Retrieve Predictions (and its retrieval when tasks are listed):
            # tasks without a context, answered with their pre-labels
            return self.retrieve(body, tasks)
        config = self.config(body.get("label_config"))
        prompts = parse_context(params.get("context"), config, ContextLimits.of(self.settings))
        if not prompts:
            # a context without a prompt (every smart region deleted): nothing to segment
            return {"results": []}
        if len(tasks) != 1:
            raise ApiError(400, f"an interactive request must hold one task, got {len(tasks)}")
        task = tasks[0]
        predictor = self._framed(self.model.get(timeout=PREDICT_MODEL_WAIT_S),
                                 self._project_of(body, [task]))
        project = str(body.get("project") or task.get("project") or "none")
        items: list[dict] = []
        qualities: list[float] = []
        answered: list[tuple[Prompt, Outcome]] = []
        for prompt in prompts:
            outcome, image = self._run_prompt(predictor, project, task, prompt)
            qualities.append(outcome.quality)
            items += self._result_items(prompt, outcome, image)
            self.metrics.inc("interactions", kind=outcome.kind.value)
            self.metrics.inc("clicks_run", outcome.clicks_run)
            answered.append((prompt, outcome))
        self._record_interactions(body, task, answered, self.served_as(predictor))
        score = float(min(qualities))
        return {
            "results": [
                {"result": items, "score": score, "model_version": predictor.model_version}
            ]
        }

    # --- telemetry (clicksmith/telemetry.py: never raises into a click or a webhook) --------
    def _record_interactions(self, body: dict, task: dict,
                             answered: list[tuple[Prompt, Outcome]], version: str) -> None:
        """Each answered prompt is one interaction of its object (task, image, control, label
        and the session's region id: several objects of one label are followed apart)."""
        project, task_id = self._project_of(body, [task]), task.get("id")
        if project is None or isinstance(task_id, bool) or not isinstance(task_id, int):
            return
        self.telemetry.record(Interaction(
            project, task_id, ObjectKey(p.target.name, p.brush.name, p.label, o.region or ""),
            o.kind.value, version, o.clicks_run) for p, o in answered)

    def annotation_submitted(self, body: dict) -> None:
        """An annotation webhook: finish its objects' telemetry, observe the histograms."""
        for record, new in self.telemetry.finish(body):
            if record.discarded:  # clicked, not in the annotation: not an object's histograms
                self.metrics.inc("telemetry_objects", outcome="discarded" if new else "amended")
                if new:
                    self.metrics.inc("discarded_objects", model_version=record.model_version)
                    self.metrics.inc("discarded_clicks", record.clicks,
                                     model_version=record.model_version)
                continue
            self.metrics.inc("telemetry_objects", outcome="finished" if new else "amended")
            if new:  # an object is observed once, at its first submission
                version = record.model_version
                self.metrics.observe_value("object_clicks", record.clicks, CLICK_BUCKETS,
                                           "Clicks per annotated object.", model_version=version)
                self.metrics.observe_value("object_tool_actions", record.tools, CLICK_BUCKETS,
                                           "Tool actions per annotated object.",
                                           model_version=version)
                self.metrics.observe_value("object_seconds", record.seconds, SECONDS_BUCKETS,
                                           "Seconds from an object's first interaction to its "
                                           "submitted annotation.", model_version=version)

    # --- /versions --------------------------------------------------------------------
    def versions(self) -> dict:
        """The model versions this backend can serve: the bundled one, then the registry's
        (oldest first), as the list of names Label Studio 1.23 reads (ml/api.py
        MLBackendVersionsAPI takes `versions` and nothing else), and the serving one in
        `current` (the model answering now; before it has loaded, the one that will)."""
        from clicksmith import registry

        bundled = registry.bundled_version()
        names = [bundled] + [v["version"] for v in registry.list_versions(self.settings)]
        current = self.model.model_version or None
        if current is None and not self.settings.model_path:
            current = registry.current_version(self.settings) or bundled
        if current and current not in names:  # MODEL_PATH: weights outside the registry
            names.append(current)
        return {"versions": list(dict.fromkeys(names)), "current": current}

    # --- Retrieve Predictions (/predict without a context) -------------------------------
    def retrieve(self, body: dict, tasks: list[dict]) -> dict:
        """Each task's pre-label, as the pre-label job computes it (clicksmith.prelabel:
        newest brush mask refined, else the object in the newest box, else the main object;
        scored with mask_score), one entry per task, in task order.

        Label Studio 1.23 (ml/models.py `_get_predictions_from_ml_backend`) pairs results with
        tasks by position and stores nothing when the counts differ (unless one result came
        back: then it asks again task by task). An entry may be a list of predictions, so a
        task without a pre-label gets `[]`: nothing is stored for it and the next retrieval
        asks again (an entry with an empty `result` would be stored and mark the task done).
        A task that fails (its image cannot be had, its mask does not fit) gets `[]` and a
        line in the log saying why; the others are answered. Tasks are pre-labelled while
        RETRIEVE_BUDGET_SECONDS allow (Label Studio waits 100 s for the whole answer; the
        first task is always done); the rest get `[]` and, when REDIS_URL is set, pre-label
        jobs (review.prelabel.prelabel_batch) that write them through the API."""
        started = time.monotonic()
        config = self._batch_config(body.get("label_config"))
        predictor = self.model.get(timeout=PREDICT_MODEL_WAIT_S)
        results: list[dict | list] = []
        longest = 0.0
        deferred: list[dict] = []
        for i, task in enumerate(tasks):
            spent = time.monotonic() - started
            if i and spent + longest > self.settings.retrieve_budget_seconds:
                deferred = tasks[i:]
                results += [[] for _ in deferred]
                break
            t0 = time.monotonic()
            results.append(self._prelabel(predictor, config, task))
            longest = max(longest, time.monotonic() - t0)
        answer: dict = {"results": results}
        project = self._project_of(body, tasks)
        if deferred:
            queued = self._queue_prelabels(project, deferred, len(tasks) - len(deferred))
            if queued:
                answer["queued"] = queued
        if any(results):
            self._mark_project_version(project, predictor.model_version)
        return answer

    @staticmethod
    def served_as(predictor: SegmentationModel) -> str:
        """The version telemetry counts an object's clicks under: the model version, marked
        with a project's frames while they serve, so that clicks per object before and after
        a retrain adopted them are told apart (Label Studio still gets the model version)."""
        return predictor.model_version + getattr(predictor, "frames_label", "")

    def _framed(self, predictor: SegmentationModel, project: int | None) -> SegmentationModel:
        """The model with the frames for the project's object scale, when a retrain adopted
        one (cdnet.inference.scale); a damaged record is logged and counted, and the click
        is answered with the general frames rather than refused."""
        if project is None:
            return predictor
        try:
            scale = self.scales.get(project)
        except ValueError as exc:
            log.warning("project %s: general frames: %s", project, exc)
            self.metrics.inc("project_scale_errors")
            return predictor
        return predictor if scale is None else predictor.for_scale(scale)

    @staticmethod
    def _project_of(body: dict, tasks: list[dict]) -> int | None:
        """The project id of a /predict body ("<id>.<timestamp>", else the first task's)."""
        try:
            return project_id({"project": body.get("project") or tasks[0].get("project")})
        except ApiError:
            return None

    def _mark_project_version(self, project: int | None, version: str) -> None:
        """Set the project's model_version to `version`, as the pre-label job does, so that
        Label Studio's data manager orders tasks by these predictions' scores (it averages only
        the scores of the project's model_version, which connecting a backend sets to the
        backend's title). In the background, after the answer (Label Studio is waiting on
        it), once per project and version per process; only with LABEL_STUDIO_URL and
        LABEL_STUDIO_API_KEY set."""
        settings = self.settings
        if project is None or not (settings.label_studio_url and settings.label_studio_api_key):
            return
        if self._project_versions.get(project) == version:
            return
        self._project_versions[project] = version

        def update() -> None:
            from clicksmith.labelstudio.client import as_dict, client_for

            try:
                client = client_for(self.settings, timeout=10.0)
                if as_dict(client.projects.get(project)).get("model_version") != version:
                    client.projects.update(project, model_version=version)
            except Exception as exc:  # noqa: BLE001 (any failure: logged, tried next time)
                self._project_versions.pop(project, None)
                log.warning("retrieve predictions: project %s: model_version not set to %s "
                            "(the data manager will not order by these scores): %s",
                            project, version, exc)

        threading.Thread(target=update, name="clicksmith-project-version", daemon=True).start()

    def _batch_config(self, xml: object) -> ProjectConfig:
        """The config a pre-label needs (a brush on an Image; no prompt control required)."""
        try:
            config = parse_config(xml, interactive=False)  # type: ignore[arg-type]
            config.first_brush  # noqa: B018 (raises ConfigError when there is none)
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        return config

    def _prelabel(self, predictor: SegmentationModel, config: ProjectConfig,
                  task: dict) -> dict | list:
        """One task's prediction, or [] (no prediction) with the reason in the log."""
        try:
            _, image = self._image(predictor, task, config.image)
            with self.predict_lock:
                prediction = task_prediction(predictor, image.prepared, task, config)
        except (ApiError, ValueError) as exc:
            log.warning("retrieve predictions: task %s: no prediction: %s", task.get("id"),
                        getattr(exc, "message", None) or exc)
            self.metrics.inc("prelabels", outcome="failed")
            return []
        self.metrics.inc("prelabels", outcome="predicted")
        return prediction

    def _queue_prelabels(self, project: int | None, deferred: list[dict],
                         done: int) -> list[str]:
        """Pre-label jobs for the tasks the budget left out (their job ids); none, with the
        reason in the log, without a queue or a project id."""
        ids = [t["id"] for t in deferred if isinstance(t.get("id"), int)]
        self.metrics.inc("prelabels", len(deferred), outcome="deferred")
        why = ""
        if not self.jobs.enabled:
            why = "REDIS_URL is not set"
        elif project is None:
            why = "the request names no project id ('project')"
        if not why:
            size = max(1, self.settings.prelabel_batch_size)
            job_ids: list[str] = []
            try:
                for start in range(0, len(ids), size):
                    batch = ids[start:start + size]
                    job_ids.append(self.jobs.enqueue(
                        PRELABEL_JOB, project, batch,
                        description=f"prelabel project {project} tasks "
                                    f"{batch[0]}..{batch[-1]} (Retrieve Predictions)"))
            except QueueUnavailable as exc:
                why = str(exc)
                if job_ids:
                    log.warning("retrieve predictions: some pre-label jobs not queued: %s", why)
            if job_ids:
                log.info("retrieve predictions: %d tasks answered within "
                         "RETRIEVE_BUDGET_SECONDS=%s, %d queued for pre-labelling (jobs %s)",
                         done, self.settings.retrieve_budget_seconds, len(ids),
                         ", ".join(job_ids))
                return job_ids
        log.warning("retrieve predictions: %d tasks answered within RETRIEVE_BUDGET_SECONDS=%s; "
                    "%d left without a prediction (%s): retrieve them again or run "
                    "`clicksmith prelabel`", done, self.settings.retrieve_budget_seconds,
                    len(deferred), why or "nothing queued")
        return []

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
                                    image.height, image.width, decode=self.regions.decode)
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
            path=outcome.path, tag=prompt.brush.tag,  # BrushLabels: RLE, BitmaskLabels: PNG
            region_id=outcome.region,  # the session's one region: updated in place in LS
        )
