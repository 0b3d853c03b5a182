"""Changing an organization's plan and suspending it (dashboard, API and admin).

Customers schedule a change for the end of the period (``change_plan``: ``pending_plan``, applied
when ``billing.invoicing`` closes the period); operators assign a plan at once (``assign_plan``)
and suspend or unsuspend an organization. Each change locks the subscription, then the account
row (the order closing a period takes them in), and is audited.

A subscription a payment provider manages (``stripe_subscription_id``) must hear of a scheduled
change: the provider's adapter registers with ``on_plan_change_scheduled`` at start-up
(``billing.payments``, from ``billing.apps``), so this module does not import it. Imports
``billing.plans``, ``billing.admission`` and ``billing.ledger``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils.translation import gettext

from audit.services import record
from billing.admission import lock_account
from billing.ledger import require_staff
from billing.models import Plan, Subscription, SubscriptionStatus
from billing.plans import current_period, current_plan
from core.errors import Conflict, InvalidInput
from organizations.models import Role
from organizations.services import require_role

if TYPE_CHECKING:
    from accounts.models import User
    from organizations.models import Organization

#: Called with a subscription's id after the commit that scheduled its plan change, when a payment
#: provider manages it. Each must not raise: the change is committed either way.
_plan_change_listeners: list[Callable[[Any], None]] = []


def on_plan_change_scheduled(listener: Callable[[Any], None]) -> None:
    """Have ``listener(subscription_id)`` called after a provider-managed subscription's change commits."""
    if listener not in _plan_change_listeners:
        _plan_change_listeners.append(listener)


@transaction.atomic
def change_plan(*, actor: User, organization: Organization, plan_code: str) -> Subscription:
    """Schedule a move to another plan at the end of the current period; admins and owners only.

    The change only sets ``pending_plan`` (see ``Subscription``); choosing the plan the
    organization is on cancels a scheduled change. Refused with 400: an unknown or
    inactive plan (``unknown_plan``), the current plan with nothing scheduled
    (``same_plan``), and a plan the organization already uses more of than it
    includes (``usage_exceeds_plan``: this period's tokens, or its members), which
    would start the next period over its limits.
    """
    require_role(actor, organization, Role.ADMIN)
    plan = _active_plan(plan_code)
    subscription = _lock_subscription(organization)
    if plan.pk == subscription.plan_id:
        if subscription.pending_plan_id is None:
            raise InvalidInput(
                gettext("This organization is already on the %(plan)s plan.") % {"plan": plan.name}, code="same_plan"
            )
        return _clear_pending_plan(actor, subscription)
    _refuse_plan_below_usage(organization, plan)
    subscription.pending_plan = plan
    subscription.save(update_fields=["pending_plan", "updated_at"])
    if subscription.stripe_subscription_id:
        # After commit: a slow or failing Stripe call must neither hold the lock nor undo the change here.
        for listener in _plan_change_listeners:
            transaction.on_commit(partial(listener, subscription.pk))
    record(
        "billing.plan_change_scheduled",
        organization=organization,
        actor=actor,
        target=subscription,
        from_plan=subscription.plan.code,
        to_plan=plan.code,
        effective_at=subscription.current_period_end.isoformat(),
    )
    return subscription


@transaction.atomic
def assign_plan(*, organization: Organization, plan_code: str, actor: Any = None, reason: str) -> Subscription:
    """Put an organization on a plan now, for operators and provisioning (a contract, the demo, a benchmark).

    Unlike ``change_plan`` (customers: at period end), this takes effect at once and
    keeps the current period; it is audited with its reason. ``actor`` is a staff
    user, or None for the system (management commands).
    """
    if actor is not None:
        require_staff(actor)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the plan is assigned.", code="reason_required")
    plan = _active_plan(plan_code)
    subscription = _lock_subscription(organization)
    previous = subscription.plan.code
    subscription.plan, subscription.pending_plan = plan, None
    subscription.save(update_fields=["plan", "pending_plan", "updated_at"])
    record(
        "billing.plan_assigned",
        organization=organization,
        actor=actor,
        target=subscription,
        from_plan=previous,
        to_plan=plan.code,
        reason=reason,
    )
    return subscription


@transaction.atomic
def cancel_plan_change(*, actor: User, organization: Organization) -> Subscription:
    """Drop a scheduled plan change; admins and owners only. Nothing scheduled is a 409."""
    require_role(actor, organization, Role.ADMIN)
    subscription = Subscription.objects.select_for_update().filter(organization=organization).first()
    if subscription is None or subscription.pending_plan_id is None:
        raise Conflict(gettext("No plan change is scheduled."), code="no_pending_change")
    return _clear_pending_plan(actor, subscription)


