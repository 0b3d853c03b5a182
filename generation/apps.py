from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_library(sender: AppConfig, **kwargs: Any) -> None:
    # Reference data, not business logic: every database (tests included) gets the built-in templates.
    from generation.services import sync_builtin_templates

    sync_builtin_templates()


class GenerationConfig(AppConfig):
    name = "generation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billing.integrity import register_metered_jobs  # models need the app registry: not at import
        from generation.metering import AUDITED_JOBS  # likewise

        register_metered_jobs(AUDITED_JOBS)
        post_migrate.connect(_sync_library, sender=self)
