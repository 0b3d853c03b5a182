"""Billing's services in one import, for the apps and views that use billing.

Each function lives in the module that owns its concern; this module only re-exports them, so a
caller writes ``from billing import services`` whichever it needs:

* ``billing.plans``: which plan, period and subscription govern an organization (reads);
* ``billing.admission``: the balances row and whether work may start (quota, concurrency, suspension);
* ``billing.ledger``: holding, charging and releasing work exactly once, credits and adjustments;
* ``billing.subscriptions``: plan changes and suspension.

Invoices are ``billing.invoicing``; Stripe is ``billing.payments``.
"""

from __future__ import annotations

from billing.admission import check_allowance, ensure_billing_account, lock_account, remaining_tokens
from billing.ledger import (
    AMOUNT_QUANTUM,
    COMPUTE_SECONDS_QUANTUM,
    JobRef,
    TokenUsage,
    adjust_ledger,
    charge_compute,
    charge_tokens,
    grant_credits,
    release,
    reserve,
    settle,
)
from billing.plans import current_period, current_plan, loaded_subscription
from billing.subscriptions import (
    assign_plan,
    cancel_plan_change,
    change_plan,
    suspend_organization,
    unsuspend_organization,
)

__all__ = [
    "AMOUNT_QUANTUM",
    "COMPUTE_SECONDS_QUANTUM",
    "JobRef",
    "TokenUsage",
    "adjust_ledger",
    "assign_plan",
    "cancel_plan_change",
    "change_plan",
    "charge_compute",
    "charge_tokens",
    "check_allowance",
    "current_period",
    "current_plan",
    "ensure_billing_account",
    "grant_credits",
    "loaded_subscription",
    "lock_account",
    "release",
    "remaining_tokens",
    "reserve",
    "settle",
    "suspend_organization",
    "unsuspend_organization",
]
