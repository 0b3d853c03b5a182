"""Closing billing periods: one invoice per organization and period, numbered without gaps.

Invoices are issued in arrears, when a period has ended: the subscription fee
for that period plus what the ledger metered in it (token overage, compute,
refunds, adjustments and credit notes).

Which periods are closed:

* an organization with a subscription (active, past due or suspended) closes
  its subscription's period once ``current_period_end`` has passed; the same
  transaction rolls the subscription over by one calendar month and applies
  its ``pending_plan`` (plan changes take effect at period end, never prorated);
* an organization without one (or with a canceled one) runs on the default
  plan and closes calendar months (UTC), as ``billing.plans.current_period``
  counts them.

An organization's closed periods are contiguous (``ClosedPeriod``), so a ledger
line is billed in exactly one period even when a subscription starts, ends or
resumes mid-month. A period is closed even when it owes nothing, but an invoice
is issued only when a line has a non-zero amount: a Free organization, or one
without a subscription whose usage stayed within the default plan, gets none.
The subscription fee is billed only for an active or past-due subscription
that Stripe does not bill itself (``stripe_subscription_id`` empty): a
suspended organization could not use the service, and Stripe invoices its own
subscriptions.

Concurrency: closing locks the organization's subscription, then its
``BillingAccount`` row (the order ``billing.subscriptions.change_plan`` takes them in). The
account is the row admission and settlement lock, so a charge written before
the period ended is committed before the period's lines are read; and two
workers closing the same organization queue up, the second finding the period
closed. Invoice
numbers come from ``InvoiceCounter``, locked ``FOR UPDATE`` in the issuing
transaction: a rolled-back issue never burns a number.

Imports ``billing.plans`` and ``billing.admission``. A payment provider collects an issued
invoice by registering with ``on_invoice_issued`` (``billing.payments`` does, from ``billing.apps``).
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from audit.services import record
from billing.admission import lock_account
from billing.models import (
    ClosedPeriod,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    InvoiceLineKind,
    InvoiceStatus,
    LedgerEntry,
    LedgerKind,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from billing.plans import current_plan
from core.errors import Conflict, Forbidden, InvalidInput
from organizations.models import Organization

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

CENTS = Decimal("0.01")
#: Days between issue and due date on a manually paid invoice.
PAYMENT_TERMS_DAYS = 14
#: At most this many periods closed per organization in one run; a platform that was down for
#: longer catches up on the next runs (every 15 minutes) instead of holding one task for hours.
MAX_PERIODS_PER_RUN = 24

#: Subscriptions whose period is closed and rolled over; a canceled one falls back to calendar months.
_ROLLING_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE, SubscriptionStatus.SUSPENDED)
#: Subscriptions that owe their plan's fee for the period.
_FEE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


# --- calendar ----------------------------------------------------------------------------------


def _last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def add_month(moment: datetime, day: int) -> datetime:
    """The same time of day in the next month, on ``day`` or that month's last day if it is shorter."""
    moment = moment.astimezone(UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=min(day, _last_day(year, month)))


