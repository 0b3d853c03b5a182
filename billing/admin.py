from __future__ import annotations

from django.contrib import admin

from billing.models import BillingAccount, LedgerEntry, Plan, Subscription
from core.admin import ReadOnlyAdmin


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Plans are data: operators edit prices and limits here."""

    list_display = [
        "code",
        "name",
        "monthly_price",
        "included_tokens",
        "price_per_1k_tokens",
        "overage_allowed",
        "max_concurrent_jobs",
        "max_variants_per_job",
        "is_active",
    ]
    list_filter = ["is_active", "overage_allowed"]
    search_fields = ["code", "name"]
    readonly_fields = ["created_at"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["organization", "plan", "status", "pending_plan", "current_period_start", "current_period_end"]
    list_filter = ["status", "plan"]
    search_fields = ["organization__name", "organization__slug", "stripe_customer_id", "stripe_subscription_id"]
    list_select_related = ["organization", "plan", "pending_plan"]
    autocomplete_fields = ["organization"]
    readonly_fields = ["id", "created_at", "updated_at"]


@admin.register(BillingAccount)
class BillingAccountAdmin(ReadOnlyAdmin):
    """Running balances, written only by billing.services under a row lock: read here, never edited."""

    list_display = [
        "organization",
        "period_start",
        "tokens_used_in_period",
        "tokens_reserved",
        "credit_tokens",
        "active_jobs",
        "updated_at",
    ]
    search_fields = ["organization__name", "organization__slug"]
    list_select_related = ["organization"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """Append-only: credits and adjustments go through billing.services (which audits them)."""

    list_display = ["created_at", "organization", "kind", "tokens", "amount", "job", "project", "created_by"]
    list_filter = ["kind", "created_at"]
    search_fields = ["organization__name", "organization__slug", "reason", "job__id"]
    list_select_related = ["organization", "project", "created_by"]
    date_hierarchy = "created_at"
