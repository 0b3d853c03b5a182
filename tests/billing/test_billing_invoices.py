"""Invoices: a closed period bills the right lines once, numbers have no gaps, and only the org's admins see them."""

from __future__ import annotations

import re
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditLog
from billing import invoicing
from billing.invoicing import close_due_periods, close_next_period, close_periods, next_period_end
from billing.models import (
    BillingAccount,
    ClosedPeriod,
    Invoice,
    InvoiceCounter,
    InvoiceStatus,
    LedgerEntry,
    LedgerKind,
    SubscriptionStatus,
)
from billing.pdf import render_invoice_pdf
from core.errors import Conflict, Forbidden, InvalidInput
from tests.support.billing import make_jobs, seed_plans, subscribe
from tests.support.factories import OrganizationFactory, ProjectFactory, UserFactory
from tests.support.invoice_factories import InvoiceFactory

pytestmark = pytest.mark.django_db

OCT_1 = datetime(2026, 10, 1, tzinfo=UTC)
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # the beat runs the day after October's period ended


def at(day: int, month: int = 10) -> datetime:
    return datetime(2026, month, day, 12, 0, tzinfo=UTC)


def ledger(organization, kind, created_at, **fields) -> LedgerEntry:
    """A ledger line written at ``created_at`` (the services stamp the current time)."""
    return LedgerEntry.objects.create(organization=organization, kind=kind, created_at=created_at, **fields)


@pytest.fixture
def plans():
    return seed_plans()


@pytest.fixture
def october(plans):
    """Acme-like organization on Starter for October 2026, created with it."""
    organization = OrganizationFactory(name="Acme", slug="acme-billing", created_at=OCT_1)
    subscription = subscribe(
        organization, plans["starter"], current_period_start=OCT_1, current_period_end=NOV_1
    )
    return subscription


def bill_october(organization):
    """A month of varied usage: Starter is 19.00 a month, 0.02 per 1,000 tokens beyond 500,000, 0.0006/GPU-s."""
    job, other_job, outside_job = make_jobs(ProjectFactory(organization=organization), 3)
    # 600,000 tokens: the last 100,000 beyond the allowance, 100 x 0.02 = 2.00
    ledger(organization, LedgerKind.CHARGE, at(10), job=job, tokens_in=100_000, tokens_out=500_000,
           tokens=600_000, amount=Decimal("2.000000"))
    ledger(organization, LedgerKind.RESERVATION, at(9), job=other_job, tokens=1_144)
    ledger(organization, LedgerKind.RELEASE, at(9), job=other_job, tokens=-1_144)
    # a regenerated variant: tokens, but named by its reference
    ledger(organization, LedgerKind.CHARGE, at(11), reference="regeneration:x:0:1", tokens_in=400, tokens_out=600,
           tokens=1_000, amount=Decimal("0.020000"))
    # compute: 1,234.5 s x 0.0006 = 0.7407 and 100.25 s x 0.0006 = 0.06015; together 0.80085 -> 0.80
    ledger(organization, LedgerKind.CHARGE, at(12), reference="recommendation:a", compute_seconds=Decimal("1234.5"),
           amount=Decimal("0.740700"))
    ledger(organization, LedgerKind.CHARGE, at(13), reference="recommendation:b", compute_seconds=Decimal("100.25"),
           amount=Decimal("0.060150"))
    # 5.005 rounds half up to 5.01 (half-even would give 5.00); the credit note -3.333333 to -3.33
    ledger(organization, LedgerKind.ADJUSTMENT, at(14), amount=Decimal("5.005000"), reason="Onboarding session")
    ledger(organization, LedgerKind.ADJUSTMENT, at(15), amount=Decimal("-3.333333"), reason="Outage on 14 October")
    ledger(organization, LedgerKind.ADJUSTMENT, at(16), tokens=-5_000, reason="Tokens only: not on the invoice")
    # outside the period, or another organization's: not on this invoice
    ledger(organization, LedgerKind.CHARGE, datetime(2026, 9, 30, 23, 59, tzinfo=UTC), reference="recommendation:old",
           compute_seconds=Decimal("10"), amount=Decimal("100"))
    ledger(organization, LedgerKind.CHARGE, NOV_1, job=outside_job, tokens=10, amount=Decimal("100"))
    ledger(OrganizationFactory(), LedgerKind.CHARGE, at(10), reference="recommendation:c", amount=Decimal("100"),
           compute_seconds=Decimal("10"))