def next_period_end(start: datetime, end: datetime) -> datetime:
    """Where the period after ``[start, end)`` ends: one calendar month after ``end``, without drift.

    The subscription's day of the month (its anchor) is not stored, so it is read
    off the current period: ``end``'s day, unless ``end`` fell on the last day of a
    short month, where the anchor may have been later (a period from 31 January
    ends 28 February and the next one 31 March; from 30 January, 28 February then
    30 March).
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    anchor = end.day
    if end.day == _last_day(end.year, end.month):
        anchor = max(anchor, start.day)
    return add_month(end, anchor)


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(moment: datetime) -> datetime:
    return add_month(month_start(moment), 1)


# --- what a period owes ------------------------------------------------------------------------


@dataclass(frozen=True)
class DraftLine:
    kind: str
    description: str
    quantity: Decimal
    unit: str
    exact_amount: Decimal  # the ledger's six decimal places

    @property
    def amount(self) -> Decimal:
        return to_cents(self.exact_amount)


def to_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENTS, rounding=ROUND_HALF_UP)


def _dates(start: datetime, end: datetime) -> str:
    """``1 Nov 2026 to 30 Nov 2026``: the last day is the one before ``end`` (periods are half-open)."""
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return f"{start.astimezone(UTC):%-d %b %Y} to {last:%-d %b %Y}"


def _token_usage() -> Q:
    """Charges that bill tokens: a job's, or a line with tokens (a regenerated variant's)."""
    return Q(job__isnull=False) | ~Q(tokens=0)


def draft_lines(
    organization: Organization,
    start: datetime,
    end: datetime,
    *,
    plan: Plan,
    fee_period: tuple[datetime, datetime] | None,
) -> list[DraftLine]:
    """The lines for the ledger of ``[start, end)``, plus the plan's fee for ``fee_period`` when given."""
    lines: list[DraftLine] = []
    if fee_period is not None:
        lines.append(
            DraftLine(
                InvoiceLineKind.SUBSCRIPTION,
                f"{plan.name} plan, {_dates(*fee_period)}",
                Decimal(1),
                "month",
                plan.monthly_price,
            )
        )
    entries = LedgerEntry.objects.filter(organization=organization, created_at__gte=start, created_at__lt=end)
    charges = entries.filter(kind=LedgerKind.CHARGE)
    tokens = charges.filter(_token_usage()).aggregate(
        tokens=Sum("tokens"), prompt=Sum("tokens_in"), completion=Sum("tokens_out"), amount=Sum("amount")
    )
    if tokens["tokens"] or tokens["amount"]:
        lines.append(
            DraftLine(
                InvoiceLineKind.TOKENS,
                f"Generation: {tokens['tokens'] or 0:,} tokens ({tokens['prompt'] or 0:,} prompt, "
                f"{tokens['completion'] or 0:,} completion); {plan.included_tokens:,} included in {plan.name}, "
                f"beyond that {plan.price_per_1k_tokens.normalize():f} per 1,000",
                Decimal(tokens["tokens"] or 0),
                "tokens",
                tokens["amount"] or Decimal(0),
            )
        )
    compute = charges.exclude(_token_usage()).aggregate(
        seconds=Sum("compute_seconds"), amount=Sum("amount"), count=Count("id")
    )
    if compute["seconds"] or compute["amount"]:
        lines.append(
            DraftLine(
                InvoiceLineKind.COMPUTE,
                f"GPU compute: {compute['seconds']:,} seconds in {compute['count']} runs "
                f"at {plan.price_per_gpu_second.normalize():f} per second",
                compute["seconds"] or Decimal(0),
                "seconds",
                compute["amount"] or Decimal(0),
            )
        )
    refunds = entries.filter(kind=LedgerKind.REFUND).aggregate(amount=Sum("amount"), count=Count("id"))
    if refunds["amount"]:
        count = refunds["count"]
        lines.append(DraftLine(InvoiceLineKind.REFUND, f"Refunds ({count})", Decimal(count), "", refunds["amount"]))
    for adjustment in entries.filter(kind=LedgerKind.ADJUSTMENT).exclude(amount=0).order_by("created_at", "id"):
        label = "Credit note" if adjustment.amount < 0 else "Adjustment"
        description = f"{label}: {adjustment.reason}"[:300]
        lines.append(DraftLine(InvoiceLineKind.ADJUSTMENT, description, Decimal(1), "", adjustment.amount))
    return lines


def is_billable(lines: list[DraftLine]) -> bool:
    return any(line.amount != 0 for line in lines)


# --- closing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DuePeriod:
    start: datetime
    end: datetime
    plan: Plan
    subscription: Subscription | None  # set when the period is a subscription's (then rolled over)


def _closed_through(organization: Organization) -> datetime | None:
    return ClosedPeriod.objects.filter(organization=organization).aggregate(end=Max("end"))["end"]


def _chain_start(organization: Organization, closed_through: datetime | None) -> datetime:
    """Where the organization's next period starts: where the last closed one ended, else its first month."""
    return closed_through or month_start(organization.created_at)


def due_period(
    organization: Organization, subscription: Subscription | None, *, now: datetime
) -> DuePeriod | None:
    """The organization's next period to close, if it has ended by ``now``."""
    closed_through = _closed_through(organization)
    if subscription is not None and subscription.status in _ROLLING_STATUSES:
        if subscription.current_period_end > now:
            return None
        start = closed_through or min(subscription.current_period_start, _chain_start(organization, None))
        return DuePeriod(start, subscription.current_period_end, subscription.plan, subscription)
    start = _chain_start(organization, closed_through)
    end = next_month_start(start)
    if end > now:
        return None
    return DuePeriod(start, end, current_plan(organization), None)


