from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apikeys.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only apart from expiry: keys are created by org admins, where the secret is shown once."""

    list_display = ["name", "prefix", "organization", "project", "scope", "is_active", "last_used_at", "created_at"]
    list_filter = ["scope", "created_at", "revoked_at"]
    search_fields = ["name", "prefix", "organization__name"]
    list_select_related = ["organization", "project"]
    readonly_fields = [
        "id", "organization", "project", "name", "scope", "prefix", "created_by", "created_at",
        "last_used_at", "revoked_at", "revoked_by",
    ]
    exclude = ["secret_hash"]

    @admin.display(boolean=True)
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