# --- the calendar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2026-01-15", "2026-02-15", "2026-03-15"),
        ("2026-01-31", "2026-02-28", "2026-03-31"),  # anchored on the 31st, clamped in February
        ("2026-02-28", "2026-03-31", "2026-04-30"),
        ("2026-03-31", "2026-04-30", "2026-05-31"),
        ("2026-01-30", "2026-02-28", "2026-03-30"),  # anchored on the 30th: no drift to the 31st
        ("2026-03-30", "2026-04-30", "2026-05-30"),
        ("2026-01-28", "2026-02-28", "2026-03-28"),
        ("2028-01-29", "2028-02-29", "2028-03-29"),  # leap year
        ("2026-11-30", "2026-12-30", "2027-01-30"),  # over the year end
        ("2026-12-31", "2027-01-31", "2027-02-28"),
    ],
)
def test_next_period_is_one_calendar_month_without_drift(start, end, expected):
    def parse(day):
        return datetime.fromisoformat(day).replace(hour=14, minute=30, tzinfo=UTC)

    assert next_period_end(parse(start), parse(end)) == parse(expected)


# --- closing a period ---------------------------------------------------------------------------


def test_closing_a_period_issues_its_lines_and_hand_computed_total(october):
    # given
    organization = october.organization
    bill_october(organization)

    # when
    closed = close_next_period(organization, now=NOW)

    # then
    invoice = closed.invoice
    assert invoice.number == "LOOM-2026-000001"
    assert (invoice.period_start, invoice.period_end) == (OCT_1, NOV_1)
    assert invoice.status == InvoiceStatus.OPEN and invoice.currency == "USD"
    assert invoice.issued_at == NOW and invoice.due_at == datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
    assert (invoice.organization_name, invoice.plan_name) == ("Acme", "Starter")
    lines = [(line.kind, line.quantity, line.unit, line.amount) for line in invoice.lines.all()]
    assert lines == [
        ("subscription", Decimal("1"), "month", Decimal("19.00")),
        ("tokens", Decimal("601000"), "tokens", Decimal("2.02")),
        ("compute", Decimal("1334.750"), "seconds", Decimal("0.80")),
        ("adjustment", Decimal("1"), "", Decimal("5.01")),
        ("adjustment", Decimal("1"), "", Decimal("-3.33")),
    ]
    assert invoice.total == Decimal("23.50")  # 19.00 + 2.02 + 0.80 + 5.01 - 3.33
    descriptions = [line.description for line in invoice.lines.all()]
    assert descriptions[0] == "Starter plan, 1 Oct 2026 to 31 Oct 2026"
    assert descriptions[1].startswith("Generation: 601,000 tokens (100,400 prompt, 500,600 completion)")
    assert descriptions[3:] == ["Adjustment: Onboarding session", "Credit note: Outage on 14 October"]
    assert (closed.start, closed.end, closed.plan.code) == (OCT_1, NOV_1, "starter")
    assert AuditLog.objects.filter(action="billing.invoice_issued", target_id=str(invoice.pk)).count() == 1


def test_closing_rolls_the_subscription_over_by_one_month(october):
    close_next_period(october.organization, now=NOW)

    october.refresh_from_db()
    assert (october.current_period_start, october.current_period_end) == (NOV_1, DEC_1)
    assert BillingAccount.objects.get(organization=october.organization).period_start == NOV_1


def test_closing_twice_issues_one_invoice(october):
    bill_october(october.organization)

    first = close_due_periods(now=NOW)
    second = close_due_periods(now=NOW)
    again = close_next_period(october.organization, now=NOW)

    assert [invoice.number for invoice in first] == ["LOOM-2026-000001"]
    assert second == [] and again is None
    assert Invoice.objects.count() == 1
    assert ClosedPeriod.objects.filter(organization=october.organization).count() == 1
    assert InvoiceCounter.objects.get(year=2026).last_number == 1


def test_a_period_not_yet_ended_is_not_closed(october):
    assert close_next_period(october.organization, now=datetime(2026, 10, 31, 23, 59, tzinfo=UTC)) is None
    assert not Invoice.objects.exists()


