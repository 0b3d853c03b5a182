from __future__ import annotations

from django.contrib import admin

from finetune.models import TrainingRun
from generation.models import BrandAdapter


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "organization", "project", "status", "attempts", "compute_seconds", "created_at")
    list_filter = ("status",)
    search_fields = ("id", "project__name", "organization__name")
    raw_id_fields = ("organization", "project", "serving_model", "adapter", "created_by", "api_key")
    readonly_fields = ("created_at", "started_at", "finished_at", "lease_expires_at", "worker", "progress")


@admin.register(BrandAdapter)
class BrandAdapterAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("project", "version", "organization", "serving_model", "beats_base", "is_active", "created_at")
    list_filter = ("is_active", "beats_base")
    search_fields = ("id", "project__name", "organization__name")
    raw_id_fields = ("organization", "project", "serving_model", "created_by")
    readonly_fields = ("created_at", "activated_at", "path")
