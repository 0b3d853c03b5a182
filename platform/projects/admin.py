from __future__ import annotations

from django.contrib import admin

from projects.models import Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "slug", "organization", "default_language", "created_by", "created_at"]
    list_filter = ["default_language", "created_at"]
    search_fields = ["name", "slug", "organization__name"]
    list_select_related = ["organization", "created_by"]
    autocomplete_fields = ["organization"]
    readonly_fields = ["id", "created_at", "updated_at", "created_by"]
