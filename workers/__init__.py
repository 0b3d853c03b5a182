"""Celery workers: the app, its queues and the heartbeat that /readyz reads."""

from workers.celery import app

__all__ = ["app"]
