"""How billing code reaches its Celery tasks: by task name, never by importing ``billing.tasks``.

The tasks call into ``billing.invoicing`` and ``billing.payments``; sending by name keeps those
modules from importing the tasks back. The names are what queued messages carry: they must not
change while a deployment has messages in Redis.

Billing and ``workers`` are independent layers (pyproject's import contracts), so this sends
through Celery's current app, as ``shared_task`` does: the one ``workers.celery`` configures
(broker, ``task_routes`` for the queue) in every process that has loaded it.
"""

from __future__ import annotations

from typing import Any

from celery import current_app

SEND_INVOICE_TO_STRIPE = "billing.send_invoice_to_stripe"


def send_invoice_to_stripe(invoice_id: Any) -> None:
    """Send the task that has Stripe collect an issued invoice (it retries itself while Stripe is away).

    Raises the broker's error if it cannot be reached: the caller decides what an unsent task means.
    """
    # A task sent by name does not read its task's settings: without ignore_result, Celery would
    # subscribe this process to the result store for every task sent (and fail while Redis is away).
    current_app.send_task(
        SEND_INVOICE_TO_STRIPE, args=(str(invoice_id),), ignore_result=current_app.conf.task_ignore_result
    )
