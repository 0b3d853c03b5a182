from __future__ import annotations

from django.apps import AppConfig

from config.logs import connect_task_signals


class LoomConfig(AppConfig):
    """The top layer's app: its commands (``seed_demo``), and the process-wide hooks of its logs."""

    name = "config"
    label = "config"

    def ready(self) -> None:
        # Every process that loads Django (web, Celery worker and beat) sends or runs tasks: each logs them.
        connect_task_signals()
