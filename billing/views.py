"""The billing dashboard: plan, allowance and usage of the current organization; plan changes by admins.

Every member reads it (usage is what their work costs); admins and the owner change
the plan, which takes effect at the end of the period. Everything shown is read
through the current organization, so another organization's billing is never in
reach.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from billing import charts, formatting, payments, services, usage
from billing.models import LedgerEntry, Plan, Subscription
from core.errors import DomainError
from core.web import action_done, action_failed, add_domain_error, form_status, is_htmx
from organizations.models import Role
from organizations.tenancy import current_organization, current_tenant, scoped, tenant_required

#: How the usage chart can be broken down (``?by=``), with the button labels.
BREAKDOWNS = {"project": _("By project"), "api_key": _("By API key")}


class PlanChangeForm(forms.Form):
    # A CharField, not a ChoiceField: the service names the plans one can choose when the
    # posted code is not one of them, which says more than "Select a valid choice".
    plan = forms.CharField(max_length=40, label=_("New plan"))

    def __init__(self, *args: Any, plans: QuerySet[Plan], current: Plan, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(plan.code, _plan_choice_label(plan, current)) for plan in plans]
        self.fields["plan"].widget = forms.Select(choices=choices)
        self.fields["plan"].initial = current.code


def _plan_choice_label(plan: Plan, current: Plan) -> str:
    values = {
        "name": plan.name,
        "price": formatting.money(plan.monthly_price),
        "tokens": charts.compact(plan.included_tokens),
    }
    if plan.pk == current.pk:
        return gettext("%(name)s: %(price)s/month, %(tokens)s tokens (current)") % values
    return gettext("%(name)s: %(price)s/month, %(tokens)s tokens") % values


def _entries(request: HttpRequest) -> QuerySet[LedgerEntry]:
    return scoped(request, LedgerEntry)


def _breakdown(request: HttpRequest) -> str:
    by = request.GET.get("by", "project")
    return by if by in BREAKDOWNS else "project"


def _usage_context(request: HttpRequest, by: str) -> dict[str, Any]:
    organization = current_organization(request)
    period = usage.parse_range(organization, start=None, end=None)
    entries = _entries(request)
    series = usage.daily_breakdown(organization, entries, period, by)
    return {
        "by": by,
        "breakdowns": BREAKDOWNS,
        "chart": charts.stacked_bars(period.days(), series),
        "rows": usage.grouped(organization, entries, period, by),
        "totals": usage.totals(entries, period),
        "period": period,
        "period_label": formatting.period(period.first_day, period.last_day),
    }


def _page(request: HttpRequest, form: PlanChangeForm | None = None, *, status: int = 200) -> HttpResponse:
    organization = current_organization(request)
    allowance = usage.allowance(organization)
    plans = Plan.objects.filter(is_active=True)
    subscription = Subscription.objects.filter(organization=organization).first()
    context = {
        "allowance": allowance,
        "plan": allowance.plan,
        "plans": plans,
        "form": form or PlanChangeForm(plans=plans, current=allowance.plan),
        "can_change_plan": current_tenant(request).has_role(Role.ADMIN),
        # Card payments (billing/stripe_views.py) only where Stripe is configured; else invoices are paid manually.
        "stripe_enabled": payments.enabled(),
        "stripe_plans": plans.exclude(stripe_price_id=""),
        "stripe_customer": bool(subscription and subscription.stripe_customer_id),
        **_usage_context(request, _breakdown(request)),
    }
    return render(request, "billing/overview.html", context, status=status)


@tenant_required(Role.VIEWER)
def overview(request: HttpRequest) -> HttpResponse:
    """GET: the page; with htmx and ``?by=``, only the usage section (the breakdown buttons swap it)."""
    if is_htmx(request) and "by" in request.GET:
        return render(request, "billing/_usage.html", _usage_context(request, _breakdown(request)))
    return _page(request)


@require_POST
@tenant_required(Role.ADMIN)
def change_plan(request: HttpRequest) -> HttpResponse:
    organization = current_organization(request)
    current = services.current_plan(organization)
    form = PlanChangeForm(request.POST, plans=Plan.objects.filter(is_active=True), current=current)
    if form.is_valid():
        try:
            subscription = services.change_plan(
                actor=request.user,  # type: ignore[arg-type]
                organization=organization,
                plan_code=form.cleaned_data["plan"],
            )
        except DomainError as exc:
            add_domain_error(form, exc, {"unknown_plan": "plan", "usage_exceeds_plan": "plan", "same_plan": "plan"})
        else:
            if subscription.pending_plan is None:
                messages.success(
                    request,
                    _("The scheduled change is canceled: you stay on %(plan)s.") % {"plan": subscription.plan.name},
                )
            else:
                when = date_format(subscription.current_period_end, "DATE_FORMAT")
                messages.success(
                    request,
                    _("You move to %(plan)s on %(date)s.") % {"plan": subscription.pending_plan.name, "date": when},
                )
            return redirect("billing:overview")
    return _page(request, form, status=form_status(form))


@require_POST
@tenant_required(Role.ADMIN)
def cancel_plan_change(request: HttpRequest) -> HttpResponse:
    try:
        subscription = services.cancel_plan_change(actor=request.user, organization=current_organization(request))  # type: ignore[arg-type]
    except DomainError as exc:
        return action_failed(request, exc, _page)
    return action_done(
        request,
        f"The scheduled change is canceled: you stay on {subscription.plan.name}.",
        redirect_to=reverse("billing:overview"),
    )
