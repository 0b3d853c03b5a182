"""GET /api/v1/usage (billed usage by day, project, key, user; totals against the plan) and /api/v1/subscription."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apikeys.models import ApiKey
from audit.models import AuditLog
from billing.models import LedgerEntry, Plan, Subscription
from billing.services import change_plan, charge_compute, current_plan
from generation.metering import reserve_for_job, settle_job
from tests.support.billing import make_jobs, make_plan, set_usage, subscribe

pytestmark = pytest.mark.django_db

USAGE = "/api/v1/usage"
SUBSCRIPTION = "/api/v1/subscription"


@dataclass
class Usage:
    key: ApiKey
    yesterday: str
    today: str


def _charge(project, *, prompt: int, completion: int, api_key=None, user=None, days_ago: int = 0):
    job = make_jobs(project, 1, api_key=api_key, requested_by=user)[0]
    reserve_for_job(job=job)
    settle_job(job=set_usage(job, prompt=prompt, completion=completion))
    if days_ago:
        LedgerEntry.objects.filter(job=job).update(created_at=timezone.now() - timedelta(days=days_ago))
    return job


@pytest.fixture
def usage(cast, key_for) -> Usage:
    """Acme on a 1,000-token plan with overage at 0.02 per 1,000 and 0.001 per GPU-second:

    yesterday  Spring, key "write key"   150 tokens (100 in, 50 out), 0.5 s
    today      Autumn, editor            500 tokens, 0.5 s
    today      Spring, owner             800 tokens, 0.5 s: 450 beyond the allowance -> 0.009000
    today      Spring, compute           12.5 s -> 0.012500
    running    Spring, owner             held, not billed
    and Globex (the outsider) has a charge of its own.
    """
    plan = make_plan(
        "metered",
        included_tokens=1_000,
        overage_allowed=True,
        price_per_1k_tokens=Decimal("0.02"),
        price_per_gpu_second=Decimal("0.001"),
    )
    subscribe(cast.org, plan)
    _, key, _ = key_for("write")
    _charge(cast.project, prompt=100, completion=50, api_key=key, days_ago=1)
    _charge(cast.sibling_project, prompt=300, completion=200, user=cast.editor)
    _charge(cast.project, prompt=400, completion=400, user=cast.owner)
    charge_compute(organization=cast.org, reference="recommendation:r1", seconds="12.5", project=cast.project)
    reserve_for_job(job=make_jobs(cast.project, 1, requested_by=cast.owner)[0])
    _charge(cast.outsider_project, prompt=7000, completion=7000, user=cast.outsider)
    today = timezone.now().date()
    return Usage(key=key, yesterday=(today - timedelta(days=1)).isoformat(), today=today.isoformat())


def _by(rows, field="group"):
    return {row[field]: row for row in rows}


def test_usage_by_day_covers_the_period_with_totals_against_the_plan(cast, client_for, usage):
    # when
    response = client_for(cast.viewer).get(USAGE)

    # then: one row per day of the current period, the charges on their days
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["group_by"] == "day"
    days = _by(body["results"])
    assert len(days) == 31  # a 30-day period from mid-day to mid-day touches 31 dates
    assert (days[usage.yesterday]["tokens_in"], days[usage.yesterday]["tokens_out"]) == (100, 50)
    assert days[usage.today]["tokens"] == 1300
    assert days[usage.today]["compute_seconds"] == "13.500"  # 12.5 s of recommendation work, 0.5 s per job
    assert days[usage.today]["amount"] == "0.021500"
    assert sum(row["tokens"] for row in body["results"]) == 1450
    assert body["totals"] == {
        "tokens_in": 800,
        "tokens_out": 650,
        "tokens": 1450,
        "compute_seconds": "14.000",
        "amount": "0.021500",
        "jobs": 3,
    }
    # and the allowance of the period against the plan
    held = 2 * (60 + 512)
    allowance = body["allowance"]
    assert allowance["included_tokens"] == 1000
    assert (allowance["used_tokens"], allowance["reserved_tokens"]) == (1450, held)
    assert (allowance["remaining_tokens"], allowance["overage_tokens"]) == (0, 450)
    assert allowance["overage_amount"] == "0.021500"
    assert allowance["percent_used"] == 100
    assert body["plan"]["code"] == "metered"
    assert body["plan"]["price_per_1k_tokens"] == "0.020000"
    assert body["plan"]["api_rate_limit_per_minute"] == 60


def test_usage_by_project(cast, client_for, usage):
    body = client_for(cast.owner).get(USAGE, {"group_by": "project"}).json()

    projects = _by(body["results"])
    assert set(projects) == {str(cast.project.pk), str(cast.sibling_project.pk)}
    spring = projects[str(cast.project.pk)]
    assert (spring["label"], spring["tokens"], spring["compute_seconds"], spring["jobs"]) == (
        "Spring",
        950,
        "13.500",
        2,
    )
    assert projects[str(cast.sibling_project.pk)]["tokens"] == 500
    assert [row["label"] for row in body["results"]] == ["Spring", "Autumn"]  # most tokens first


def test_usage_by_api_key_and_by_user(cast, client_for, usage):
    client = client_for(cast.owner)

    keys = _by(client.get(USAGE, {"group_by": "api_key"}).json()["results"])
    users = _by(client.get(USAGE, {"group_by": "user"}).json()["results"])

    assert keys[str(usage.key.pk)]["tokens"] == 150
    assert keys[str(usage.key.pk)]["label"] == f"write key ({usage.key.masked})"
    assert keys[None]["tokens"] == 1300 and keys[None]["label"] == "No API key (signed-in members)"
    assert users[str(cast.editor.pk)]["tokens"] == 500
    assert users[str(cast.owner.pk)]["label"] == "owner@acme.test"
    assert users[None]["tokens"] == 150


def test_an_explicit_range_counts_its_days_only(cast, client_for, usage):
    body = client_for(cast.owner).get(USAGE, {"start": usage.yesterday, "end": usage.yesterday}).json()

    assert [row["group"] for row in body["results"]] == [usage.yesterday]
    assert body["totals"]["tokens"] == 150
    assert body["start"].startswith(usage.yesterday) and body["end"].startswith(usage.today)


def test_a_project_key_sees_its_project_only(cast, key_for, usage):
    client, _, _ = key_for("read", project=cast.sibling_project)

    body = client.get(USAGE, {"group_by": "project"}).json()

    assert [row["group"] for row in body["results"]] == [str(cast.sibling_project.pk)]
    assert body["totals"]["tokens"] == 500
    assert body["allowance"] is None  # the organization's balance is not the project's to see
    assert body["plan"]["code"] == "metered"


def test_keys_and_every_member_read_usage(cast, client_for, key_for, usage):
    read_key, _, _ = key_for("read")

    responses = [client_for(user).get(USAGE) for user in (cast.viewer, cast.editor, cast.admin)]
    responses.append(read_key.get(USAGE))

    assert [r.status_code for r in responses] == [200] * 4
    assert {r.json()["totals"]["tokens"] for r in responses} == {1450}


def test_outsider_sees_none_of_acmes_usage(cast, client_for, outsider_key, usage):
    for client in (client_for(cast.outsider), outsider_key):
        body = client.get(USAGE, {"group_by": "project"}).json()

        assert body["totals"]["tokens"] == 14000  # Globex's own charge
        assert [row["label"] for row in body["results"]] == ["Secret"]
        assert "Spring" not in str(body) and str(cast.project.pk) not in str(body)
        assert body["plan"]["code"] == "enterprise"


def test_usage_needs_credentials(db):
    from rest_framework.test import APIClient

    assert APIClient().get(USAGE).status_code == 401


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ({"group_by": "week"}, "invalid_group_by", "group_by"),
        ({"start": "2026-13-01"}, "invalid_date", "start"),
        ({"start": "20260101"}, "invalid_date", "start"),
        ({"end": "yesterday"}, "invalid_date", "end"),
        ({"end": "9999-12-31"}, "invalid_range", "end"),
        ({"start": "2026-03-02", "end": "2026-03-01"}, "invalid_range", "end"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "invalid_range", "end"),
        ({"start": "2026-01-01\x00"}, "invalid", "start"),
    ],
)
def test_bad_usage_queries_are_400(cast, client_for, query, code, field):
    response = client_for(cast.owner).get(USAGE, query)

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == code
    assert body["detail"]
    assert field in body["fields"]


def test_the_last_day_there_is_can_be_queried(cast, client_for):
    response = client_for(cast.owner).get(USAGE, {"start": "9999-12-30", "end": "9999-12-31"})

    assert response.status_code == 200
    assert [row["group"] for row in response.json()["results"]] == ["9999-12-30", "9999-12-31"]


def test_a_whole_year_is_fine(cast, client_for):
    response = client_for(cast.owner).get(USAGE, {"start": "2025-01-01", "end": "2025-12-31"})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 365


# --- /api/v1/subscription ----------------------------------------------------------------------


def test_members_read_the_subscription(cast, client_for):
    body = client_for(cast.viewer).get(SUBSCRIPTION).json()

    assert body["plan"]["code"] == "enterprise"  # no subscription: the default plan
    assert body["pending_plan"] is None
    assert body["status"] == "active"
    assert {"free", "starter", "pro", "enterprise"} <= {plan["code"] for plan in body["plans"]}
    # the cap on running experiments, null where the plan has none
    caps = {plan["code"]: plan["max_running_experiments"] for plan in body["plans"]}
    assert (caps["free"], caps["starter"], caps["pro"], caps["enterprise"]) == (1, 3, 20, None)
    assert not Subscription.objects.filter(organization=cast.org).exists()  # reading wrote nothing


def test_admin_schedules_a_plan_change_for_the_period_end(cast, client_for):
    # when
    response = client_for(cast.admin).post(SUBSCRIPTION, {"plan": "pro"}, format="json")

    # then: Pro is pending, the organization stays on its plan until the period ends
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["plan"]["code"], body["pending_plan"]["code"]) == ("enterprise", "pro")
    subscription = Subscription.objects.get(organization=cast.org)
    assert (subscription.plan.code, subscription.pending_plan.code) == ("enterprise", "pro")
    assert current_plan(cast.org).code == "enterprise"
    audit = AuditLog.objects.get(action="billing.plan_change_scheduled")
    assert audit.actor == cast.admin
    assert (audit.data["from_plan"], audit.data["to_plan"]) == ("enterprise", "pro")


def test_choosing_the_current_plan_cancels_a_scheduled_change(cast, client_for):
    client = client_for(cast.owner)
    client.post(SUBSCRIPTION, {"plan": "starter"}, format="json")

    response = client.post(SUBSCRIPTION, {"plan": "enterprise"}, format="json")

    assert response.status_code == 200
    assert response.json()["pending_plan"] is None
    assert Subscription.objects.get(organization=cast.org).pending_plan is None
    assert AuditLog.objects.filter(action="billing.plan_change_canceled").count() == 1
    again = client.post(SUBSCRIPTION, {"plan": "enterprise"}, format="json")
    assert (again.status_code, again.json()["code"]) == (400, "same_plan")


@pytest.mark.parametrize("plan", ["platinum", "' OR 1=1 --", "retired"])
def test_unknown_or_inactive_plans_are_400(cast, client_for, plan):
    make_plan("retired", is_active=False)

    response = client_for(cast.owner).post(SUBSCRIPTION, {"plan": plan}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] in {"unknown_plan", "invalid"}
    assert "plan" in response.json()["fields"]
    assert not Subscription.objects.filter(organization=cast.org).exists()


def test_a_downgrade_below_this_periods_usage_is_refused(cast, client_for):
    # given: 5,000 tokens used this period, and a plan that includes 1,000
    plan = make_plan("roomy", included_tokens=100_000)
    subscribe(cast.org, plan)
    _charge(cast.project, prompt=2_500, completion=2_500, user=cast.owner)
    make_plan("small", included_tokens=1_000)

    # when
    response = client_for(cast.owner).post(SUBSCRIPTION, {"plan": "small"}, format="json")

    # then
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "usage_exceeds_plan"
    assert "5,000 tokens" in body["detail"] and "1,000" in body["detail"]
    assert Subscription.objects.get(organization=cast.org).pending_plan is None


def test_a_plan_with_fewer_members_than_the_organization_has_is_refused(cast, client_for):
    make_plan("tiny", included_tokens=1_000_000, max_members=2)  # Acme has 4 members

    response = client_for(cast.owner).post(SUBSCRIPTION, {"plan": "tiny"}, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "usage_exceeds_plan")
    assert "4 members" in response.json()["detail"]


def test_editors_viewers_and_keys_cannot_change_the_plan(cast, client_for, key_for):
    write_key, _, _ = key_for("write")
    callers = [client_for(cast.editor), client_for(cast.viewer), write_key]

    responses = [caller.post(SUBSCRIPTION, {"plan": "pro"}, format="json") for caller in callers]

    assert [r.status_code for r in responses] == [403, 403, 403]
    assert {r.json()["code"] for r in responses} == {"permission_denied"}
    assert not Subscription.objects.filter(organization=cast.org).exists()


def test_a_project_key_cannot_reach_the_subscription(cast, key_for):
    client, _, _ = key_for("read", project=cast.project)

    assert client.get(SUBSCRIPTION).status_code == 403


def test_the_outsider_changes_only_their_own_plan(cast, client_for):
    response = client_for(cast.outsider).post(SUBSCRIPTION, {"plan": "pro"}, format="json")

    assert response.status_code == 200
    assert Subscription.objects.get(organization=cast.outsider_org).pending_plan.code == "pro"
    assert not Subscription.objects.filter(organization=cast.org).exists()


def test_a_canceled_subscription_restarts_on_the_default_plan(cast):
    old = subscribe(cast.org, Plan.objects.get(code="pro"), status="canceled")

    subscription = change_plan(actor=cast.owner, organization=cast.org, plan_code="starter")

    assert subscription.pk == old.pk
    assert (subscription.status, subscription.plan.code, subscription.pending_plan.code) == (
        "active",
        "enterprise",
        "starter",
    )


def test_options_describes_the_plan_change(cast, client_for):
    response = client_for(cast.owner).options(SUBSCRIPTION)

    assert response.status_code == 200
    assert "plan" in response.json()["actions"]["POST"]