@transaction.atomic
def suspend_organization(*, actor: User, organization: Organization, reason: str) -> Subscription:
    """Stop an organization's new jobs until it is unsuspended (staff only, a reason required, audited).

    Admission refuses a suspended organization's jobs (402 ``subscription_suspended``);
    running jobs finish and are billed. An organization without a subscription gets
    one on its current plan, so the suspension has a row to live on.
    """
    require_staff(actor)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the organization is suspended.", code="reason_required")
    subscription = _lock_subscription(organization)
    if subscription.status == SubscriptionStatus.SUSPENDED:
        raise Conflict(f"{organization.name} is already suspended.", code="already_suspended")
    previous = subscription.status
    subscription.status = SubscriptionStatus.SUSPENDED
    subscription.save(update_fields=["status", "updated_at"])
    record(
        "billing.organization_suspended",
        organization=organization,
        actor=actor,
        target=subscription,
        previous_status=previous,
        reason=reason,
    )
    return subscription


@transaction.atomic
def unsuspend_organization(*, actor: User, organization: Organization, reason: str = "") -> Subscription:
    """Let a suspended organization run jobs again (staff only, audited)."""
    require_staff(actor)
    subscription = Subscription.objects.select_for_update().filter(organization=organization).first()
    if subscription is None or subscription.status != SubscriptionStatus.SUSPENDED:
        raise Conflict(f"{organization.name} is not suspended.", code="not_suspended")
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.save(update_fields=["status", "updated_at"])
    record(
        "billing.organization_unsuspended",
        organization=organization,
        actor=actor,
        target=subscription,
        reason=(reason or "").strip(),
    )
    return subscription


def _active_plan(plan_code: Any) -> Plan:
    code = plan_code.strip() if isinstance(plan_code, str) else ""
    plan = Plan.objects.filter(code=code, is_active=True).first() if code else None
    if plan is None:
        choices = ", ".join(Plan.objects.filter(is_active=True).values_list("code", flat=True))
        raise InvalidInput(
            f"There is no plan {code!r} to choose; the plans are: {choices}.",
            code="unknown_plan",
            fields={"plan": [f"Choose one of: {choices}."]},
        )
    return plan


def _lock_subscription(organization: Organization) -> Subscription:
    """The organization's subscription, locked; created on its current plan and period when it has none.

    A canceled subscription is restarted the same way: the organization runs on the
    default plan and calendar month meanwhile (``current_plan``, ``current_period``).
    """
    subscription = Subscription.objects.select_for_update().filter(organization=organization).first()
    if subscription is None or subscription.status == SubscriptionStatus.CANCELED:
        # No subscription, or a canceled one: the organization runs on the default plan and month.
        plan = current_plan(organization, subscription=None)
        start, end = current_period(organization, subscription=None)
    if subscription is None:
        Subscription.objects.get_or_create(
            organization=organization,
            defaults={"plan": plan, "current_period_start": start, "current_period_end": end},
        )
        subscription = Subscription.objects.select_for_update().get(organization=organization)
    elif subscription.status == SubscriptionStatus.CANCELED:
        subscription.plan, subscription.pending_plan = plan, None
        subscription.status = SubscriptionStatus.ACTIVE
        subscription.current_period_start, subscription.current_period_end = start, end
        subscription.save(
            update_fields=["plan", "pending_plan", "status", "current_period_start", "current_period_end", "updated_at"]
        )
    # The caller changes this very row: make it the one the organization it holds answers with.
    # Otherwise a copy cached earlier (get_or_create caches the new row; an API key's lookup joins
    # it) keeps the old plan, and loaded_subscription would judge the next job by that plan.
    organization.subscription = subscription
    return subscription


def _refuse_plan_below_usage(organization: Organization, plan: Plan) -> None:
    used = lock_account(organization).tokens_used_in_period
    if used > plan.included_tokens:
        raise InvalidInput(
            f"This organization has used {used:,} tokens this period, more than the {plan.name} plan's "
            f"{plan.included_tokens:,} included tokens; choose a larger plan.",
            code="usage_exceeds_plan",
            fields={"plan": [f"Usage this period ({used:,} tokens) is above what {plan.name} includes."]},
        )
    members = organization.memberships.count()
    if members > plan.max_members:
        raise InvalidInput(
            f"This organization has {members} members and the {plan.name} plan allows {plan.max_members}; "
            "remove members first or choose a larger plan.",
            code="usage_exceeds_plan",
            fields={"plan": [f"{plan.name} allows {plan.max_members} members; there are {members}."]},
        )


def _clear_pending_plan(actor: User, subscription: Subscription) -> Subscription:
    dropped = subscription.pending_plan
    subscription.pending_plan = None
    subscription.save(update_fields=["pending_plan", "updated_at"])
    record(
        "billing.plan_change_canceled",
        organization=subscription.organization,
        actor=actor,
        target=subscription,
        plan=dropped.code if dropped is not None else None,
    )
    return subscription
