from __future__ import annotations

from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "experiments"
    verbose_name = "Experiments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Models need the app registry: not at import. Generation reads concluded arms through this hook.
        from experiments.learning import concluded_arms
        from generation.outcomes import register_outcome_source  # as above: needs the app registry

        register_outcome_source(concluded_arms)
