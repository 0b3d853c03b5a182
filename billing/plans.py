"""Which plan, billing period and subscription govern an organization now: reads only.

An organization on no subscription, or on a canceled one, runs on the default plan
(``BILLING_DEFAULT_PLAN``) and calendar months in UTC. Changing the plan or suspending the
organization is ``billing.subscriptions``; the balances judged against the plan are
``billing.admission``. Imports only billing's models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from billing.models import Plan, Subscription, SubscriptionStatus

if TYPE_CHECKING:
    from organizations.models import Organization

#: "Read the subscription from the database" (None is a real value: no subscription).
_READ: Any = object()


def current_plan(organization: Organization, *, subscription: Subscription | None = _READ) -> Plan:
    """The plan that governs the organization now: its subscription's, else the default (Free).

    A canceled subscription falls back to Free; a past-due one keeps its plan
    (a grace period), and a suspended one is refused at admission. Pass the
    ``subscription`` already read in this transaction to save the query.
    """
    if subscription is _READ:
        subscription = subscription_of(organization)
    if subscription is not None and subscription.status != SubscriptionStatus.CANCELED:
        return subscription.plan
    try:
        return Plan.objects.get(code=settings.BILLING_DEFAULT_PLAN)
    except Plan.DoesNotExist:
        raise ImproperlyConfigured(
            f"BILLING_DEFAULT_PLAN is {settings.BILLING_DEFAULT_PLAN!r}, and no plan has that code."
        ) from None


def current_period(
    organization: Organization, *, now: datetime | None = None, subscription: Subscription | None = _READ
) -> tuple[datetime, datetime]:
    """The billing period ``[start, end)``: the subscription's, else the calendar month in UTC."""
    if subscription is _READ:
        subscription = subscription_of(organization)
    if subscription is not None and subscription.status != SubscriptionStatus.CANCELED:
        return subscription.current_period_start, subscription.current_period_end
    now = (now or timezone.now()).astimezone(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def subscription_of(organization: Organization) -> Subscription | None:
    """The organization's subscription with its plan, read now without a lock; None when it has none."""
    # order_by(): the admin's default ordering (by organization name) would join and sort for one row.
    return Subscription.objects.select_related("plan").filter(organization=organization).order_by().first()


def loaded_subscription(organization: Organization) -> Subscription | None:
    """The subscription loaded with the organization, else read now (with its plan).

    An API call's key lookup joins it (``select_related("organization__subscription__plan")``),
    so the rate limiter and admission read it once per call. Either way it is read without a
    lock, a moment before admission locks the account row.
    """
    if not type(organization).subscription.is_cached(organization):  # type: ignore[attr-defined]
        return subscription_of(organization)
    try:
        return organization.subscription
    except Subscription.DoesNotExist:  # joined, and there is none
        return None
