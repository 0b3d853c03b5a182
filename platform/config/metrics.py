"""What ``GET /metrics`` reports to Prometheus (the view: ``config.metrics_views``).

Two kinds of numbers:

* **Counted in the web processes** by ``prometheus_client`` metrics: django-prometheus' requests,
  latency and answers per view and method, and database queries and errors; and the API's rate-limit
  refusals (``billing.ratelimit.REFUSALS``). gunicorn runs several processes, each counting its own:
  ``platform/config/gunicorn.py`` turns on prometheus_client's multiprocess mode (each process writes
  its counters to a file in ``PROMETHEUS_MULTIPROC_DIR``) and a scrape adds them all up, whichever
  process answers it.
* **Read at each scrape** by ``LoomCollector`` from where the state already is, so that no worker has
  to serve metrics of its own and any web process answers for all: Redis (the Celery queues, the
  workers' heartbeats with their engines' occupancy) and Postgres (jobs by state, generation speed and
  time to first token of the jobs that finished lately, recommendation job durations, billing holds,
  the serving models' reachability). A source that cannot be read is reported down
  (``loom_metrics_source_up``) and the others still are.

Costs, per scrape: one Redis pipeline for the queues, a SCAN of the heartbeats, and eight small
queries (the job counts use the status indexes; "lately" is a ``created_at`` range, indexed).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, FloatField, Min, Q, Sum
from django.utils import timezone
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from billing.models import BillingAccount
from config.logs import PUBLISHED_AT_HEADER
from generation import registry
from generation.models import GenerationJob, JobStatus, ServingModel
from recommendations.models import RecommendationJob, RecommendationJobStatus
from workers.celery import QUEUES
from workers.heartbeat import READY, heartbeats, queue_status

logger = logging.getLogger(__name__)

#: Generation speed and time to first token are over the jobs that finished in this window: long
#: enough to hold a few jobs on a quiet server, short enough to show a slowdown within minutes.
GENERATION_WINDOW_S = 300
#: Recommendation jobs are few (one per project and retraining): their durations are over an hour.
RECOMMENDATION_WINDOW_S = 3600
QUANTILES = (0.5, 0.95)
#: Broker timeouts: a stuck Redis makes a scrape report it down, not hang past Prometheus' timeout.
REDIS_TIMEOUT_S = 2.0


class Percentile(Aggregate):
    """Postgres' ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``, which Django lacks."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        if not 0 <= fraction <= 1:
            raise ValueError(f"a percentile is a fraction between 0 and 1, not {fraction}")
        super().__init__(expression, fraction=float(fraction), **extra)


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels or [])


@lru_cache(maxsize=4)
def _broker(url: str) -> redis.Redis:
    # One pooled client per process and URL; redis-py reads unix:// as it is (kombu spells it redis+socket://).
    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)


def _queue_keys(queue: str) -> list[str]:
    """The Redis lists holding ``queue``'s waiting messages: kombu keeps one per priority step.

    Read here rather than through a kombu channel: its size method is private, and the public
    ``queue_declare(passive=True)`` raises for an empty queue (Redis deletes an empty list).
    """
    prefix = settings.CELERY_KEY_PREFIX
    return [prefix + (f"{queue}{Channel.sep}{step}" if step else queue) for step in PRIORITY_STEPS]


def queue_backlog(queues: tuple[str, ...]) -> dict[str, tuple[int, float | None]]:
    """Per Celery queue: the messages waiting in the broker, and when the oldest of them was sent.

    Kombu pushes on the left and workers pop on the right, so each list's last element is its oldest.
    The send time is the header ``config.logs`` stamps on every message (None: no such message).
    """
    pipe = _broker(settings.CELERY_BROKER_URL).pipeline(transaction=False)
    for queue in queues:
        for key in _queue_keys(queue):
            pipe.llen(key)
            pipe.lindex(key, -1)
    replies = iter(pipe.execute())
    backlog = {}
    for queue in queues:
        waiting, sent = 0, []
        for _ in PRIORITY_STEPS:
            length, oldest = next(replies), next(replies)
            waiting += int(length)
            if oldest is not None and (stamp := _published_at(oldest)) is not None:
                sent.append(stamp)
        backlog[queue] = (waiting, min(sent) if sent else None)
    return backlog


