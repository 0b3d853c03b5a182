from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.errors import DomainError
from generation import registry
from generation.models import (
    BrandVoice,
    BulkBatch,
    GenerationJob,
    ProjectGenerationSettings,
    ServingModel,
    Template,
    TemplateVersion,
    Variant,
    Webhook,
    WebhookDelivery,
)


class ServingModelForm(forms.ModelForm):  # type: ignore[type-arg]
    """The API key is write-only: typed in a password field, stored encrypted, never shown again."""

    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave empty to keep the current key.",
    )
    remove_api_key = forms.BooleanField(required=False, label="Remove the API key")
    # Model servers are usually on a private network, without TLS: a URL typed without a scheme is http.
    base_url = forms.URLField(
        required=False, max_length=500, assume_scheme="http", help_text="OpenAI: the server's URL up to /v1."
    )

    class Meta:
        model = ServingModel
        fields = [
            "name", "slug", "is_active", "backend_kind", "model", "base_url", "context_length", "temperature",
            "top_p", "max_new_tokens", "price_per_1k_tokens", "organization", "plans",
        ]


@admin.register(ServingModel)
class ServingModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The model registry. The default is switched with the "Make the default" action, so there is one
    at every moment (a fresh install's "default" row runs each worker's LOOM_MODEL)."""

    form = ServingModelForm
    list_display = [
        "name", "slug", "backend_kind", "model", "base_url", "api_key_status", "price_per_1k_tokens",
        "organization", "is_active", "is_default",
    ]
    list_filter = ["backend_kind", "is_active", "is_default", ("organization", admin.EmptyFieldListFilter)]
    search_fields = ["name", "slug", "model", "base_url", "organization__name"]
    list_select_related = ["organization"]
    filter_horizontal = ["plans"]
    readonly_fields = ["is_default", "api_key_status", "created_at", "updated_at"]
    actions = ["make_default"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "is_active", "is_default"]}),
        ("Serving", {"fields": ["backend_kind", "model", "base_url", "api_key_status", "api_key", "remove_api_key",
                                "context_length"]}),
        ("Default sampling", {"fields": ["temperature", "top_p", "max_new_tokens"]}),
        ("Price and access", {"fields": ["price_per_1k_tokens", "organization", "plans"]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="API key")
    def api_key_status(self, obj: ServingModel) -> str:
        return "set" if obj.has_api_key else "not set"

    def save_model(self, request: HttpRequest, obj: ServingModel, form: Any, change: bool) -> None:
        if form.cleaned_data.get("api_key"):
            obj.set_api_key(form.cleaned_data["api_key"])
        elif form.cleaned_data.get("remove_api_key"):
            obj.set_api_key("")
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Jobs without a model of their own run on the default: make another the default first.
        return super().has_delete_permission(request, obj) and not (obj is not None and obj.is_default)

    @admin.action(description="Make the default")
    def make_default(self, request: HttpRequest, queryset: QuerySet[ServingModel]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one model to make the default.", messages.ERROR)
            return
        try:
            model = registry.make_default(actor=request.user, model=queryset.get())
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return
        self.message_user(request, f"{model.name} is the default model now.")


@admin.register(ProjectGenerationSettings)
class ProjectGenerationSettingsAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["project", "default_model", "updated_at"]
    search_fields = ["project__name", "project__organization__name"]
    list_select_related = ["project", "default_model"]


class TemplateVersionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = TemplateVersion
    extra = 0
    fields = ["version", "changelog", "default_max_new_tokens", "knowledge_token_budget", "created_at"]
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
