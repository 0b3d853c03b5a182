"""Plans, subscriptions, the per-organization balances used for admission, and the usage ledger.

Money is ``Decimal`` everywhere, never ``float``: unit prices keep six decimal places
(a fraction of a cent per thousand tokens), prices and invoice totals two.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

UNIT_PRICE = {"max_digits": 12, "decimal_places": 6, "default": Decimal("0")}
TOTAL_PRICE = {"max_digits": 12, "decimal_places": 2, "default": Decimal("0")}

#: The seeded free plan (migration 0002); settings.BILLING_DEFAULT_PLAN names the default plan.
FREE_PLAN_CODE = "free"


class Plan(models.Model):
    """What an organization pays and may do. Editable data: operators change prices in the admin."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    monthly_price = models.DecimalField(**TOTAL_PRICE)
    included_tokens = models.PositiveBigIntegerField(default=0, help_text="Tokens included in each billing period.")
    price_per_1k_tokens = models.DecimalField(**UNIT_PRICE, help_text="Overage price per 1,000 tokens.")
    price_per_gpu_second = models.DecimalField(**UNIT_PRICE)
    max_concurrent_jobs = models.PositiveIntegerField(default=1)
    max_variants_per_job = models.PositiveSmallIntegerField(default=1)
    max_members = models.PositiveIntegerField(default=1)
    max_running_experiments = models.PositiveIntegerField(
        null=True, blank=True, help_text="Experiments running at once in the organization (empty: no limit)."
    )
    api_rate_limit_per_minute = models.PositiveIntegerField(default=60, help_text="API requests per minute per key.")
    org_rate_limit_per_minute = models.PositiveIntegerField(
        default=600, help_text="API requests per minute for the whole organization, all keys and sessions together."
    )
    overage_allowed = models.BooleanField(
        default=False, help_text="Off: a hard cap, jobs are refused once the included tokens are spent."
    )
    is_active = models.BooleanField(default=True, help_text="Inactive plans cannot be chosen any more.")
    stripe_price_id = models.CharField(
        max_length=120,
        blank=True,
        help_text="The Stripe Price (price_...) that Checkout sells for this plan; blank: not sold through Stripe.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["monthly_price", "code"]

    def __str__(self) -> str:
        return self.name


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    PAST_DUE = "past_due", _("Past due")
    CANCELED = "canceled", _("Canceled")
    SUSPENDED = "suspended", _("Suspended")


class Subscription(models.Model):
    """An organization's plan for the current billing period.

    Plan changes take effect at the end of the period: a change only sets
    ``pending_plan``, and the period rollover moves it into ``plan``. So the
    allowance and prices a job was admitted under never change while it runs,
    and nobody needs prorating mid-period (an upgrade that must apply at once is
    an operator's ``adjust_ledger`` or credit grant).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.OneToOneField(
        "organizations.Organization", on_delete=models.CASCADE, related_name="subscription"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    pending_plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pending_subscriptions",
        help_text="Becomes the plan at the end of the current period.",
    )
    status = models.CharField(max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    stripe_customer_id = models.CharField(max_length=120, blank=True)
    stripe_subscription_id = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization"]
        constraints = [
            models.CheckConstraint(
                condition=Q(current_period_end__gt=models.F("current_period_start")),
                name="subscription_period_is_forward",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization} on {self.plan} ({self.status})"


class BillingAccount(models.Model):
    """An organization's running balances, one row per organization.

    Admission locks this row (``SELECT ... FOR UPDATE``), so concurrent
    reservations of one organization queue up on it and can never together
    reserve more than the allowance. The ledger is the record; these counters
    are its running sums for the current period, kept in the same transaction
    as each ledger row.
    """

    organization = models.OneToOneField(
        "organizations.Organization", on_delete=models.CASCADE, related_name="billing_account"
    )
    period_start = models.DateTimeField(help_text="Start of the period tokens_used_in_period counts.")
    tokens_used_in_period = models.PositiveBigIntegerField(default=0)
    tokens_reserved = models.PositiveBigIntegerField(default=0, help_text="Held by admitted, unsettled jobs.")
    credit_tokens = models.PositiveBigIntegerField(default=0, help_text="Granted tokens on top of the plan.")
    active_jobs = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    #: The subscription ``billing.admission.lock_account`` read with the lock (not a column).
    read_subscription: Subscription | None = None

    class Meta:
        ordering = ["organization"]

    def __str__(self) -> str:
        return f"Billing account of {self.organization}"


class LedgerKind(models.TextChoices):
    RESERVATION = "reservation", _("Reservation")
    RELEASE = "release", _("Release")
    CHARGE = "charge", _("Charge")
    REFUND = "refund", _("Refund")
    CREDIT_GRANT = "credit_grant", _("Credit grant")
    ADJUSTMENT = "adjustment", _("Adjustment")
    SUBSCRIPTION = "subscription", _("Subscription")


class LedgerEntry(models.Model):
    """One append-only line of an organization's usage and money.

    ``tokens`` is signed, as the change to the balance its kind concerns:

    * reservation ``+R`` and release ``-R`` move the hold (``tokens_reserved``);
      a release always lifts the job's whole hold, so holds sum to zero per job;
    * charge ``+A`` (actual usage), refund ``-X`` and adjustment ``±N`` move
      ``tokens_used_in_period``;
    * credit_grant ``+G`` moves ``credit_tokens``.

    ``amount`` is the signed money owed (a charge's overage, a refund or credit
    note negative). It keeps six decimal places: a job's overage is often a
    fraction of a cent, and rounding every line to cents would lose money; the
    invoice rounds its total.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="ledger_entries"
    )
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    job = models.ForeignKey(
        "generation.GenerationJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="ledger_entries"
    )
    reference = models.CharField(
        max_length=120,
        blank=True,
        help_text="What a line without a generation job bills, e.g. 'recommendation:<id>'; unique per kind.",
    )
    kind = models.CharField(max_length=16, choices=LedgerKind.choices)
    tokens_in = models.PositiveBigIntegerField(default=0, help_text="Prompt tokens.")
    tokens_out = models.PositiveBigIntegerField(default=0, help_text="Completion tokens.")
    tokens = models.BigIntegerField(default=0)
    compute_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=Decimal("0"))
    holds_slot = models.BooleanField(
        default=True,
        help_text="A reservation taking one of the plan's concurrent-job slots (bulk and campaign rows do not).",
    )
    amount = models.DecimalField(**UNIT_PRICE)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "ledger entries"
        constraints = [
            # Exactly-once: a job's reservation, charge and release each exist at most once,
            # even when the task that writes them runs twice.
            models.UniqueConstraint(fields=["job", "kind"], condition=Q(job__isnull=False), name="ledger_once_per_job"),
            models.UniqueConstraint(
                fields=["reference", "kind"], condition=~Q(reference=""), name="ledger_once_per_reference"
            ),
        ]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.tokens:+} tokens, {self.amount} ({self.organization_id})"


