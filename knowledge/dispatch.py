"""How knowledge code reaches its Celery task: by name, after the commit that made the work visible.

As ``recommendations.dispatch``: the web process never imports ``knowledge.tasks``, so the queue is
named here. The name is what queued messages carry: it must not change while messages wait in Redis.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnavailable

from workers.celery import app

logger = logging.getLogger(__name__)

EMBED_SOURCES = "knowledge.embed_sources"
#: ``default``: embedding a source is a few MiniLM passes, no generation model; the default queue's workers
#: have torch (they score brand fit for workers that stream from a server).
QUEUES = {EMBED_SOURCES: "default"}


#: Sources per task: a catalog import queues its items in tasks of 100 (each ~10 s of MiniLM on 2 CPU
#: cores for one-chunk product sheets), so one import is not 30,000 messages nor one task of an hour.
SOURCES_PER_TASK = 100


def embed_after_commit(*source_ids: Any) -> None:
    """Queue the sources' (re-)embedding once the current transaction commits."""
    ids = [str(pk) for pk in source_ids]
    for start in range(0, len(ids), SOURCES_PER_TASK):
        batch = ids[start : start + SOURCES_PER_TASK]
        transaction.on_commit(lambda batch=batch: _send(EMBED_SOURCES, batch))


def _send(name: str, *args: Any) -> None:
    try:
        app.send_task(name, args=list(args), queue=QUEUES[name])
    except BrokerUnavailable as exc:
        # The sources stay pending, which their page shows; saving one again re-queues it.
        logger.warning("could not enqueue %s%s: %s", name, args, exc)
