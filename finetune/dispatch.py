"""How finetune code reaches its Celery tasks: by name, never by importing ``finetune.tasks``
(as ``recommendations.dispatch``). Sent after the commit that made the run visible."""

from __future__ import annotations

import logging
from typing import Any

from kombu.exceptions import OperationalError as BrokerUnavailable

from workers.celery import app

logger = logging.getLogger(__name__)

RUN_TRAINING = "finetune.run_training"
#: Training takes a worker's whole machine for minutes: a queue of its own, one run at a time per worker.
QUEUE = "training"


def enqueue(run_id: Any) -> bool:
    """Send the run's task; False when the broker refused (the run stays queued for the reconciler)."""
    try:
        app.send_task(RUN_TRAINING, args=[str(run_id)], queue=QUEUE)
    except BrokerUnavailable as exc:
        logger.warning("could not enqueue training run %s, the reconciler will: %s", run_id, exc)
        return False
    return True
