"""Thin Celery tasks: ids in, ``finetune.execution`` does the work. ``run_training`` is routed to the
``training`` queue by ``workers.celery``; the reconciler runs on ``default``."""

from __future__ import annotations

from celery import shared_task

from finetune import execution


@shared_task(name="finetune.run_training", queue="training")
def run_training(run_id: str) -> str | None:
    run = execution.run_training(run_id)
    return run.status if run else None


@shared_task(name="finetune.reconcile", queue="default")
def reconcile_training_runs() -> int:
    return len(execution.reconcile())
