"""The Celery application.

Run a worker with ``celery -A workers worker -Q generation,recommendation,default``.
Reliability settings: a task is acknowledged only after it finishes
(``acks_late``) and is put back when its worker process dies
(``task_reject_on_worker_lost``); each worker process reserves one task at a
time (prefetch 1) so a long generation job never holds others hostage; and the
hard time limit stays below Redis' ``visibility_timeout`` so a running task is
never handed to a second worker.
"""

from __future__ import annotations

import os

from celery import Celery, bootsteps, signals
from kombu import Queue

import srcroot  # noqa: F401  (platform/ on sys.path before Django settings load)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

from django.conf import settings

from workers.engine import get_engine
from workers.engines import occupancy
from workers.heartbeat import GENERATION_QUEUE, WorkerBeat

QUEUES = ("generation", "recommendation", "training", "default")


def broker_url(redis_url: str) -> str:
    """Kombu spells Redis-over-unix-socket ``redis+socket://``; redis-py spells it ``unix://``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://"):]
    return redis_url


app = Celery("loom")
app.conf.update(
    broker_url=broker_url(settings.CELERY_BROKER_URL),
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": settings.CELERY_VISIBILITY_TIMEOUT_S,
        # Lets a test run share a Redis server with a running platform without stealing its tasks.
        "global_keyprefix": settings.CELERY_KEY_PREFIX,
    },
    task_queues=[Queue(name) for name in QUEUES],
    task_default_queue="default",
    # Only model work goes to the GPU-backed generation queue; webhooks and bookkeeping stay on default.
    task_routes={
        "generation.run_job": {"queue": "generation"},
        "generation.regenerate_variant": {"queue": "generation"},
        "recommendations.*": {"queue": "recommendation"},
        # Fine-tuning takes its worker's whole machine for minutes: its own queue and workers (concurrency 1).
        "finetune.run_training": {"queue": "training"},
    },
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=settings.CELERY_TASK_TIME_LIMIT_S,
    task_soft_time_limit=max(settings.CELERY_TASK_TIME_LIMIT_S - 60, 1),
    task_ignore_result=True,
    result_backend=broker_url(settings.REDIS_URL),
    result_expires=3600,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    timezone="UTC",
)
app.autodiscover_tasks(["workers", "generation"], related_name="tasks")
app.autodiscover_tasks()

# Database connections outlive a task as they outlive a web request: Django closes one once
# CONN_MAX_AGE has passed or after an error, and checks it before reuse (CONN_HEALTH_CHECKS), on
# the signals below. Celery's Django fixup instead closes every connection before and after each
# task unless CELERY_DB_REUSE_MAX is set, so every generation job opened a new Postgres connection
# (15 a second under bench.load: a backend fork and authentication each, more CPU than the job's
# own queries). The reuse limit is set out of reach so that only Django decides.
app.conf.CELERY_DB_REUSE_MAX = 10**9


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_connections(**_: object) -> None:
    from django.db import connections

    # Never under a caller's transaction: a task applied eagerly (tests, `manage.py shell`) runs
    # inside it, and closing would break the caller's connection mid-transaction.
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()

app.conf.beat_schedule = {
    "reconcile-generation-jobs": {"task": "generation.reconcile", "schedule": settings.GENERATION_RECONCILE_EVERY_S},
    # Invoices are due once a period ends; a quarter of an hour late is soon enough, and closing is idempotent.
    "close-billing-periods": {"task": "billing.close_periods", "schedule": 15 * 60.0},
    # Recommendation jobs whose task was never sent (a crash after commit) or whose worker vanished.
    "reconcile-recommendation-jobs": {"task": "recommendations.reconcile", "schedule": 5 * 60.0},
    # Training runs whose task was lost or whose worker died mid-training (resumed from their checkpoint).
    "reconcile-training-runs": {"task": "finetune.reconcile", "schedule": 60.0, "options": {"queue": "default"}},
    # Adaptive experiments' traffic shares and the automatic stop (experiments.services.review_experiment).
    "review-running-experiments": {
        "task": "experiments.review_running",
        "schedule": settings.EXPERIMENTS_REVIEW_EVERY_S,
        "options": {"queue": "default"},
    },
}


class Heartbeat(bootsteps.StartStopStep):
    """Writes this worker's heartbeat from the worker's own timer, and loads the generation model.

    The timer runs in the parent process, so a child busy with a long job does
    not make a healthy worker look dead. A generation worker beats before it
    starts loading its model (a minute on CPU the first time): live, not yet
    ready for the generation queue (workers.heartbeat.WorkerBeat).
    """

    requires = {"celery.worker.components:Timer"}

    def start(self, worker: object) -> None:
        consumed = app.amqp.queues.consume_from
        queues = sorted(q.name for q in consumed.values()) if consumed else []
        self.heartbeat = WorkerBeat(
            worker.hostname, queues, settings.LOOM_MODEL,  # type: ignore[attr-defined]
            engines=occupancy if GENERATION_QUEUE in queues else None,
        )
        self.heartbeat.send()
        if self.heartbeat.needs_model:
            # Load the model now, not inside the first job (the first start converts the GGUF file).
            self.heartbeat.start_warm_up(get_engine)
        self.tref = worker.timer.call_repeatedly(  # type: ignore[attr-defined]
            settings.WORKER_HEARTBEAT_INTERVAL_S, self.heartbeat.send, priority=10
        )

    def stop(self, worker: object) -> None:
        if getattr(self, "tref", None) is not None:
            self.tref.cancel()
        if getattr(self, "heartbeat", None) is not None:
            self.heartbeat.stop()


app.steps["worker"].add(Heartbeat)
