from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from recommendations.models import (
    Campaign,
    CampaignRecipient,
    CatalogItem,
    Customer,
    DataImport,
    Event,
    Recommendation,
    RecommendationJob,
    RecommendationSettings,
    SimilarItem,
)


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Results and records written by the platform: operators look, they do not edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CatalogItem)
class CatalogItemAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["sku", "title", "price", "project", "organization", "updated_at"]
    search_fields = ["sku", "title", "project__name", "organization__name"]
    list_select_related = ["project", "organization"]
    exclude = ["embedding"]
    readonly_fields = ["embedding_text_hash", "created_at"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["external_id", "project", "organization", "created_at"]
    search_fields = ["external_id", "project__name", "organization__name"]
    list_select_related = ["project", "organization"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "type", "customer", "item", "value", "project"]
    list_filter = ["type"]
    search_fields = ["event_id", "customer__external_id", "item__sku", "project__name"]
    list_select_related = ["customer", "item", "project"]
    date_hierarchy = "occurred_at"


@admin.register(RecommendationSettings)
class RecommendationSettingsAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["project", "exclude_purchased", "updated_at"]
    search_fields = ["project__name", "project__organization__name"]
    list_select_related = ["project"]


@admin.register(DataImport)
class DataImportAdmin(ReadOnlyAdmin):
    list_display = ["filename", "project", "organization", "total_rows", "events_created", "duration_s", "created_at"]
    search_fields = ["filename", "project__name", "organization__name"]
    list_select_related = ["project", "organization"]


@admin.register(RecommendationJob)
class RecommendationJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "status", "k", "attempts", "compute_seconds", "created_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["id", "project__name", "organization__name", "failure_reason"]
    list_select_related = ["project"]
    date_hierarchy = "created_at"


@admin.register(Recommendation)
class RecommendationAdmin(ReadOnlyAdmin):
    list_display = ["job", "customer", "rank", "item", "score", "reason"]
    search_fields = ["customer__external_id", "item__sku", "reason"]
    list_select_related = ["job", "customer", "item"]
    raw_id_fields = ["job", "customer", "item"]


@admin.register(SimilarItem)
class SimilarItemAdmin(ReadOnlyAdmin):
    list_display = ["job", "item", "rank", "similar", "score"]
    search_fields = ["item__sku", "similar__sku"]
    list_select_related = ["job", "item", "similar"]
    raw_id_fields = ["job", "item", "similar"]


class CampaignRecipientInline(admin.TabularInline):  # type: ignore[type-arg]
    model = CampaignRecipient
    extra = 0
    fields = ["customer", "job", "arm_label", "error"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    list_display = ["name", "project", "organization", "template_version", "items_per_customer", "created_at"]
    search_fields = ["name", "project__name", "organization__name"]
    list_select_related = ["project", "organization", "template_version__template"]
    inlines = [CampaignRecipientInline]


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(ReadOnlyAdmin):
    list_display = ["campaign", "customer", "job", "arm_label", "error"]
    search_fields = ["campaign__name", "customer__external_id", "error"]
    list_select_related = ["campaign", "customer", "job"]
    raw_id_fields = ["campaign", "customer", "job", "assignment"]
