"""Thin Celery tasks of the experiments app; beat sends ``experiments.review_running`` by name
(``workers.celery`` beat schedule), so no domain code imports this module."""

from __future__ import annotations

from celery import shared_task

from experiments import services


@shared_task(name="experiments.review_running", queue="default")
def review_running_experiments() -> int:
    """Reweight adaptive experiments and conclude those whose stop rule holds; safe to run twice."""
    return services.review_running()
