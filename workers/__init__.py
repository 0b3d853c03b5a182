"""Celery workers: the app, its queues, the language model a worker serves (``runtime``, ``engine``,
``stub``) and the heartbeat that /readyz reads.

A layer below the domain apps that use it: it knows no app's models. May import ``core`` and the
platform apps (it imports none today); never ``generation``, ``recommendations``, ``billing`` or
``config``.
"""

from workers.celery import app

__all__ = ["app"]
