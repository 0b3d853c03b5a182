from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html

from billing import formatting, invoicing, usage
from billing import services as billing_services
from billing.models import (
    BillingAccount,
    ClosedPeriod,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    LedgerEntry,
    Plan,
    StripeEvent,
    Subscription,
    SubscriptionStatus,
)
from core.admin import ReadOnlyAdmin
from core.errors import DomainError
from organizations.admin import OrganizationAdmin
from organizations.models import Organization


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
        "max_running_experiments",
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


# --- invoices and Stripe (billing/invoicing.py, billing/payments.py) ----------------------------


class InvoiceLineInline(admin.TabularInline):  # type: ignore[type-arg]
    model = InvoiceLine
    fields = ["position", "kind", "description", "quantity", "unit", "amount"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Issued by the period close, never written here: operators mark invoices paid or void them (audited)."""

    list_display = ["number", "organization", "status", "total", "currency", "period_start", "issued_at", "paid_at"]
    list_filter = ["status", "issued_at"]
    search_fields = ["number", "organization__name", "organization__slug", "stripe_invoice_id"]
    list_select_related = ["organization"]
    date_hierarchy = "issued_at"
    inlines = [InvoiceLineInline]
    actions = ["mark_paid", "void"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in Invoice._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # gapless numbering: an issued invoice is voided, never deleted

    @admin.action(description="Mark selected invoices paid (manual payment)", permissions=["change"])
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        reference = f"marked paid in the admin by {request.user}"
        self._each(request, queryset, "paid", lambda i: invoicing.mark_invoice_paid(
            invoice=i, actor=request.user, reference=reference  # type: ignore[arg-type]
        ))

    @admin.action(description="Void selected invoices", permissions=["change"])
    def void(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> HttpResponse | None:
        reason = request.POST.get("reason", "").strip()
        if "apply" not in request.POST or not reason:
            # Ask for the reason first; the audit row keeps it.
            context = {
                **self.admin_site.each_context(request),
                "title": "Void invoices",
                "invoices": queryset,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "missing_reason": "apply" in request.POST,
                "opts": self.model._meta,
            }
            return TemplateResponse(request, "admin/billing/invoice/void.html", context)
        self._each(request, queryset, "voided", lambda i: invoicing.void_invoice(
            invoice=i, actor=request.user, reason=reason  # type: ignore[arg-type]
        ))
        return None

    def _each(self, request: HttpRequest, queryset: QuerySet[Invoice], done: str, change: Any) -> None:
        changed = 0
        for invoice in queryset:
            try:
                change(invoice)
                changed += 1
            except DomainError as exc:
                self.message_user(request, f"{invoice.number}: {exc.detail}", messages.ERROR)
        if changed:
            self.message_user(request, f"{changed} invoice(s) {done}.", messages.SUCCESS)


@admin.register(InvoiceLine)
class InvoiceLineAdmin(ReadOnlyAdmin):
    list_display = ["invoice", "position", "kind", "description", "amount"]
    list_filter = ["kind"]
    search_fields = ["invoice__number", "invoice__organization__name", "description"]
    list_select_related = ["invoice"]


@admin.register(InvoiceCounter)
class InvoiceCounterAdmin(ReadOnlyAdmin):
    """The last number issued per year; written only inside the issuing transaction."""

    list_display = ["year", "last_number"]


@admin.register(ClosedPeriod)
class ClosedPeriodAdmin(ReadOnlyAdmin):
    list_display = ["organization", "start", "end", "plan", "invoice", "closed_at"]
    search_fields = ["organization__name", "organization__slug", "invoice__number"]
    list_select_related = ["organization", "plan", "invoice"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    """Webhook events as received, with what processing did; each event id is applied once."""

    list_display = ["received_at", "type", "event_id", "outcome", "processed_at", "livemode"]
    list_filter = ["type", "livemode"]
    search_fields = ["event_id", "type", "outcome"]
    date_hierarchy = "received_at"


# --- operator actions on organizations: credits, ledger adjustments, suspension -----------------
# The Organization admin (organizations/admin.py) extended with billing columns and actions, the
# way Django extends another app's admin: unregistered and registered again as a subclass.


class GrantCreditsForm(forms.Form):
    tokens = forms.IntegerField(
        min_value=1,
        error_messages={"min_value": "Grant a positive whole number of tokens (at least 1)."},
        help_text="Tokens on top of the plan, for each selected organization.",
    )
    reason = forms.CharField(max_length=500, help_text="Kept in the ledger and the audit log.")


class AdjustLedgerForm(forms.Form):
    tokens = forms.IntegerField(initial=0, help_text="Signed: -1000 takes 1,000 tokens off this period's usage.")
    amount = forms.DecimalField(
        max_digits=12, decimal_places=6, initial=Decimal("0"), help_text="Signed money owed; negative is a credit note."
    )
    reason = forms.CharField(max_length=500, help_text="Required: kept in the ledger and the audit log.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("tokens") == 0 and data.get("amount") == 0:
            raise forms.ValidationError("An adjustment changes the tokens, the amount or both.")
        return data


class SuspendForm(forms.Form):
    reason = forms.CharField(max_length=500, help_text="Kept in the audit log.")


class UnsuspendForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False, help_text="Optional, kept in the audit log.")


def _subscription_of(organization: Organization) -> Subscription | None:
    try:
        return organization.subscription  # type: ignore[no-any-return]
    except Subscription.DoesNotExist:
        return None


admin.site.unregister(Organization)


@admin.register(Organization)
class BillingOrganizationAdmin(OrganizationAdmin):
    """Organizations, with their plan and status, and the billing actions operators take on them.

    Each action asks for its details on an intermediate page, then calls one
    ``billing.services`` function per organization (staff only, audited there).
    """

    list_display = [*OrganizationAdmin.list_display, "plan", "billing_status"]
    list_select_related = ["subscription__plan"]
    actions = ["grant_credits", "adjust_ledger", "suspend", "unsuspend"]
    # The change page answers "what is this organization on, and what has it used?" without a second page.
    billing_fields = ["plan", "billing_status", "subscription_link", "usage_this_period"]
    readonly_fields = [*OrganizationAdmin.readonly_fields, *billing_fields]
    billing_fieldset = ("Billing", {"classes": ["billing-summary"], "fields": billing_fields})

    def get_fieldsets(self, request: HttpRequest, obj: Organization | None = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            return fieldsets
        others = [
            (name, {**options, "fields": [f for f in options["fields"] if f not in self.billing_fields]})
            for name, options in fieldsets
        ]
        return [*others, self.billing_fieldset]

    @admin.display(description="subscription")
    def subscription_link(self, obj: Organization) -> str:
        subscription = _subscription_of(obj)
        if subscription is None:
            return "None: the default plan, without a billing period of its own"
        url = reverse("admin:billing_subscription_change", args=[subscription.pk])
        ends = date_format(subscription.current_period_end, "j M Y")
        pending = f", then {subscription.pending_plan.name}" if subscription.pending_plan_id else ""
        return format_html('<a href="{}">{}, period ends {}{}</a>', url, subscription.plan.name, ends, pending)

    @admin.display(description="usage this period")
    def usage_this_period(self, obj: Organization) -> str:
        now = usage.allowance(obj)
        period = usage.parse_range(obj, start=None, end=None)
        granted = f" (with {now.credit_tokens:,} credits)" if now.credit_tokens else ""
        return (
            f"{now.used_tokens:,} of {now.included_tokens + now.credit_tokens:,} tokens used{granted}, "
            f"{now.reserved_tokens:,} held by running jobs, {formatting.money(now.overage_amount)} billed; "
            f"{formatting.period(period.first_day, period.last_day)}"
        )

    @admin.display(description="plan")
    def plan(self, obj: Organization) -> str:
        subscription = _subscription_of(obj)
        if subscription is None or subscription.status == SubscriptionStatus.CANCELED:
            return f"{settings.BILLING_DEFAULT_PLAN} (default)"
        return subscription.plan.name

    @admin.display(description="billing status")
    def billing_status(self, obj: Organization) -> str:
        subscription = _subscription_of(obj)
        return subscription.get_status_display() if subscription is not None else "No subscription"

    @admin.action(description="Grant credits to selected organizations", permissions=["change"])
    def grant_credits(self, request: HttpRequest, queryset: QuerySet[Organization]) -> HttpResponse | None:
        return self._with_form(
            request, queryset, GrantCreditsForm, "grant_credits", "Grant credits",
            lambda org, data: billing_services.grant_credits(
                actor=request.user, organization=org, tokens=data["tokens"], reason=data["reason"]  # type: ignore[arg-type]
            ),
            done="{n} organization(s) granted {tokens:,} tokens.",
        )

    @admin.action(description="Adjust the ledger of selected organizations", permissions=["change"])
    def adjust_ledger(self, request: HttpRequest, queryset: QuerySet[Organization]) -> HttpResponse | None:
        return self._with_form(
            request, queryset, AdjustLedgerForm, "adjust_ledger", "Adjust the ledger",
            lambda org, data: billing_services.adjust_ledger(
                actor=request.user, organization=org, tokens=data["tokens"],  # type: ignore[arg-type]
                amount=data["amount"], reason=data["reason"],
            ),
            done="{n} organization(s) adjusted by {tokens:+,} tokens and {amount} owed.",
        )

    @admin.action(description="Suspend selected organizations (no new jobs)", permissions=["change"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Organization]) -> HttpResponse | None:
        return self._with_form(
            request, queryset, SuspendForm, "suspend", "Suspend organizations",
            lambda org, data: billing_services.suspend_organization(
                actor=request.user, organization=org, reason=data["reason"]  # type: ignore[arg-type]
            ),
            done="{n} organization(s) suspended: their new jobs are refused.",
        )

    @admin.action(description="Unsuspend selected organizations", permissions=["change"])
    def unsuspend(self, request: HttpRequest, queryset: QuerySet[Organization]) -> HttpResponse | None:
        return self._with_form(
            request, queryset, UnsuspendForm, "unsuspend", "Unsuspend organizations",
            lambda org, data: billing_services.unsuspend_organization(
                actor=request.user, organization=org, reason=data["reason"]  # type: ignore[arg-type]
            ),
            done="{n} organization(s) unsuspended.",
        )

    def _with_form(
        self,
        request: HttpRequest,
        queryset: QuerySet[Organization],
        form_class: type[forms.Form],
        action: str,
        title: str,
        change: Callable[[Organization, dict[str, Any]], Any],
        *,
        done: str,
    ) -> HttpResponse | None:
        """The admin action pattern: the form first (again, with its errors, until valid), then the change.

        Returning None sends the operator back to the list, where the messages say what happened.
        """
        form = form_class(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            changed, refused = 0, []
            for organization in queryset:
                try:
                    change(organization, form.cleaned_data)
                    changed += 1
                except DomainError as exc:
                    refused.append(f"{organization.name}: {exc.detail}")
            if not changed:
                for message in refused:
                    form.add_error(None, message)
            else:
                self.message_user(request, done.format(n=changed, **form.cleaned_data), messages.SUCCESS)
                for message in refused:
                    self.message_user(request, message, messages.ERROR)
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "organizations": queryset,
            "form": form,
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        status = 400 if form.is_bound else 200
        return TemplateResponse(request, "admin/billing/organization_action.html", context, status=status)