# --- invoices (billing/invoicing.py) and the payment provider (billing/payments.py) ------------


class InvoiceStatus(models.TextChoices):
    OPEN = "open", _("Open")
    PAID = "paid", _("Paid")
    VOID = "void", _("Void")


class Invoice(models.Model):
    """What an organization owes for one closed billing period; issued once, then only paid or voided.

    The organization's and plan's names are copied at issue: an issued invoice
    reads the same after a rename. ``number`` comes from ``InvoiceCounter`` in
    the issuing transaction, so numbers have no gaps.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="invoices"
    )
    number = models.CharField(max_length=32, unique=True, editable=False)
    status = models.CharField(max_length=8, choices=InvoiceStatus.choices, default=InvoiceStatus.OPEN)
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    issued_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    organization_name = models.CharField(max_length=120)
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    plan_name = models.CharField(max_length=80, blank=True)
    total = models.DecimalField(**TOTAL_PRICE)
    paid_at = models.DateTimeField(null=True, blank=True)
    payment_reference = models.CharField(
        max_length=200, blank=True, help_text="How it was paid: a bank transfer reference, a Stripe invoice id."
    )
    voided_at = models.DateTimeField(null=True, blank=True)
    stripe_invoice_id = models.CharField(max_length=120, blank=True, db_index=True)

    class Meta:
        ordering = ["-issued_at", "-number"]
        constraints = [
            # Idempotent closing: the beat task running twice, or on two workers, issues one invoice.
            models.UniqueConstraint(fields=["organization", "period_start"], name="invoice_once_per_period"),
            models.CheckConstraint(condition=Q(period_end__gt=models.F("period_start")), name="invoice_period_forward"),
        ]
        indexes = [models.Index(fields=["organization", "-issued_at"])]

    def __str__(self) -> str:
        return self.number

    @property
    def pdf_filename(self) -> str:
        return f"{self.number}.pdf"

    @property
    def period_last_day(self) -> date:
        """The period's last day (``period_end`` is exclusive), for display."""
        return (self.period_end - timedelta(microseconds=1)).date()


