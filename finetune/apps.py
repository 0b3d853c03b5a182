from __future__ import annotations

from django.apps import AppConfig


class FinetuneConfig(AppConfig):
    name = "finetune"
    verbose_name = "Brand models"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Projects sit below finetune in the layers: deleting one calls the cleanups registered here.
        from finetune import storage  # app registry ready; projects must not import finetune
        from projects.services import register_project_cleanup  # (the same)

        register_project_cleanup(storage.delete_project_files)