def test_the_pending_plan_takes_over_at_period_end_after_the_period_is_billed_on_the_old_one(october, plans):
    # given: on Starter (500,000 included) with a switch to Pro chosen mid-period, 150,000 credits,
    # and 600,000 tokens used: 100,000 of the credits spent
    october.pending_plan = plans["pro"]
    october.save()
    BillingAccount.objects.create(
        organization=october.organization, period_start=OCT_1, tokens_used_in_period=600_000, credit_tokens=150_000
    )

    # when
    invoice = close_next_period(october.organization, now=NOW).invoice

    # then: October is billed on Starter, November runs on Pro
    assert invoice.plan_name == "Starter" and invoice.lines.get(kind="subscription").amount == Decimal("19.00")
    october.refresh_from_db()
    assert (october.plan.code, october.pending_plan) == ("pro", None)
    account = BillingAccount.objects.get(organization=october.organization)
    # the credits were used up under Starter's allowance, not Pro's 3,000,000 (which would spend none)
    assert (account.period_start, account.tokens_used_in_period, account.credit_tokens) == (NOV_1, 0, 50_000)
    change = AuditLog.objects.get(action="billing.plan_change_applied")
    assert (change.data["old_plan"], change.data["new_plan"]) == ("starter", "pro")


def test_periods_missed_while_down_are_closed_in_order(plans):
    organization = OrganizationFactory(created_at=datetime(2026, 8, 1, tzinfo=UTC))
    subscription = subscribe(
        organization,
        plans["starter"],
        current_period_start=datetime(2026, 8, 1, tzinfo=UTC),
        current_period_end=datetime(2026, 9, 1, tzinfo=UTC),
    )

    closed = close_periods(organization, now=NOW)

    periods = [(period.start.month, period.end.month, period.invoice.number) for period in closed]
    assert periods == [(8, 9, "LOOM-2026-000001"), (9, 10, "LOOM-2026-000002"), (10, 11, "LOOM-2026-000003")]
    subscription.refresh_from_db()
    assert (subscription.current_period_start, subscription.current_period_end) == (NOV_1, DEC_1)


def test_without_a_subscription_calendar_months_close_and_only_billable_ones_are_invoiced(plans):
    # given: no subscription (the default plan, Enterprise in tests), created mid-September;
    # September used nothing, October used tokens beyond the default plan's allowance
    organization = OrganizationFactory(created_at=datetime(2026, 9, 15, tzinfo=UTC))
    (job,) = make_jobs(ProjectFactory(organization=organization), 1)
    ledger(organization, LedgerKind.CHARGE, at(20), job=job, tokens=20_100_000, amount=Decimal("1.000000"))

    # when
    closed = close_periods(organization, now=NOW)

    # then: both months closed, one invoice, without a subscription fee
    assert [(p.start, p.end, p.invoice is not None) for p in closed] == [
        (datetime(2026, 9, 1, tzinfo=UTC), OCT_1, False),
        (OCT_1, NOV_1, True),
    ]
    invoice = closed[1].invoice
    assert [(line.kind, line.amount) for line in invoice.lines.all()] == [("tokens", Decimal("1.00"))]
    assert invoice.total == Decimal("1.00") and invoice.plan_name == "Enterprise"


def test_the_beat_finds_every_organization_with_an_ended_period_and_only_those(october, plans):
    unsubscribed = OrganizationFactory(created_at=datetime(2026, 9, 15, tzinfo=UTC))
    ledger(unsubscribed, LedgerKind.ADJUSTMENT, at(20), amount=Decimal("4.20"), reason="Setup")
    up_to_date = OrganizationFactory(created_at=OCT_1)
    close_periods(up_to_date, now=NOW)
    running = OrganizationFactory(created_at=OCT_1)
    subscribe(running, plans["pro"], current_period_start=datetime(2026, 10, 15, tzinfo=UTC),
              current_period_end=datetime(2026, 11, 15, tzinfo=UTC))

    due = set(invoicing.organizations_with_due_periods(now=NOW))
    issued = close_due_periods(now=NOW)

    assert due == {october.organization, unsubscribed}
    assert sorted((invoice.organization_id, invoice.total) for invoice in issued) == sorted(
        [(october.organization.pk, Decimal("19.00")), (unsubscribed.pk, Decimal("4.20"))]
    )
    assert set(invoicing.organizations_with_due_periods(now=NOW)) == set()