class InvoiceLineKind(models.TextChoices):
    SUBSCRIPTION = "subscription", _("Subscription")
    TOKENS = "tokens", _("Generation tokens")
    COMPUTE = "compute", _("Compute")
    REFUND = "refund", _("Refunds")
    ADJUSTMENT = "adjustment", _("Adjustment")


class InvoiceLine(models.Model):
    """One line of an invoice. ``amount`` is rounded to cents; the invoice total is the sum of its lines."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=16, choices=InvoiceLineKind.choices)
    description = models.CharField(max_length=300)
    quantity = models.DecimalField(max_digits=18, decimal_places=3, default=Decimal("0"))
    unit = models.CharField(max_length=16, blank=True, help_text="month, tokens, seconds; blank for a sum.")
    amount = models.DecimalField(**TOTAL_PRICE)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position")]

    def __str__(self) -> str:
        return f"{self.invoice_id} #{self.position}: {self.description}"

    @property
    def quantity_display(self) -> str:
        """``12,500 tokens``, ``3.25 seconds``, ``1 month``; empty for a line that is only an amount."""
        if not self.unit:
            return ""
        whole = self.quantity == self.quantity.to_integral_value()
        number = f"{int(self.quantity):,}" if whole else f"{self.quantity:,f}".rstrip("0")
        return f"{number} {self.unit}"


class InvoiceCounter(models.Model):
    """The last invoice number issued in a year.

    Issuing locks the year's row (``SELECT ... FOR UPDATE``) and increments it
    in the same transaction as the invoice, so a rolled-back issue gives its
    number back and concurrent issues take consecutive numbers.
    """

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-year"]

    def __str__(self) -> str:
        return f"{self.year}: {self.last_number}"


class ClosedPeriod(models.Model):
    """A billing period of an organization that was closed: invoiced, or found to owe nothing.

    An organization's closed periods are contiguous, each starting where the
    previous one ended, so every ledger line falls into exactly one of them:
    nothing is billed twice, nothing is skipped, also across a subscription
    started, canceled or taken up again mid-month.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="closed_periods"
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    invoice = models.OneToOneField(
        Invoice, null=True, blank=True, on_delete=models.SET_NULL, related_name="closed_period"
    )
    closed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organization", "-start"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "start"], name="closed_period_once"),
            models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="closed_period_forward"),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}"


class StripeEvent(models.Model):
    """A Stripe webhook event, stored in the transaction that applied it: an event id is applied once.

    ``payload`` is the event as Stripe sent it (the signature header is not kept).
    """

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=120)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField(default=dict)
    outcome = models.CharField(max_length=300, blank=True, help_text="What processing did, or why it did nothing.")
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