def close_next_period(organization: Organization, *, now: datetime | None = None) -> ClosedPeriod | None:
    """Close the organization's oldest ended period, issuing its invoice; None when none has ended.

    Safe to run twice and concurrently: the second run finds the period closed.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # The subscription, then the account: the order every billing write takes them in.
        subscription = (
            Subscription.objects.select_for_update().select_related("plan").filter(organization=organization).first()
        )
        lock_account(organization)
        due = due_period(organization, subscription, now=now)
        if due is None:
            return None
        if due.start >= due.end:
            # Only after a hand-edit moved the subscription's period behind what is already closed.
            logger.warning("Subscription of %s ends before its closed periods; rolled over unbilled.", organization.pk)
            _roll_over(organization, due.subscription)  # type: ignore[arg-type]
            return None
        fee_period = None
        if (
            due.subscription is not None
            and due.subscription.status in _FEE_STATUSES
            and not due.subscription.stripe_subscription_id
        ):
            fee_period = (due.subscription.current_period_start, due.subscription.current_period_end)
        lines = draft_lines(organization, due.start, due.end, plan=due.plan, fee_period=fee_period)
        invoice = _issue(organization, due, lines, now=now) if is_billable(lines) else None
        closed = ClosedPeriod.objects.create(
            organization=organization, start=due.start, end=due.end, plan=due.plan, invoice=invoice, closed_at=now
        )
        if due.subscription is not None:
            _roll_over(organization, due.subscription)
    if invoice is not None:
        transaction.on_commit(lambda: _after_issue(invoice))
    return closed


def close_periods(organization: Organization, *, now: datetime | None = None) -> list[ClosedPeriod]:
    """Close every ended period of one organization (several after downtime), oldest first."""
    closed = []
    for _ in range(MAX_PERIODS_PER_RUN):
        period = close_next_period(organization, now=now)
        if period is None:
            break
        closed.append(period)
    return closed


def organizations_with_due_periods(*, now: datetime | None = None) -> QuerySet[Organization]:
    """Organizations that may have a period to close: a cheap filter; ``close_next_period`` decides."""
    now = now or timezone.now()
    subscribed = Q(subscription__status__in=_ROLLING_STATUSES)
    due_subscription = subscribed & Q(subscription__current_period_end__lte=now)
    # Without a subscription: due once the month after the last closed period (or after creation) began.
    # Spelled out: ~subscribed would be NULL, not true, for an organization without a subscription row.
    unsubscribed = (Q(subscription__isnull=True) | Q(subscription__status=SubscriptionStatus.CANCELED)) & (
        Q(closed_through__isnull=True, created_at__lt=month_start(now))
        | Q(closed_through__lt=month_start(now))
    )
    last_closed = ClosedPeriod.objects.filter(organization=OuterRef("pk")).order_by("-end").values("end")[:1]
    return (
        Organization.objects.annotate(closed_through=Subquery(last_closed))
        .filter(due_subscription | unsubscribed)
        .order_by("created_at")
    )


def close_due_periods(*, now: datetime | None = None) -> list[Invoice]:
    """The beat task's work: close every ended period of every organization; the invoices issued.

    One organization's failure is logged and does not stop the others; its
    period stays open and is closed on a later run.
    """
    issued = []
    for organization in organizations_with_due_periods(now=now):
        try:
            closed = close_periods(organization, now=now)
        except Exception:
            logger.exception("Closing the billing period of organization %s failed", organization.pk)
            continue
        issued += [period.invoice for period in closed if period.invoice is not None]
    return issued


def _roll_over(organization: Organization, subscription: Subscription) -> None:
    """Move the subscription to its next period, then apply the plan chosen for it.

    The account's counters are rolled under the old plan (credits spent beyond
    its included tokens are used up) before the new plan takes over.
    """
    old_plan = subscription.plan
    start, end = subscription.current_period_start, subscription.current_period_end
    subscription.current_period_start = end
    subscription.current_period_end = next_period_end(start, end)
    subscription.save(update_fields=["current_period_start", "current_period_end", "updated_at"])
    lock_account(organization)  # rolls tokens_used_in_period and spent credits over
    if subscription.pending_plan_id is not None:
        subscription.plan = subscription.pending_plan  # type: ignore[assignment]
        subscription.pending_plan = None
        subscription.save(update_fields=["plan", "pending_plan", "updated_at"])
        if subscription.plan_id != old_plan.pk:
            record(
                "billing.plan_change_applied",
                organization=organization,
                target=subscription,
                old_plan=old_plan.code,
                new_plan=subscription.plan.code,
                period_start=subscription.current_period_start.isoformat(),
            )


def _issue(organization: Organization, due: DuePeriod, lines: list[DraftLine], *, now: datetime) -> Invoice:
    invoice = Invoice(
        organization=organization,
        currency=settings.BILLING_CURRENCY,
        period_start=due.start,
        period_end=due.end,
        issued_at=now,
        due_at=now + timedelta(days=PAYMENT_TERMS_DAYS),
        organization_name=organization.name,
        plan=due.plan,
        plan_name=due.plan.name,
        total=sum((line.amount for line in lines), Decimal("0.00")),
    )
    # Last, so the counter row (one per year, shared by every organization) is held as briefly as can be.
    invoice.number = _allocate_number(now)
    invoice.save()
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=line.kind,
            description=line.description,
            quantity=line.quantity,
            unit=line.unit,
            amount=line.amount,
        )
        for position, line in enumerate(lines, start=1)
    )
    record(
        "billing.invoice_issued",
        organization=organization,
        target=invoice,
        number=invoice.number,
        total=str(invoice.total),
        currency=invoice.currency,
    )
    return invoice


def _allocate_number(now: datetime) -> str:
    """The next number of ``now``'s year, e.g. ``LOOM-2026-000123``; call inside the issuing transaction."""
    year = now.astimezone(UTC).year
    InvoiceCounter.objects.get_or_create(year=year)
    counter = InvoiceCounter.objects.select_for_update().get(year=year)
    counter.last_number += 1
    counter.save(update_fields=["last_number"])
    return f"{settings.BILLING_INVOICE_PREFIX}-{year}-{counter.last_number:06d}"


