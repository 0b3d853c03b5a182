"""Plans, subscriptions, the per-organization balances used for admission, and the usage ledger.

Money is ``Decimal`` everywhere, never ``float``: unit prices keep six decimal places
(a fraction of a cent per thousand tokens), prices and invoice totals two.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

UNIT_PRICE = {"max_digits": 12, "decimal_places": 6, "default": Decimal("0")}
TOTAL_PRICE = {"max_digits": 12, "decimal_places": 2, "default": Decimal("0")}

#: The plan of an organization without a subscription (seeded by migration 0002).
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
    api_rate_limit_per_minute = models.PositiveIntegerField(default=60)
    overage_allowed = models.BooleanField(
        default=False, help_text="Off: a hard cap, jobs are refused once the included tokens are spent."
    )
    is_active = models.BooleanField(default=True, help_text="Inactive plans cannot be chosen any more.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["monthly_price", "code"]

    def __str__(self) -> str:
        return self.name


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"
    SUSPENDED = "suspended", "Suspended"


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

    class Meta:
        ordering = ["organization"]

    def __str__(self) -> str:
        return f"Billing account of {self.organization}"


class LedgerKind(models.TextChoices):
    RESERVATION = "reservation", "Reservation"
    RELEASE = "release", "Release"
    CHARGE = "charge", "Charge"
    REFUND = "refund", "Refund"
    CREDIT_GRANT = "credit_grant", "Credit grant"
    ADJUSTMENT = "adjustment", "Adjustment"
    SUBSCRIPTION = "subscription", "Subscription"


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
    kind = models.CharField(max_length=16, choices=LedgerKind.choices)
    tokens_in = models.PositiveBigIntegerField(default=0, help_text="Prompt tokens.")
    tokens_out = models.PositiveBigIntegerField(default=0, help_text="Completion tokens.")
    tokens = models.BigIntegerField(default=0)
    compute_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=Decimal("0"))
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
        ]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.tokens:+} tokens, {self.amount} ({self.organization_id})"
