"""Metering: a job is admitted against its plan, then charged or released exactly once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditLog
from billing.errors import ConcurrencyLimitExceeded, QuotaExceeded, SubscriptionSuspended, VariantLimitExceeded
from billing.models import BillingAccount, LedgerEntry, LedgerKind, Plan, SubscriptionStatus
from billing.services import (
    adjust_ledger,
    current_period,
    current_plan,
    ensure_billing_account,
    grant_credits,
)
from core.errors import Forbidden, InvalidInput
from generation.metering import PROMPT_TOKEN_ALLOWANCE_PER_VARIANT, release_job, reserve_for_job, settle_job
from tests.support.billing import make_jobs, make_plan, seed_plans, set_usage, subscribe
from tests.support.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

# The factory job: 2 variants of up to 60 new tokens, each with the prompt allowance.
JOB_MAX = 2 * (60 + PROMPT_TOKEN_ALLOWANCE_PER_VARIANT)


@pytest.fixture
def plans(settings) -> dict[str, Plan]:
    settings.BILLING_DEFAULT_PLAN = "free"  # these tests are about the hosted default
    return seed_plans()


@pytest.fixture
def project(plans):
    return ProjectFactory()


@pytest.fixture
def staff():
    return UserFactory(is_staff=True)


def account_of(project) -> BillingAccount:
    return BillingAccount.objects.get(organization=project.organization)


def entries(job) -> dict[str, LedgerEntry]:
    return {entry.kind: entry for entry in LedgerEntry.objects.filter(job=job)}


# --- reservation -------------------------------------------------------------------------------


def test_reservation_holds_the_jobs_maximum_tokens_and_a_slot(project):
    # given
    user = UserFactory()
    (job,) = make_jobs(project, 1, requested_by=user)
    # when
    entry = reserve_for_job(job=job)
    # then
    stored = LedgerEntry.objects.get()
    assert stored == entry
    assert (stored.kind, stored.tokens, stored.amount) == (LedgerKind.RESERVATION, JOB_MAX, Decimal("0"))
    assert (stored.organization, stored.project, stored.user, stored.job) == (project.organization, project, user, job)
    account = account_of(project)
    assert (account.tokens_reserved, account.active_jobs, account.tokens_used_in_period) == (JOB_MAX, 1, 0)


def test_a_second_reservation_returns_the_first(project):
    (job,) = make_jobs(project, 1)
    first = reserve_for_job(job=job)
    assert reserve_for_job(job=job) == first
    assert LedgerEntry.objects.count() == 1
    assert (account_of(project).tokens_reserved, account_of(project).active_jobs) == (JOB_MAX, 1)


# --- settlement and release ---------------------------------------------------------------------


def test_settle_charges_actual_usage_and_releases_the_hold(project):
    # given
    (job,) = make_jobs(project, 1)
    reserve_for_job(job=job)
    set_usage(job, prompt=80, completion=100, seconds=1.25)
    # when
    charge = settle_job(job=job)
    # then
    rows = entries(job)
    assert rows[LedgerKind.CHARGE] == charge
    assert (charge.tokens, charge.tokens_in, charge.tokens_out) == (180, 80, 100)
    assert charge.compute_seconds == Decimal("1.250")
    assert charge.amount == Decimal("0")  # within the Free plan's included tokens
    assert rows[LedgerKind.RELEASE].tokens == -JOB_MAX
    account = account_of(project)
    assert (account.tokens_used_in_period, account.tokens_reserved, account.active_jobs) == (180, 0, 0)


def test_settle_twice_charges_once(project):
    (job,) = make_jobs(project, 1)
    reserve_for_job(job=job)
    set_usage(job, prompt=80, completion=100)
    first = settle_job(job=job)
    assert settle_job(job=job) == first
    assert LedgerEntry.objects.filter(job=job, kind=LedgerKind.CHARGE).count() == 1
    assert LedgerEntry.objects.filter(job=job, kind=LedgerKind.RELEASE).count() == 1
    account = account_of(project)
    assert (account.tokens_used_in_period, account.tokens_reserved, account.active_jobs) == (180, 0, 0)


def test_release_after_settle_charges_once_and_releases_once(project):
    (job,) = make_jobs(project, 1)
    reserve_for_job(job=job)
    set_usage(job, prompt=80, completion=100)
    settle_job(job=job)
    release = release_job(job=job, reason="worker retried the failure path")
    assert release == entries(job)[LedgerKind.RELEASE]
    assert LedgerEntry.objects.filter(job=job).count() == 3  # reservation, charge, release
    account = account_of(project)
    assert (account.tokens_used_in_period, account.tokens_reserved, account.active_jobs) == (180, 0, 0)


def test_release_refunds_the_whole_reservation_and_charges_nothing(project):
    (job,) = make_jobs(project, 1)
    reserve_for_job(job=job)
    release = release_job(job=job, reason="failed: model error")
    assert release_job(job=job, reason="again") == release
    assert (release.kind, release.tokens, release.reason) == (LedgerKind.RELEASE, -JOB_MAX, "failed: model error")
    assert not LedgerEntry.objects.filter(job=job, kind=LedgerKind.CHARGE).exists()
    account = account_of(project)
    assert (account.tokens_used_in_period, account.tokens_reserved, account.active_jobs) == (0, 0, 0)


def test_settle_after_release_charges_nothing(project):
    (job,) = make_jobs(project, 1)
    reserve_for_job(job=job)
    release_job(job=job, reason="canceled")
    set_usage(job, prompt=80, completion=100)
    assert settle_job(job=job) is None
    assert not LedgerEntry.objects.filter(kind=LedgerKind.CHARGE).exists()
    assert account_of(project).tokens_used_in_period == 0


def test_release_of_a_job_never_admitted_writes_nothing(project):
    (job,) = make_jobs(project, 1)
    assert release_job(job=job, reason="blocked by moderation") is None
    assert not LedgerEntry.objects.exists()


def test_overage_is_billed_only_beyond_the_allowance(project):
    # given a plan with 1,000 included tokens and 0.02 per 1,000 beyond them
    plan = make_plan("metered", included_tokens=1_000, overage_allowed=True, price_per_1k_tokens=Decimal("0.02"))
    subscribe(project.organization, plan)
    first, second = make_jobs(project, 2)
    reserve_for_job(job=first)
    reserve_for_job(job=second)
    # when the first crosses the allowance and the second is all overage
    set_usage(first, prompt=400, completion=800)
    set_usage(second, prompt=200, completion=300)
    # then
    assert settle_job(job=first).amount == Decimal("0.004000")  # 200 tokens beyond 1,000
    assert settle_job(job=second).amount == Decimal("0.010000")  # 500 tokens
    assert account_of(project).tokens_used_in_period == 1_700


# --- refusals ------------------------------------------------------------------------------------


def test_hard_cap_refuses_with_402_naming_the_reset_date(project):
    # given a Free organization with 500 tokens left
    ensure_billing_account(project.organization)
    BillingAccount.objects.update(tokens_used_in_period=24_500)
    (job,) = make_jobs(project, 1)
    # when
    with pytest.raises(QuotaExceeded) as refused:
        reserve_for_job(job=job)
    # then
    _, period_end = current_period(project.organization)
    assert (refused.value.status_code, refused.value.code) == (402, "quota_exceeded")
    assert "Free plan's 25,000 tokens" in refused.value.detail
    assert f"resets on {period_end:%Y-%m-%d}" in refused.value.detail
    assert not LedgerEntry.objects.exists()
    assert (account_of(project).tokens_reserved, account_of(project).active_jobs) == (0, 0)


def test_hard_cap_resets_at_the_subscription_period_end(project):
    end = timezone.now() + timedelta(days=9)
    subscribe(project.organization, make_plan(included_tokens=100), current_period_end=end)
    (job,) = make_jobs(project, 1)
    with pytest.raises(QuotaExceeded, match=f"resets on {end:%Y-%m-%d %H:%M} UTC"):
        reserve_for_job(job=job)


def test_overage_plan_admits_beyond_its_included_tokens(project, plans):
    subscribe(project.organization, plans["starter"])
    ensure_billing_account(project.organization)
    BillingAccount.objects.update(tokens_used_in_period=plans["starter"].included_tokens)
    (job,) = make_jobs(project, 1)
    assert reserve_for_job(job=job).tokens == JOB_MAX


def test_concurrency_limit_refuses_with_429_until_a_job_finishes(project):
    # given the Free plan's two slots taken
    running, other, waiting = make_jobs(project, 3)
    reserve_for_job(job=running)
    reserve_for_job(job=other)
    # when
    with pytest.raises(ConcurrencyLimitExceeded) as refused:
        reserve_for_job(job=waiting)
    # then
    assert (refused.value.status_code, refused.value.code) == (429, "concurrency_limit")
    assert "up to 2 jobs at a time" in refused.value.detail
    assert not LedgerEntry.objects.filter(job=waiting).exists()
    release_job(job=running, reason="canceled")
    assert reserve_for_job(job=waiting).kind == LedgerKind.RESERVATION
    assert account_of(project).active_jobs == 2


def test_variants_above_the_plan_limit_are_refused(project):
    (job,) = make_jobs(project, 1, num_variants=3)
    with pytest.raises(VariantLimitExceeded) as refused:
        reserve_for_job(job=job)
    assert isinstance(refused.value, InvalidInput)
    assert refused.value.status_code == 400
    assert "up to 2 variants per job" in refused.value.detail
    assert refused.value.fields["num_variants"]
    assert not LedgerEntry.objects.exists()


def test_suspended_subscription_is_refused(project, plans):
    subscribe(project.organization, plans["pro"], status=SubscriptionStatus.SUSPENDED)
    (job,) = make_jobs(project, 1)
    with pytest.raises(SubscriptionSuspended) as refused:
        reserve_for_job(job=job)
    assert refused.value.status_code == 402
    assert not LedgerEntry.objects.exists()


# --- plans, periods, credits and adjustments ------------------------------------------------------


def test_default_plan_is_a_setting(project, plans, settings):
    settings.BILLING_DEFAULT_PLAN = "pro"
    assert current_plan(project.organization) == plans["pro"]
    settings.BILLING_DEFAULT_PLAN = "nonexistent"
    with pytest.raises(ImproperlyConfigured, match="BILLING_DEFAULT_PLAN"):
        current_plan(project.organization)


def test_current_plan_is_free_without_a_subscription_and_after_cancellation(project, plans):
    assert current_plan(project.organization) == plans["free"]
    subscription = subscribe(project.organization, plans["pro"])
    assert current_plan(project.organization) == plans["pro"]
    subscription.status = SubscriptionStatus.CANCELED
    subscription.save()
    assert current_plan(project.organization) == plans["free"]


def test_seeded_plans_cap_free_and_bill_overage_on_paid_plans(plans):
    assert set(plans) == {"free", "starter", "pro", "enterprise"}
    assert [p.overage_allowed for p in (plans["free"], plans["starter"], plans["pro"], plans["enterprise"])] == [
        False,
        True,
        True,
        True,
    ]
    prices = [plans[code].monthly_price for code in ("free", "starter", "pro", "enterprise")]
    assert prices == sorted(prices)
    assert all(plans[code].price_per_1k_tokens > 0 for code in ("starter", "pro", "enterprise"))


def test_credits_lift_a_hard_cap_with_an_audit_row(project, staff):
    # given a Free organization out of tokens
    ensure_billing_account(project.organization)
    BillingAccount.objects.update(tokens_used_in_period=25_000)
    (job,) = make_jobs(project, 1)
    with pytest.raises(QuotaExceeded):
        reserve_for_job(job=job)
    # when
    grant = grant_credits(actor=staff, organization=project.organization, tokens=5_000, reason="launch promo")
    # then
    assert (grant.kind, grant.tokens, grant.created_by, grant.reason) == (
        LedgerKind.CREDIT_GRANT,
        5_000,
        staff,
        "launch promo",
    )
    assert account_of(project).credit_tokens == 5_000
    audit = AuditLog.objects.get(action="billing.credits_granted")
    assert (audit.organization, audit.actor, audit.target_id, audit.data["tokens"]) == (
        project.organization,
        staff,
        str(grant.pk),
        5_000,
    )
    assert reserve_for_job(job=job).tokens == JOB_MAX


@pytest.mark.parametrize("tokens", [0, -5])
def test_credits_must_be_positive(project, staff, tokens):
    with pytest.raises(InvalidInput):
        grant_credits(actor=staff, organization=project.organization, tokens=tokens, reason="oops")
    assert not LedgerEntry.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="billing.").exists()


def test_only_staff_change_the_ledger(project):
    owner = UserFactory()
    with pytest.raises(Forbidden):
        grant_credits(actor=owner, organization=project.organization, tokens=1_000, reason="self-service")
    with pytest.raises(Forbidden):
        adjust_ledger(actor=owner, organization=project.organization, tokens=-10, amount=0, reason="self-service")
    assert not LedgerEntry.objects.exists()


def test_adjustment_corrects_usage_and_money_with_an_audit_row(project, staff):
    ensure_billing_account(project.organization)
    BillingAccount.objects.update(tokens_used_in_period=1_000)
    entry = adjust_ledger(
        actor=staff, organization=project.organization, tokens=-400, amount="-1.25", reason="outage on 3 May"
    )
    assert (entry.kind, entry.tokens, entry.amount) == (LedgerKind.ADJUSTMENT, -400, Decimal("-1.25"))
    assert account_of(project).tokens_used_in_period == 600
    audit = AuditLog.objects.get(action="billing.ledger_adjusted")
    assert (audit.data["amount"], audit.data["reason"]) == ("-1.250000", "outage on 3 May")


def test_adjustment_needs_a_reason_and_cannot_make_usage_negative(project, staff):
    org = project.organization
    with pytest.raises(InvalidInput, match="why"):
        adjust_ledger(actor=staff, organization=org, tokens=-1, amount=0, reason="  ")
    with pytest.raises(InvalidInput, match="below zero"):
        adjust_ledger(actor=staff, organization=org, tokens=-1, amount=0, reason="goodwill")
    with pytest.raises(InvalidInput, match="float"):
        adjust_ledger(actor=staff, organization=org, tokens=0, amount=0.1, reason="goodwill")
    assert not LedgerEntry.objects.exists()


def test_period_rollover_restarts_usage_and_spends_used_credits(project):
    # given last period: 30,000 used of Free's 25,000 plus 8,000 credits
    ensure_billing_account(project.organization)
    last_month = current_period(project.organization)[0] - timedelta(days=10)
    BillingAccount.objects.update(period_start=last_month, tokens_used_in_period=30_000, credit_tokens=8_000)
    (job,) = make_jobs(project, 1)
    # when the first job of the new period is admitted
    reserve_for_job(job=job)
    # then
    account = account_of(project)
    assert (account.tokens_used_in_period, account.credit_tokens, account.tokens_reserved) == (0, 3_000, JOB_MAX)
    assert account.period_start == current_period(project.organization)[0]


def test_money_is_decimal_everywhere(project):
    money_fields = {
        Plan: ["monthly_price", "price_per_1k_tokens", "price_per_gpu_second"],
        LedgerEntry: ["amount", "compute_seconds"],
    }
    for model, names in money_fields.items():
        for name in names:
            assert isinstance(model._meta.get_field(name), models.DecimalField), f"{model.__name__}.{name}"
    assert not [f.name for m in (Plan, LedgerEntry) for f in m._meta.get_fields() if isinstance(f, models.FloatField)]
    plan = make_plan("metered", overage_allowed=True, included_tokens=0, price_per_1k_tokens=Decimal("0.015"))
    subscribe(project.organization, plan)
    (job,) = make_jobs(project, 1)
    reserve_for_job(job=job)
    set_usage(job, prompt=1, completion=2)
    settle_job(job=job)
    stored = LedgerEntry.objects.get(kind=LedgerKind.CHARGE)
    assert isinstance(stored.amount, Decimal) and stored.amount == Decimal("0.000045")
    assert isinstance(Plan.objects.get(code="metered").price_per_1k_tokens, Decimal)


def test_admin_shows_the_ledger_read_only(project, client):
    # given
    (job,) = make_jobs(project, 1)
    entry = reserve_for_job(job=job)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    account = account_of(project)
    # then every billing page renders, and the ledger and balances cannot be added to by hand
    for name, pk in [
        ("ledgerentry", entry.pk),
        ("billingaccount", account.pk),
        ("plan", current_plan(job.organization).pk),
    ]:
        assert client.get(reverse(f"admin:billing_{name}_changelist"), {"q": "acme"}).status_code == 200
        assert client.get(reverse(f"admin:billing_{name}_change", args=[pk])).status_code == 200
    assert client.get(reverse("admin:billing_ledgerentry_add")).status_code == 403
    assert client.get(reverse("admin:billing_billingaccount_add")).status_code == 403
    assert client.post(reverse("admin:billing_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_assign_plan_applies_at_once_with_an_audited_reason(project, plans, staff):
    from audit.models import AuditLog
    from billing.services import assign_plan

    subscription = assign_plan(organization=project.organization, plan_code="pro", actor=staff, reason="contract")
    assert current_plan(project.organization) == plans["pro"] and subscription.pending_plan is None
    assert AuditLog.objects.filter(action="billing.plan_assigned", organization=project.organization).exists()
    with pytest.raises(InvalidInput):
        assign_plan(organization=project.organization, plan_code="pro", actor=staff, reason=" ")
    with pytest.raises(InvalidInput):
        assign_plan(organization=project.organization, plan_code="platinum", actor=staff, reason="x")
    with pytest.raises(Forbidden):
        assign_plan(organization=project.organization, plan_code="free", actor=UserFactory(), reason="x")


def test_an_organization_held_across_a_plan_assignment_is_judged_by_the_new_plan(plans, staff):
    from billing.services import assign_plan, loaded_subscription

    # given: an organization without a subscription (Free allows 2 jobs at a time), held by the caller
    project = ProjectFactory()
    organization = project.organization

    # when: an operator assigns Enterprise, and the caller goes on with the same instance
    assign_plan(organization=organization, plan_code="enterprise", actor=staff, reason="benchmark")

    # then: the held instance answers with the new plan, as a fresh read does
    assert loaded_subscription(organization).plan.code == "enterprise"
    assert current_plan(organization).code == "enterprise"
    for job in make_jobs(project, 3):  # each job reaches the organization through the same held instance
        assert job.organization is organization
        reserve_for_job(job=job)
    assert account_of(project).active_jobs == 3