def test_a_free_organization_with_nothing_billable_gets_no_invoice(plans):
    organization = OrganizationFactory(created_at=OCT_1)
    subscription = subscribe(organization, plans["free"], current_period_start=OCT_1, current_period_end=NOV_1)
    (job,) = make_jobs(ProjectFactory(organization=organization), 1)
    ledger(organization, LedgerKind.CHARGE, at(5), job=job, tokens=20_000, amount=Decimal("0"))

    closed = close_next_period(organization, now=NOW)

    assert closed is not None and closed.invoice is None
    assert not Invoice.objects.exists()
    subscription.refresh_from_db()
    assert subscription.current_period_start == NOV_1


def test_stripe_bills_the_fee_of_a_subscription_it_manages(october):
    october.stripe_subscription_id = "sub_123"
    october.save()
    (job,) = make_jobs(ProjectFactory(organization=october.organization), 1)
    ledger(october.organization, LedgerKind.CHARGE, at(3), job=job, tokens=600_000, amount=Decimal("2"))

    invoice = close_next_period(october.organization, now=NOW).invoice

    assert [line.kind for line in invoice.lines.all()] == ["tokens"]
    assert invoice.total == Decimal("2.00")


def test_a_suspended_subscription_owes_no_fee_but_still_rolls_over(october):
    october.status = SubscriptionStatus.SUSPENDED
    october.save()

    closed = close_next_period(october.organization, now=NOW)

    assert closed.invoice is None
    october.refresh_from_db()
    assert october.current_period_start == NOV_1


def test_a_subscription_started_mid_month_also_bills_the_days_before_it(plans):
    # given: October closed as calendar months without a subscription; a subscription from 10 Nov
    organization = OrganizationFactory(created_at=OCT_1)
    close_periods(organization, now=NOW)
    subscribe(
        organization,
        plans["starter"],
        current_period_start=datetime(2026, 11, 10, tzinfo=UTC),
        current_period_end=datetime(2026, 12, 10, tzinfo=UTC),
    )
    ledger(organization, LedgerKind.ADJUSTMENT, datetime(2026, 11, 5, tzinfo=UTC), amount=Decimal("7"), reason="x")

    closed = close_next_period(organization, now=datetime(2026, 12, 10, 1, tzinfo=UTC))

    # then: the period runs from where October ended, so the 5 November adjustment is billed
    assert (closed.start, closed.end) == (NOV_1, datetime(2026, 12, 10, tzinfo=UTC))
    assert closed.invoice.total == Decimal("26.00")


def test_the_beat_task_is_scheduled_and_closes_periods(october):
    from billing.tasks import close_periods as task
    from workers.celery import app

    assert app.conf.beat_schedule["close-billing-periods"]["task"] == "billing.close_periods"
    assert "billing.close_periods" in app.tasks

    numbers = task.apply().get()

    assert numbers[0] == f"LOOM-{timezone.now().year}-000001"  # October's, issued now
    assert Invoice.objects.filter(organization=october.organization).exists()


def test_numbering_continues_after_a_failed_issue_without_a_gap(plans):
    """In one transaction (this test's), a failed issue rolls back to its savepoint, counter included."""
    first, second = (OrganizationFactory(created_at=OCT_1) for _ in range(2))
    for organization in (first, second):
        subscribe(organization, plans["starter"], current_period_start=OCT_1, current_period_end=NOV_1)
    ledger(first, LedgerKind.ADJUSTMENT, at(2), amount=Decimal("1"), reason="explode")
    with _failing_line_insert("explode"), pytest.raises(Exception, match="explode"):
        close_next_period(first, now=NOW)

    assert close_next_period(second, now=NOW).invoice.number == "LOOM-2026-000001"


