"""How recommendation code reaches its Celery tasks: by task name, never by importing ``recommendations.tasks``.

The tasks call into ``recommendations.execution`` and ``recommendations.services``; sending by name
keeps those modules from importing the tasks back. The web process never imports the tasks, so
Celery does not know their declared options there: each name is sent with the queue its task
declares or ``workers.celery`` routes it to (``watch_campaign`` and ``reconcile`` run on
``default`` although ``recommendations.*`` is routed to ``recommendation``). The names are what
queued messages carry: they must not change while a deployment has messages in Redis.

Callers send after the commit that made the work visible (``transaction.on_commit``), so a worker
never looks for a row that is not there yet.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.exceptions import OperationalError as BrokerUnavailable

from workers.celery import app

logger = logging.getLogger(__name__)

RUN_JOB = "recommendations.run_job"
WATCH_CAMPAIGN = "recommendations.watch_campaign"
#: The queue of each task sent from here, as ``recommendations.tasks`` declares it (tested there).
QUEUES = {RUN_JOB: "recommendation", WATCH_CAMPAIGN: "default"}


def _send(name: str, *args: Any) -> None:
    app.send_task(name, args=list(args), queue=QUEUES[name])


def enqueue(job_id: Any) -> bool:
    """Send the recommendation job's task; whether it was sent.

    Called once the job is committed. If the broker cannot be reached (Redis restarting), the job
    stays queued and the reconciler (``recommendations.reconcile``, every few minutes) enqueues it
    later: the caller that started it still gets its job, not a 500 for a job that exists and will run.
    """
    try:
        _send(RUN_JOB, str(job_id))
    except BrokerUnavailable as exc:
        logger.warning("could not enqueue recommendation job %s, the reconciler will: %s", job_id, exc)
        return False
    return True


def watch(campaign_id: Any) -> None:
    """Send the task that watches a campaign's jobs and regenerates copy that names none of the items."""
    _send(WATCH_CAMPAIGN, str(campaign_id))
