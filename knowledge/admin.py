from __future__ import annotations

from django.contrib import admin

from knowledge.models import KnowledgeSource


@admin.register(KnowledgeSource)
class KnowledgeSourceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("title", "kind", "project", "status", "updated_at")
    list_filter = ("kind", "status")
    search_fields = ("title", "sku")
    readonly_fields = ("organization", "project", "content_hash", "embedded_hash", "embedded_at", "failure_reason")
    exclude = ("original",)