#: Organizations closing at once, each by two workers (the beat task overlapping itself).
PARALLEL_ORGS = 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_closing_numbers_consecutively_without_gaps_or_duplicates():
    # given: 8 organizations whose October ended; the first one's issue fails half-way (a real
    # Postgres error inserting its lines, after its number was taken)
    plans = seed_plans()
    organizations = [OrganizationFactory(created_at=OCT_1) for _ in range(PARALLEL_ORGS)]
    for organization in organizations:
        subscribe(organization, plans["starter"], current_period_start=OCT_1, current_period_end=NOV_1)
    failing = organizations[0]
    ledger(failing, LedgerKind.ADJUSTMENT, at(2), amount=Decimal("1"), reason="explode")
    calls = [organization for organization in organizations for _ in range(2)]
    start = threading.Barrier(len(calls))

    def close(organization):
        try:
            start.wait()
            return "closed" if close_next_period(organization, now=NOW) else "already closed"
        except Exception as exc:
            return f"failed: {exc}"
        finally:
            connection.close()  # each thread has its own connection; leave none open

    # when
    with _failing_line_insert("explode"), ThreadPoolExecutor(max_workers=len(calls)) as pool:
        outcomes = list(pool.map(close, calls))

    # then: one invoice per organization, numbered 1..7 with no gap and no duplicate
    by_org = {org.pk: sorted(outcomes[i * 2:i * 2 + 2]) for i, org in enumerate(organizations)}
    assert all(o.startswith("failed") and "explode" in o for o in by_org[failing.pk])
    assert all(by_org[org.pk] == ["already closed", "closed"] for org in organizations[1:])
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"LOOM-2026-{n:06d}" for n in range(1, PARALLEL_ORGS)]
    assert InvoiceCounter.objects.get(year=2026).last_number == PARALLEL_ORGS - 1
    # and the failed organization, retried, takes the next number
    assert close_next_period(failing, now=NOW).invoice.number == f"LOOM-2026-{PARALLEL_ORGS:06d}"
    assert Invoice.objects.count() == ClosedPeriod.objects.count() == PARALLEL_ORGS


# --- paying and voiding -------------------------------------------------------------------------


def test_marking_paid_is_audited_and_idempotent_and_a_void_invoice_cannot_be_paid(plans):
    staff = UserFactory(is_staff=True)
    invoice = InvoiceFactory()

    invoicing.mark_invoice_paid(invoice=invoice, actor=staff, reference="bank transfer 4711")
    invoicing.mark_invoice_paid(invoice=invoice, actor=staff, reference="again")

    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_reference) == (InvoiceStatus.PAID, "bank transfer 4711")
    assert AuditLog.objects.filter(action="billing.invoice_paid").count() == 1
    with pytest.raises(Conflict):
        invoicing.void_invoice(invoice=invoice, actor=staff, reason="typo")
    other = InvoiceFactory()
    with pytest.raises(InvalidInput):
        invoicing.void_invoice(invoice=other, actor=staff, reason=" ")
    invoicing.void_invoice(invoice=other, actor=staff, reason="Issued twice by hand")
    with pytest.raises(Conflict):
        invoicing.mark_invoice_paid(invoice=other, actor=staff)
    with pytest.raises(Forbidden):
        invoicing.mark_invoice_paid(invoice=InvoiceFactory(), actor=UserFactory())


