"""Operators look at experiments, their arms, exposures and outcomes; marketers change them in the dashboard."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from experiments.models import Arm, Assignment, Experiment, Outcome


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows recorded by serving and tracking: editing one would falsify an experiment's results."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ArmInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Arm
    extra = 0
    fields = ["position", "label", "variant", "text", "weight"]
    readonly_fields = ["variant", "weight"]
    raw_id_fields = ["variant"]


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "status", "policy", "goal_event", "project", "organization", "started_at", "created_at"]
    list_filter = ["status", "policy"]
    search_fields = ["name", "project__name", "organization__name"]
    list_select_related = ["project", "organization"]
    readonly_fields = ["created_at", "updated_at", "started_at", "ended_at", "reweighted_at", "winner"]
    raw_id_fields = ["organization", "project", "created_by", "api_key"]
    inlines = [ArmInline]


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["unit", "arm", "experiment", "created_at"]
    search_fields = ["unit", "experiment__name"]
    list_select_related = ["arm", "experiment"]
    date_hierarchy = "created_at"


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "event", "assignment", "experiment", "value"]
    list_filter = ["event"]
    search_fields = ["event_id", "assignment__unit", "experiment__name"]
    list_select_related = ["assignment", "experiment"]
    date_hierarchy = "occurred_at"
