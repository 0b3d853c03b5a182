from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditLog


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Append-only: operators read the trail, nobody edits it."""

    list_display = ["created_at", "action", "organization", "actor", "api_key", "target_type", "target_id"]
    list_filter = ["action", "created_at"]
    search_fields = ["action", "target_id", "organization__name", "actor__email"]
    list_select_related = ["organization", "actor", "api_key"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
