from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from generation.models import (
    BrandVoice,
    BulkBatch,
    GenerationJob,
    Template,
    TemplateVersion,
    Variant,
    Webhook,
    WebhookDelivery,
)


class TemplateVersionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = TemplateVersion
    extra = 0
    fields = ["version", "changelog", "default_max_new_tokens", "created_at"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "slug", "category", "organization", "created_at"]
    list_filter = ["category", ("organization", admin.EmptyFieldListFilter)]
    search_fields = ["name", "slug", "organization__name"]
    list_select_related = ["organization"]
    inlines = [TemplateVersionInline]


@admin.register(TemplateVersion)
class TemplateVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Versions are immutable: jobs pin them."""

    list_display = ["template", "version", "default_max_new_tokens", "created_at"]
    search_fields = ["template__name", "template__slug"]
    list_select_related = ["template"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BrandVoice)
class BrandVoiceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["project", "tone", "audience", "updated_at"]
    search_fields = ["project__name", "project__organization__name", "tone"]
    list_select_related = ["project"]


class VariantInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Variant
    extra = 0
    fields = [
        "index",
        "revision",
        "is_current",
        "finish_reason",
        "tokens",
        "constraints_passed",
        "brand_fit",
        "rating",
        "approved",
    ]
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # Few, narrow columns, status second: with the filter sidebar the list fits a 1280 px screen
    # (the full id alone took a fifth of it). Attempts, timings and tokens are on the change page.
    list_display = ["short_id", "status", "organization", "project", "template_version", "tokens", "created_at"]
    list_display_links = ["short_id"]
    list_filter = ["status", "created_at", "template_version__template"]
    search_fields = ["id", "organization__name", "project__name", "idempotency_key", "failure_reason"]
    list_select_related = ["organization", "project", "template_version__template"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in GenerationJob._meta.fields]
    inlines = [VariantInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="job", ordering="id")
    def short_id(self, obj: GenerationJob) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="tokens")
    def tokens(self, obj: GenerationJob) -> int:
        return obj.total_tokens


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "job",
        "index",
        "revision",
        "finish_reason",
        "tokens",
        "constraints_passed",
        "brand_fit",
        "rating",
        "approved",
    ]
    list_filter = ["approved", "constraints_passed", "finish_reason", "rating"]
    search_fields = ["job__id", "text", "edited_text"]
    list_select_related = ["job"]
    readonly_fields = [
        "job",
        "index",
        "revision",
        "text",
        "tokens",
        "prompt_tokens",
        "finish_reason",
        "seed",
        "constraint_report",
        "original_constraint_report",
        "brand_fit",
        "moderation",
        "created_at",
    ]


@admin.register(BulkBatch)
class BulkBatchAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["filename", "organization", "project", "template_version", "total_rows", "created_at"]
    search_fields = ["filename", "organization__name", "project__name"]
    list_select_related = ["organization", "project", "template_version__template"]
    readonly_fields = ["row_errors"]


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["url", "organization", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "organization__name"]
    list_select_related = ["organization"]
    exclude = ["encrypted_secret"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["webhook", "job", "event", "status", "attempts", "last_status_code", "delivered_at", "created_at"]
    list_filter = ["status", "event"]
    search_fields = ["webhook__url", "job__id", "last_error"]
    list_select_related = ["webhook"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
