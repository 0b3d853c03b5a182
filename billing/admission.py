"""Admission: whether an organization's plan lets work start now, judged on its balances row.

``BillingAccount`` keeps an organization's running balances (tokens used this period, held,
credited, and the running jobs' concurrency slots). This module owns that row: locking it and
rolling the period over (``lock_account``), adding to it in one statement (``add_to_account``),
and the refusals admission raises against it: a suspended subscription, the variants per job,
a hard cap's quota, and the concurrent jobs. ``check_allowance`` admits work that holds
nothing; ``billing.ledger.reserve`` admits a job and holds its tokens. Imports ``billing.plans``.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from billing.errors import (
    ConcurrencyLimitExceeded,
    ExperimentLimitExceeded,
    QuotaExceeded,
    SubscriptionSuspended,
    VariantLimitExceeded,
)
from billing.models import BillingAccount, Plan, Subscription, SubscriptionStatus
from billing.plans import current_period, current_plan, subscription_of

if TYPE_CHECKING:
    from organizations.models import Organization


def remaining_tokens(account: BillingAccount, plan: Plan) -> int:
    """Tokens the organization may still start jobs with this period (negative once overshot)."""
    return plan.included_tokens + account.credit_tokens - account.tokens_used_in_period - account.tokens_reserved


def ensure_billing_account(organization: Organization) -> BillingAccount:
    """The organization's balances row, created on first use (safe under concurrent first use)."""
    start, _ = current_period(organization)
    account, _ = BillingAccount.objects.get_or_create(organization=organization, defaults={"period_start": start})
    return account


def lock_account(organization: Organization) -> BillingAccount:
    """Lock the organization's balances for this transaction, rolling the period over if it ended.

    At rollover the usage counter starts again at zero and the credits spent in
    the finished period (usage beyond the included tokens) are used up. The
    subscription read here is kept as ``account.read_subscription``, so callers
    holding the lock do not read it again.
    """
    subscription = subscription_of(organization)
    start, _ = current_period(organization, subscription=subscription)
    # of=("self",) and no ordering: the default ordering would join the organization and lock its row too.
    locked = BillingAccount.objects.select_for_update(of=("self",)).order_by()
    account = locked.filter(organization=organization).first()
    if account is None:
        BillingAccount.objects.get_or_create(organization=organization, defaults={"period_start": start})
        account = locked.get(organization=organization)
    account.read_subscription = subscription
    if account.period_start < start:
        plan = current_plan(organization, subscription=subscription)
        spent_credits = max(account.tokens_used_in_period - plan.included_tokens, 0)
        account.credit_tokens -= min(spent_credits, account.credit_tokens)
        account.tokens_used_in_period = 0
        account.period_start = start
        account.save(update_fields=["credit_tokens", "tokens_used_in_period", "period_start", "updated_at"])
    return account


@transaction.atomic
def check_allowance(*, organization: Organization, tokens: int, what: str) -> None:
    """Refuse work that holds nothing if the plan cannot pay for it (suspended, or no allowance left on a hard cap).

    ``tokens`` is the most the work can use; ``what`` names it in the refusal.
    """
    account = lock_account(organization)
    refuse_if_suspended(account.read_subscription)
    plan = current_plan(organization, subscription=account.read_subscription)
    refuse_beyond_allowance(account, organization, plan, tokens, what=what)


def refuse_if_suspended(subscription: Subscription | None) -> None:
    """Refuse new work of a suspended organization (402)."""
    if subscription is not None and subscription.status == SubscriptionStatus.SUSPENDED:
        raise SubscriptionSuspended(
            gettext("This organization's subscription is suspended; settle the billing to continue.")
        )


def refuse_beyond_allowance(
    account: BillingAccount, organization: Organization, plan: Plan, needed: int, *, what: str
) -> None:
    """On a hard-capped plan, refuse work that could use more tokens than are left this period."""
    left = remaining_tokens(account, plan)
    if plan.overage_allowed or left >= needed:
        return
    _, period_end = current_period(organization, subscription=account.read_subscription)
    raise QuotaExceeded(
        gettext(
            "The %(plan)s plan's %(included)s tokens for this period are used up: %(what)s needs "
            "up to %(needed)s tokens and %(left)s are left. The allowance resets on "
            "%(resets)s UTC; upgrade the plan to continue now."
        ) % {
            "plan": plan.name, "included": f"{plan.included_tokens:,}", "what": what, "needed": f"{needed:,}",
            "left": f"{max(left, 0):,}", "resets": f"{period_end.astimezone(UTC):%Y-%m-%d %H:%M}",
        }
    )