#: Called with each invoice issued, after its commit: the payment provider's adapter collects it
#: (``billing.payments`` registers, from ``billing.apps``). Each must not raise: the invoice is issued.
_issued_listeners: list[Callable[[Invoice], None]] = []


def on_invoice_issued(listener: Callable[[Invoice], None]) -> None:
    """Have ``listener(invoice)`` called after the commit that issued an invoice."""
    if listener not in _issued_listeners:
        _issued_listeners.append(listener)


def _after_issue(invoice: Invoice) -> None:
    """Hand a new invoice to the payment provider for collection."""
    for listener in _issued_listeners:
        listener(invoice)


# --- paying and voiding ------------------------------------------------------------------------


def _require_staff_or_system(actor: Any) -> None:
    # None is the system (a verified Stripe webhook); a person must be staff.
    if actor is not None and not getattr(actor, "is_staff", False):
        raise Forbidden("Only staff can mark invoices paid or void them.")


@transaction.atomic
def mark_invoice_paid(
    *, invoice: Invoice, actor: User | None, reference: str = "", paid_at: datetime | None = None
) -> Invoice:
    """Record that an open invoice was paid (manually, or as Stripe reports); idempotent.

    A void invoice cannot be paid (409).
    """
    _require_staff_or_system(actor)
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if invoice.status == InvoiceStatus.PAID:
        return invoice
    if invoice.status == InvoiceStatus.VOID:
        raise Conflict(f"Invoice {invoice.number} is void; it cannot be paid.", code="invoice_void")
    invoice.status = InvoiceStatus.PAID
    invoice.paid_at = paid_at or timezone.now()
    invoice.payment_reference = (reference or "").strip()[:200]
    invoice.save(update_fields=["status", "paid_at", "payment_reference"])
    record(
        "billing.invoice_paid",
        organization=invoice.organization,
        actor=actor,
        target=invoice,
        number=invoice.number,
        reference=invoice.payment_reference,
    )
    return invoice


@transaction.atomic
def void_invoice(*, invoice: Invoice, actor: User, reason: str) -> Invoice:
    """Cancel an open invoice (staff, with a reason); idempotent. A paid invoice cannot be voided (409).

    Its number stays used and its period stays closed: a correction is an
    adjustment, billed with the next period.
    """
    _require_staff_or_system(actor)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the invoice is voided.", code="reason_required")
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if invoice.status == InvoiceStatus.VOID:
        return invoice
    if invoice.status == InvoiceStatus.PAID:
        raise Conflict(f"Invoice {invoice.number} is paid; refund it instead of voiding it.", code="invoice_paid")
    invoice.status = InvoiceStatus.VOID
    invoice.voided_at = timezone.now()
    invoice.save(update_fields=["status", "voided_at"])
    record(
        "billing.invoice_voided", organization=invoice.organization, actor=actor, target=invoice, number=invoice.number,
        reason=reason,
    )
    return invoice
