"""Operators' billing actions on organizations in the admin: credits, ledger adjustments, suspension."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from audit.models import AuditLog
from billing.models import BillingAccount, LedgerEntry, LedgerKind, Plan, Subscription
from billing.services import charge_compute, ensure_billing_account
from tests.support.billing import subscribe
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:organizations_organization_changelist")


@pytest.fixture
def staff(client):
    operator = UserFactory(email="operator@loom.test", is_staff=True, is_superuser=True)
    client.force_login(operator)
    client.operator = operator
    return client


def _act(client, action: str, organizations, **fields):
    """Choose the action on the organization list; with fields, submit its form too (as the page does)."""
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(org.pk) for org in organizations]}
    if fields:
        data |= {"apply": "1", **{k: str(v) for k, v in fields.items()}}
    return client.post(CHANGELIST, data)


def test_the_organization_list_shows_plan_and_billing_status(cast, staff):
    subscribe(cast.outsider_org, Plan.objects.get(code="pro"))

    response = staff.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Pro" in html and "enterprise (default)" in html and "No subscription" in html
    for action in ("grant_credits", "adjust_ledger", "suspend", "unsuspend"):
        assert f'value="{action}"' in html


def test_grant_credits_asks_for_tokens_and_reason_then_grants(cast, staff):
    # when: the action is chosen, it asks first
    form = _act(staff, "grant_credits", [cast.org])
    assert form.status_code == 200
    assert 'name="tokens"' in form.content.decode() and "Acme" in form.content.decode()
    assert not LedgerEntry.objects.exists()

    # and then grants what the form says
    done = _act(staff, "grant_credits", [cast.org], tokens=5000, reason="Launch goodwill")

    assert done.status_code == 302
    assert BillingAccount.objects.get(organization=cast.org).credit_tokens == 5000
    grant = LedgerEntry.objects.get(organization=cast.org, kind=LedgerKind.CREDIT_GRANT)
    assert (grant.tokens, grant.reason, grant.created_by) == (5000, "Launch goodwill", staff.operator)
    audit = AuditLog.objects.get(action="billing.credits_granted")
    assert (audit.organization, audit.actor, audit.data["tokens"]) == (cast.org, staff.operator, 5000)
    assert not LedgerEntry.objects.filter(organization=cast.outsider_org).exists()


@pytest.mark.parametrize("tokens", [0, -100, "lots"])
def test_grant_credits_refuses_what_is_not_a_positive_number(cast, staff, tokens):
    response = _act(staff, "grant_credits", [cast.org], tokens=tokens, reason="oops")

    assert response.status_code == 400
    html = response.content.decode()
    assert "positive whole number" in html or "Enter a whole number" in html
    assert not LedgerEntry.objects.exists()
    assert not AuditLog.objects.filter(action="billing.credits_granted").exists()


def test_grant_credits_needs_a_reason(cast, staff):
    response = _act(staff, "grant_credits", [cast.org], tokens=10, reason="")

    assert response.status_code == 400
    assert not LedgerEntry.objects.exists()


def test_adjust_ledger_with_a_reason_is_audited(cast, staff):
    account = ensure_billing_account(cast.org)
    BillingAccount.objects.filter(pk=account.pk).update(tokens_used_in_period=2000)

    response = _act(staff, "adjust_ledger", [cast.org], tokens=-500, amount="-1.25", reason="Job ran twice")

    assert response.status_code == 302
    entry = LedgerEntry.objects.get(organization=cast.org, kind=LedgerKind.ADJUSTMENT)
    assert (entry.tokens, entry.amount, entry.reason) == (-500, Decimal("-1.250000"), "Job ran twice")
    assert BillingAccount.objects.get(organization=cast.org).tokens_used_in_period == 1500
    audit = AuditLog.objects.get(action="billing.ledger_adjusted")
    assert (audit.data["tokens"], audit.data["amount"], audit.data["reason"]) == (-500, "-1.250000", "Job ran twice")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tokens": -10, "amount": "0", "reason": ""}, "This field is required"),
        ({"tokens": 0, "amount": "0", "reason": "nothing"}, "changes the tokens, the amount or both"),
        ({"tokens": -10, "amount": "0", "reason": "below zero"}, "cannot go below zero"),
        ({"tokens": 5, "amount": "1.5e400", "reason": "huge"}, "no more than 12 digits"),
        ({"tokens": 5, "amount": "NaN", "reason": "nan"}, "Enter a number"),
    ],
)
def test_adjust_ledger_refusals_change_nothing(cast, staff, fields, message):
    response = _act(staff, "adjust_ledger", [cast.org], **fields)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not LedgerEntry.objects.filter(kind=LedgerKind.ADJUSTMENT).exists()
    assert not AuditLog.objects.filter(action="billing.ledger_adjusted").exists()


def test_suspending_an_organization_without_subscription_refuses_its_jobs(cast, staff, key_for):
    # when
    response = _act(staff, "suspend", [cast.org], reason="Card declined three times")

    # then: a subscription on its current plan, suspended, and audited
    assert response.status_code == 302
    subscription = Subscription.objects.get(organization=cast.org)
    assert (subscription.status, subscription.plan.code) == ("suspended", "enterprise")
    audit = AuditLog.objects.get(action="billing.organization_suspended")
    assert (audit.data["reason"], audit.actor) == ("Card declined three times", staff.operator)
    # and a job submitted through the API is refused at admission
    client, _, _ = key_for("write")
    refused = client.post(
        "/api/v1/jobs/",
        {"project": str(cast.project.pk), "template": "product-description", "inputs": {"product": "Bulbs"}},
        format="json",
    )
    assert refused.status_code == 402, refused.content
    assert refused.json()["code"] == "subscription_suspended"
    # the outsider's organization is untouched
    assert not Subscription.objects.filter(organization=cast.outsider_org).exists()


def test_suspend_needs_a_reason_and_an_organization_is_suspended_once(cast, staff):
    assert _act(staff, "suspend", [cast.org], reason=" ").status_code == 400
    assert not Subscription.objects.exists()

    _act(staff, "suspend", [cast.org], reason="Fraud review")
    again = _act(staff, "suspend", [cast.org], reason="Fraud review")

    assert again.status_code == 400
    assert "already suspended" in again.content.decode()
    assert AuditLog.objects.filter(action="billing.organization_suspended").count() == 1


def test_unsuspend_lets_jobs_in_again(cast, staff):
    subscribe(cast.org, Plan.objects.get(code="pro"), status="suspended")

    response = _act(staff, "unsuspend", [cast.org], reason="Paid")

    assert response.status_code == 302
    assert Subscription.objects.get(organization=cast.org).status == "active"
    assert AuditLog.objects.get(action="billing.organization_unsuspended").data["reason"] == "Paid"


def test_unsuspending_some_reports_the_others(cast, staff):
    subscribe(cast.org, Plan.objects.get(code="pro"), status="suspended")

    response = _act(staff, "unsuspend", [cast.org, cast.outsider_org], reason="Paid")

    assert response.status_code == 302
    notes = [str(m) for m in response.wsgi_request._messages]
    assert "1 organization(s) unsuspended." in notes
    assert "Globex: Globex is not suspended." in notes


def test_non_staff_cannot_use_the_actions(cast, client):
    client.force_login(cast.owner)

    response = _act(client, "grant_credits", [cast.org], tokens=1000, reason="myself")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not LedgerEntry.objects.exists()


def test_the_organization_page_shows_plan_subscription_and_this_periods_usage(cast, staff):
    # given: Acme on Pro, with 1,200 tokens used and 30 GPU seconds billed this period
    subscription = subscribe(cast.org, Plan.objects.get(code="pro"))
    account = ensure_billing_account(cast.org)
    BillingAccount.objects.filter(pk=account.pk).update(tokens_used_in_period=1_200)
    charge_compute(organization=cast.org, reference="recommendation:admin", seconds="30", project=cast.project)

    # when
    response = staff.get(reverse("admin:organizations_organization_change", args=[cast.org.pk]))

    # then: a read-only Billing section, linking to the subscription
    html = response.content.decode()
    assert response.status_code == 200
    billing = html[html.index('class="module aligned billing-summary"') :]
    assert "Pro" in billing and "Active" in billing
    assert reverse("admin:billing_subscription_change", args=[subscription.pk]) in billing
    assert "1,200 of 3,000,000 tokens used, 0 held by running jobs, $0.02 billed" in billing
    assert 'name="plan"' not in html  # shown, not editable


def test_the_add_organization_page_has_no_billing_section(staff):
    response = staff.get(reverse("admin:organizations_organization_add"))

    assert response.status_code == 200
    assert "billing-summary" not in response.content.decode()