def refuse_beyond_variants(plan: Plan, variants: int) -> None:
    """Refuse a job asking for more variants than the plan allows per job (400)."""
    if variants > plan.max_variants_per_job:
        raise VariantLimitExceeded(
            gettext("The %(plan)s plan allows up to %(limit)s variants per job; this job asks for %(variants)s.")
            % {"plan": plan.name, "limit": plan.max_variants_per_job, "variants": variants},
            fields={"num_variants": [
                gettext("At most %(limit)s on the %(plan)s plan.")
                % {"limit": plan.max_variants_per_job, "plan": plan.name}
            ]},
        )


def refuse_beyond_concurrency(before: BillingAccount, plan: Plan) -> None:
    """Refuse a job that needs a slot when the plan's concurrent jobs were all running (429)."""
    if before.active_jobs >= plan.max_concurrent_jobs:
        raise ConcurrencyLimitExceeded(
            gettext(
                "The %(plan)s plan runs up to %(limit)s jobs at a time and %(running)s are running; "
                "retry when one finishes."
            ) % {"plan": plan.name, "limit": plan.max_concurrent_jobs, "running": before.active_jobs}
        )


def refuse_beyond_running_experiments(plan: Plan, running: int) -> None:
    """Refuse starting one more experiment when the plan's running experiments are all running (402).

    ``running`` is counted by the caller (billing knows plans, not experiments), under
    ``lock_account`` so two starts at once cannot both take the last place.
    """
    limit = plan.max_running_experiments
    if limit is not None and running >= limit:
        raise ExperimentLimitExceeded(
            gettext(
                "The %(plan)s plan runs up to %(limit)s experiments at a time and %(running)s are running; "
                "stop or conclude one, or upgrade the plan."
            ) % {"plan": plan.name, "limit": limit, "running": running}
        )


def add_to_account(
    organization: Organization,
    subscription: Subscription | None,
    *,
    reserved: int = 0,
    used: int = 0,
    jobs: int = 0,
) -> BillingAccount:
    """Add to the organization's counters in one ``UPDATE … RETURNING``; the row as it is now, locked.

    The account row is the one row every admission and settlement of an
    organization writes, so its lock is what concurrent submissions queue on.
    Taken by the write itself, near the end of the transaction (the job's
    ledger lines are written before it, or in one insert after it), the lock
    is held for one or two statements instead of the whole admission:
    measured with ``bench.load``, 9 to 22 requests were waiting on it at any
    moment when it was taken first with ``SELECT … FOR UPDATE``. Holds and
    slots never go below zero. A missing row or a period to roll
    over takes the slower path through ``lock_account``.
    """
    start, _ = current_period(organization, subscription=subscription)
    table = BillingAccount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET tokens_reserved = GREATEST(tokens_reserved + %s, 0), "  # noqa: S608 (our table)
            "tokens_used_in_period = tokens_used_in_period + %s, active_jobs = GREATEST(active_jobs + %s, 0), "
            "updated_at = %s WHERE organization_id = %s AND period_start >= %s "
            "RETURNING id, period_start, tokens_used_in_period, tokens_reserved, credit_tokens, active_jobs",
            [reserved, used, jobs, timezone.now(), organization.pk, start],
        )
        row = cursor.fetchone()
    if row is None:
        account = lock_account(organization)
        account.tokens_reserved = max(account.tokens_reserved + reserved, 0)
        account.tokens_used_in_period += used
        account.active_jobs = max(account.active_jobs + jobs, 0)
        account.save(update_fields=["tokens_reserved", "tokens_used_in_period", "active_jobs", "updated_at"])
        return account
    account = BillingAccount(
        id=row[0], organization=organization, period_start=row[1], tokens_used_in_period=row[2],
        tokens_reserved=row[3], credit_tokens=row[4], active_jobs=row[5],
    )
    account.read_subscription = subscription
    return account


def balances_before(account: BillingAccount, *, reserved: int = 0, used: int = 0, jobs: int = 0) -> BillingAccount:
    """The balances as they were before ``add_to_account`` added these amounts (unsaved copy)."""
    before = BillingAccount(
        id=account.id, organization=account.organization, period_start=account.period_start,
        tokens_used_in_period=account.tokens_used_in_period - used,
        tokens_reserved=account.tokens_reserved - reserved,
        credit_tokens=account.credit_tokens, active_jobs=account.active_jobs - jobs,
    )
    before.read_subscription = account.read_subscription
    return before