def _published_at(message: bytes) -> float | None:
    try:
        stamp = json.loads(message).get("headers", {}).get(PUBLISHED_AT_HEADER)
    except (ValueError, AttributeError):  # not a kombu message of ours
        return None
    return float(stamp) if isinstance(stamp, int | float) else None


class LoomCollector(Collector):
    """The platform's state at scrape time: queues, workers, engines, jobs, billing holds, models."""

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = _gauge("loom_metrics_source_up", "Whether this scrape could read the source (1) or not (0).", ["source"])
        for source, read in (("broker", self._broker), ("workers", self._workers), ("database", self._database)):
            try:
                families = list(read())
            except Exception:  # any failure of one source: report it, still serve the others
                logger.warning("metrics: could not read the %s", source, exc_info=True)
                families = []
            yield from families
            up.add_metric([source], 1 if families else 0)
        yield up
        took = _gauge("loom_metrics_collect_seconds", "Seconds this scrape took to read queues, workers, database.")
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _broker(self) -> Iterator[Metric]:
        now = time.time()
        depth = _gauge("loom_queue_messages", "Messages waiting in the broker per Celery queue.", ["queue"])
        age = _gauge(
            "loom_queue_oldest_message_age_seconds",
            "Seconds since the oldest message waiting in the queue was sent (0: none waiting).",
            ["queue"],
        )
        for queue, (waiting, sent) in queue_backlog(QUEUES).items():
            depth.add_metric([queue], waiting)
            age.add_metric([queue], max(now - sent, 0.0) if waiting and sent is not None else 0.0)
        yield depth
        yield age

    def _workers(self) -> Iterator[Metric]:
        beats = heartbeats()
        live = _gauge("loom_queue_workers", "Live workers (heartbeat not expired) consuming the queue.", ["queue"])
        ready = _gauge("loom_queue_ready_workers", "Live workers that can run the queue's tasks now.", ["queue"])
        for queue, status in queue_status(QUEUES, beats).items():
            live.add_metric([queue], status["workers"])
            ready.add_metric([queue], status["ready"] if status["state"] == READY else 0)
        yield live
        yield ready
        labels = ["worker", "kind", "model"]
        running = _gauge("loom_engine_running_requests", "Requests an engine is generating now.", labels)
        waiting = _gauge("loom_engine_waiting_requests", "Requests waiting for a place in an engine's batch.", labels)
        capacity = _gauge("loom_engine_capacity", "Requests an engine generates at most at once.", labels)
        occupancy = _gauge(
            "loom_engine_batch_occupancy_ratio", "Share of an engine's places in use (running / capacity).", labels
        )
        for beat in beats:
            for engine in beat.get("engines", []):
                values = [beat["hostname"], str(engine.get("kind", "")), str(engine.get("model", ""))]
                running.add_metric(values, engine.get("running", 0))
                waiting.add_metric(values, engine.get("waiting", 0))
                capacity.add_metric(values, engine.get("capacity", 0))
                share = engine.get("running", 0) / engine["capacity"] if engine.get("capacity") else 0
                occupancy.add_metric(values, share)
        yield from (running, waiting, capacity, occupancy)

    def _database(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from self._jobs(now)
        yield from self._generation_speed(now)
        yield from self._recommendation_durations(now)
        yield from self._billing_holds()
        yield from self._models()

    def _jobs(self, now: Any) -> Iterator[Metric]:
        jobs = _gauge("loom_jobs", "Jobs by kind and status.", ["kind", "status"])
        oldest = _gauge(
            "loom_jobs_oldest_queued_age_seconds",
            "Seconds the oldest queued job of the kind has waited (0: none queued), its task in the broker or not.",
            ["kind"],
        )
        for kind, model, statuses, queued in (
            ("generation", GenerationJob, JobStatus, JobStatus.QUEUED),
            ("recommendation", RecommendationJob, RecommendationJobStatus, RecommendationJobStatus.QUEUED),
        ):
            counts = dict(model.objects.order_by().values_list("status").annotate(n=Count("pk")))
            for status in statuses.values:
                jobs.add_metric([kind, status], counts.get(status, 0))
            since = model.objects.filter(status=queued).aggregate(at=Min("created_at"))["at"]
            oldest.add_metric([kind], max((now - since).total_seconds(), 0.0) if since else 0.0)
        yield jobs
        yield oldest

    def _generation_speed(self, now: Any) -> Iterator[Metric]:
        window = timedelta(seconds=GENERATION_WINDOW_S)
        # created_at bounds the scan by its index: a job ends at the latest its deadline after it was created.
        recent = GenerationJob.objects.filter(
            created_at__gte=now - window - timedelta(seconds=settings.GENERATION_JOB_DEADLINE_S + 60),
            finished_at__gte=now - window,
        )
        found = recent.aggregate(
            tokens=Sum("completion_tokens"),
            **{f"p{int(q * 100)}": Percentile("first_token_ms", q, output_field=FloatField(),
                                               filter=Q(first_token_ms__isnull=False)) for q in QUANTILES},
        )
        speed = _gauge(
            "loom_generation_tokens_per_second",
            f"Completion tokens of the generation jobs that finished in the last {GENERATION_WINDOW_S} s, per second.",
        )
        speed.add_metric([], (found["tokens"] or 0) / GENERATION_WINDOW_S)
        yield speed
        ttft = _gauge(
            "loom_generation_time_to_first_token_seconds",
            f"Time from submission to the first token, quantiles over the jobs that finished in the last "
            f"{GENERATION_WINDOW_S} s (absent: none did).",
            ["quantile"],
        )
        for q in QUANTILES:
            if (ms := found[f"p{int(q * 100)}"]) is not None:
                ttft.add_metric([str(q)], ms / 1000)
        yield ttft

    def _recommendation_durations(self, now: Any) -> Iterator[Metric]:
        duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        found = RecommendationJob.objects.filter(
            status=RecommendationJobStatus.SUCCEEDED,
            finished_at__gte=now - timedelta(seconds=RECOMMENDATION_WINDOW_S),
            started_at__isnull=False,
        ).aggregate(
            count=Count("pk"),
            **{f"p{int(q * 100)}": Percentile(duration, q, output_field=DurationField()) for q in QUANTILES},
        )
        durations = _gauge(
            "loom_recommendation_job_duration_seconds",
            f"Running time of the recommendation jobs that succeeded in the last {RECOMMENDATION_WINDOW_S} s, "
            "quantiles (absent: none did).",
            ["quantile"],
        )
        for q in QUANTILES:
            if (value := found[f"p{int(q * 100)}"]) is not None:
                durations.add_metric([str(q)], value.total_seconds())
        yield durations
        finished = _gauge(
            "loom_recommendation_jobs_succeeded_recent",
            f"Recommendation jobs that succeeded in the last {RECOMMENDATION_WINDOW_S} s.",
        )
        finished.add_metric([], found["count"])
        yield finished

    def _billing_holds(self) -> Iterator[Metric]:
        found = BillingAccount.objects.aggregate(
            slots=Sum("active_jobs"), tokens=Sum("tokens_reserved"),
            accounts=Count("pk", filter=Q(tokens_reserved__gt=0)),
        )
        holds = _gauge("loom_billing_open_holds", "Admitted jobs whose billing hold is not settled yet.")
        holds.add_metric([], found["slots"] or 0)
        tokens = _gauge("loom_billing_held_tokens", "Tokens reserved by open holds, all organizations.")
        tokens.add_metric([], found["tokens"] or 0)
        accounts = _gauge("loom_billing_accounts_holding", "Organizations with tokens on hold.")
        accounts.add_metric([], found["accounts"] or 0)
        yield from (holds, tokens, accounts)

    def _models(self) -> Iterator[Metric]:
        models = list(ServingModel.objects.filter(is_active=True).order_by("slug"))
        found = registry.reachability(models)  # cached; refreshed in the background (MODEL_PROBE_CACHE_S)
        reachable = _gauge(
            "loom_model_reachable", "Whether each active serving model's server answers (1) or not (0).",
            ["model", "backend"],
        )
        for model in models:
            reachable.add_metric([model.slug, model.backend_kind], 1 if found[model.slug].reachable else 0)
        yield reachable


#: The collector's own registry, so the scrape adds it once whether or not the process registry is
#: the multiprocess one.
LOOM_REGISTRY = CollectorRegistry(auto_describe=False)
LOOM_REGISTRY.register(LoomCollector())


def exposition() -> bytes:
    """The whole /metrics body, in Prometheus' text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)  # every gunicorn process's counters, added up
    else:
        counted = REGISTRY
    return generate_latest(counted) + generate_latest(LOOM_REGISTRY)