def test_admin_actions_mark_paid_and_void_with_a_reason(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    to_pay, to_void = InvoiceFactory(), InvoiceFactory()
    url = reverse("admin:billing_invoice_changelist")

    client.post(url, {"action": "mark_paid", "_selected_action": [str(to_pay.pk)]})
    asked = client.post(url, {"action": "void", "_selected_action": [str(to_void.pk)]})
    client.post(url, {"action": "void", "_selected_action": [str(to_void.pk)], "apply": "1", "reason": "Duplicate"})

    to_pay.refresh_from_db()
    to_void.refresh_from_db()
    assert to_pay.status == InvoiceStatus.PAID and to_pay.paid_at is not None
    assert b"Reason" in asked.content
    assert to_void.status == InvoiceStatus.VOID
    assert AuditLog.objects.get(action="billing.invoice_voided").data["reason"] == "Duplicate"
    assert client.get(reverse("admin:billing_invoice_change", args=[to_void.pk])).status_code == 200


# --- PDF, pages and API -------------------------------------------------------------------------


def pdf_text(data: bytes) -> str:
    """The page content of an fpdf2 PDF: its streams, inflated."""
    # fpdf2 writes "stream\n<bytes>\nendstream"; an optional \r before "endstream" would eat a compressed
    # stream's last byte whenever it is 0x0d, which made this helper fail once in a few hundred runs.
    streams = re.findall(rb"stream\n(.*?)\nendstream", data, re.S)
    out = []
    for stream in streams:
        try:
            out.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            out.append(stream.decode("latin-1"))
    return "\n".join(out)


def test_pdf_shows_the_number_organization_lines_and_total(october):
    bill_october(october.organization)
    invoice = close_next_period(october.organization, now=NOW).invoice

    data = render_invoice_pdf(invoice)

    assert data.startswith(b"%PDF")
    text = pdf_text(data)
    for expected in ("LOOM-2026-000001", "Acme", "Starter plan", "23.50 USD", "-3.33", "2 Nov 2026"):
        assert expected in text, expected


def test_pdf_writes_names_outside_latin1_in_ascii(plans):
    invoice = InvoiceFactory(organization_name="Łódź \u2013 Ünïcode 日本")

    text = pdf_text(render_invoice_pdf(invoice))

    assert "L\xf3dz \x96 \xdcn\xefcode ??" in text  # Windows-1252 bytes: ó, en dash, Ü, ï


@pytest.fixture
def acme_invoice(cast):
    return InvoiceFactory(organization=cast.org, number="LOOM-2026-000042")


def test_admins_see_the_invoice_list_page_and_pdf(cast, client, acme_invoice):
    client.force_login(cast.admin)

    listing = client.get(reverse("billing:invoices"))
    page = client.get(reverse("billing:invoice", args=[acme_invoice.pk]))
    pdf = client.get(reverse("billing:invoice_pdf", args=[acme_invoice.pk]))

    assert listing.status_code == 200 and b"LOOM-2026-000042" in listing.content
    assert page.status_code == 200 and b"Starter plan" in page.content and b"19.00 USD" in page.content
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"] == 'attachment; filename="LOOM-2026-000042.pdf"'
    assert pdf.content.startswith(b"%PDF")


def test_anonymous_is_sent_to_sign_in(client, acme_invoice):
    for url in (reverse("billing:invoices"), reverse("billing:invoice_pdf", args=[acme_invoice.pk])):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_editors_and_viewers_cannot_see_invoices(cast, client, acme_invoice, role):
    client.force_login(getattr(cast, role))

    assert client.get(reverse("billing:invoices")).status_code == 403
    assert client.get(reverse("billing:invoice_pdf", args=[acme_invoice.pk])).status_code == 403


def test_outsider_gets_404_on_acme_invoice_pages_and_sees_none_listed(cast, client, acme_invoice):
    own = InvoiceFactory(organization=cast.outsider_org, number="LOOM-2026-000043")
    client.force_login(cast.outsider)

    page = client.get(reverse("billing:invoice", args=[acme_invoice.pk]))
    pdf = client.get(reverse("billing:invoice_pdf", args=[acme_invoice.pk]))
    listing = client.get(reverse("billing:invoices"))

    assert (page.status_code, pdf.status_code) == (404, 404)
    assert b"LOOM-2026-000042" not in listing.content and own.number.encode() in listing.content


def test_api_lists_invoices_with_decimal_strings_and_serves_the_pdf(cast, client_for, acme_invoice):
    client = client_for(cast.owner)

    listing = client.get("/api/v1/invoices/")
    detail = client.get(f"/api/v1/invoices/{acme_invoice.pk}/")
    pdf = client.get(f"/api/v1/invoices/{acme_invoice.pk}/pdf/")

    assert [row["number"] for row in listing.json()["results"]] == ["LOOM-2026-000042"]
    body = detail.json()
    assert body["total"] == "19.00" and body["lines"][0]["amount"] == "19.00"
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf["Content-Disposition"] == 'attachment; filename="LOOM-2026-000042.pdf"'


def test_api_hides_invoices_from_outsiders_viewers_and_keys(cast, client_for, key_for, acme_invoice):
    outsider = client_for(cast.outsider)
    key, _, _ = key_for("write")

    assert outsider.get(f"/api/v1/invoices/{acme_invoice.pk}/").status_code == 404
    assert outsider.get(f"/api/v1/invoices/{acme_invoice.pk}/pdf/").status_code == 404
    assert outsider.get("/api/v1/invoices/").json()["results"] == []
    assert client_for(cast.viewer).get("/api/v1/invoices/").status_code == 403
    assert key.get("/api/v1/invoices/").status_code == 403


# --- helpers ------------------------------------------------------------------------------------


class _failing_line_insert:
    """A Postgres trigger that fails inserting an invoice line containing ``word``: a real error mid-issue."""

    def __init__(self, word: str) -> None:
        self.word = word

    def __enter__(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION test_fail_invoice_line() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.description LIKE '%{self.word}%' THEN RAISE EXCEPTION '{self.word}'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER test_fail_invoice_line BEFORE INSERT ON billing_invoiceline "
                "FOR EACH ROW EXECUTE FUNCTION test_fail_invoice_line()"
            )

    def __exit__(self, *exc: object) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS test_fail_invoice_line ON billing_invoiceline")
            cursor.execute("DROP FUNCTION IF EXISTS test_fail_invoice_line()")
