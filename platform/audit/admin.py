from __future__ import annotations

from django.contrib import admin

from audit.models import AuditLog
from core.admin import ReadOnlyAdmin


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    """Append-only: operators read the trail, nobody edits it."""

    list_display = ["created_at", "action", "organization", "actor", "api_key", "target_type", "target_id"]
    list_filter = ["action", "created_at"]
    search_fields = ["action", "target_id", "organization__name", "actor__email"]
    list_select_related = ["organization", "actor", "api_key"]
    date_hierarchy = "created_at"
