"""The billing dashboard: allowance and usage for every member, plan changes for admins and the owner."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from apikeys.services import create_api_key
from audit.models import AuditLog
from billing import formatting
from billing.charts import compact, nice_ceiling, stacked_bars
from billing.models import LedgerEntry, Plan, Subscription
from billing.services import charge_compute
from billing.usage import Series
from generation.metering import reserve_for_job, settle_job
from tests.support.billing import make_jobs, make_plan, set_usage, subscribe
from tests.support.browser import SCREENSHOTS
from tests.support.factories import PASSWORD, MembershipFactory, OrganizationFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGE = "/billing/"


def _charge(project, tokens: int, *, api_key=None, user=None, days_ago: int = 0):
    job = make_jobs(project, 1, api_key=api_key, requested_by=user)[0]
    reserve_for_job(job=job)
    settle_job(job=set_usage(job, prompt=tokens // 2, completion=tokens - tokens // 2))
    if days_ago:
        LedgerEntry.objects.filter(job=job).update(created_at=timezone.now() - timedelta(days=days_ago))


@pytest.fixture
def metered(cast, key_for):
    """Acme on a 10,000-token plan: Spring used 6,000 (2,000 of them through a key, yesterday), Autumn 1,500."""
    plan = make_plan(
        "metered", name="Metered", included_tokens=10_000, overage_allowed=True, monthly_price=Decimal("49")
    )
    subscribe(cast.org, plan)
    _, key, _ = key_for("write")
    _charge(cast.project, 2_000, api_key=key, days_ago=1)
    _charge(cast.project, 4_000, user=cast.owner)
    _charge(cast.sibling_project, 1_500, user=cast.editor)
    _charge(cast.outsider_project, 9_999, user=cast.outsider)
    return key


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_members_see_plan_allowance_and_usage_by_project(cast, metered):
    # when
    response = _client(cast.viewer).get(PAGE)

    # then: the plan and what is left, with a meter
    assert response.status_code == 200
    html = response.content.decode()
    assert "Metered plan" in html
    assert "<strong>2,500</strong> tokens left of 10,000" in html
    assert 'aria-valuenow="75"' in html
    # the chart draws both projects, and the table has their numbers
    assert html.count("<rect ") >= 3
    assert "Spring, " in html and "6,000" in html and "Autumn" in html
    rows = response.context["rows"]
    assert [(row["label"], row["tokens"]) for row in rows] == [("Spring", 6_000), ("Autumn", 1_500)]
    # but a viewer cannot change the plan
    assert 'action="/billing/plan/"' not in html
    assert "Admins and the owner can change the plan" in html
    # and nothing of Globex's
    assert "9,999" not in html and "Secret" not in html


def test_usage_by_api_key_swaps_in_with_htmx(cast, metered):
    client = _client(cast.editor)

    fragment = client.get(PAGE, {"by": "api_key"}, HTTP_HX_REQUEST="true")
    full = client.get(PAGE, {"by": "api_key"})

    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert html.lstrip().startswith('<section class="section usage" id="usage"')
    assert "<html" not in html
    assert f"write key ({metered.masked})" in html
    assert "No API key (signed-in members)" in html
    assert [row["tokens"] for row in fragment.context["rows"]] == [5_500, 2_000]
    assert "<html" in full.content.decode() and "No API key (signed-in members)" in full.content.decode()


def test_an_unknown_breakdown_falls_back_to_projects(cast, metered):
    response = _client(cast.owner).get(PAGE, {"by": "<script>"})

    assert response.status_code == 200
    assert response.context["by"] == "project"
    assert "<script>" not in response.content.decode()


def test_outsider_sees_only_their_own_billing(cast, metered):
    html = _client(cast.outsider).get(PAGE).content.decode()

    # Globex's own plan and usage (plans themselves are a catalog everyone chooses from)
    assert "Enterprise plan" in html and "Metered plan" not in html
    assert "Secret" in html and "9,999" in html
    for acme in ("Spring", "Autumn", "6,000", "1,500", metered.masked):
        assert acme not in html


def test_admin_schedules_a_plan_change_for_the_period_end(cast, metered):
    client = _client(cast.admin)
    end = Subscription.objects.get(organization=cast.org).current_period_end

    response = client.post("/billing/plan/", {"plan": "pro"}, follow=True)

    assert response.status_code == 200
    html = response.content.decode()
    assert f"You move to Pro on {end.day} {end:%B %Y}" in html
    assert "Changes to <strong>Pro</strong>" in html
    subscription = Subscription.objects.get(organization=cast.org)
    assert (subscription.plan.code, subscription.pending_plan.code) == ("metered", "pro")
    assert AuditLog.objects.filter(action="billing.plan_change_scheduled", actor=cast.admin).exists()


def test_admin_cancels_a_scheduled_change(cast, metered):
    client = _client(cast.owner)
    client.post("/billing/plan/", {"plan": "pro"})

    response = client.post("/billing/plan/cancel/", follow=True)

    assert response.status_code == 200
    assert "The scheduled change is canceled" in response.content.decode()
    assert Subscription.objects.get(organization=cast.org).pending_plan is None
    nothing = client.post("/billing/plan/cancel/")
    assert nothing.status_code == 409
    assert "No plan change is scheduled" in nothing.content.decode()


def test_a_downgrade_below_usage_is_refused_with_the_reason(cast, metered):
    make_plan("mini", name="Mini", included_tokens=5_000)

    response = _client(cast.owner).post("/billing/plan/", {"plan": "mini"})

    assert response.status_code == 400
    html = response.content.decode()
    assert "7,500 tokens this period, more than the Mini plan&#x27;s 5,000" in html
    assert Subscription.objects.get(organization=cast.org).pending_plan is None


@pytest.mark.parametrize("plan", ["platinum", "retired", ""])
def test_an_unknown_or_inactive_plan_is_a_form_error(cast, metered, plan):
    make_plan("retired", is_active=False)

    response = _client(cast.owner).post("/billing/plan/", {"plan": plan})

    assert response.status_code == 400
    html = response.content.decode()
    assert "There is no plan" in html or "This field is required" in html
    assert Subscription.objects.get(organization=cast.org).pending_plan is None


def test_the_plan_form_lists_active_plans_for_admins(cast, metered):
    make_plan("retired", name="Retired", is_active=False)

    html = _client(cast.admin).get(PAGE).content.decode()

    options = re.findall(r'<option value="([^"]+)"', html)
    assert {"free", "starter", "pro", "enterprise", "metered"} == set(options)
    assert "Metered: $49.00/month, 10k tokens (current)" in html


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_editors_and_viewers_cannot_change_the_plan(cast, metered, role):
    client = _client(getattr(cast, role))

    change = client.post("/billing/plan/", {"plan": "pro"})
    cancel = client.post("/billing/plan/cancel/")

    assert (change.status_code, cancel.status_code) == (403, 403)
    assert Subscription.objects.get(organization=cast.org).pending_plan is None


def test_stripe_buttons_only_where_stripe_is_configured(cast, metered):
    Plan.objects.filter(code="pro").update(stripe_price_id="price_pro")
    Subscription.objects.filter(organization=cast.org).update(stripe_customer_id="cus_123")
    admin, viewer = _client(cast.admin), _client(cast.viewer)

    without = admin.get(PAGE).content.decode()
    with override_settings(STRIPE_SECRET_KEY="sk_test_local"):
        with_stripe = admin.get(PAGE).content.decode()
        for_viewer = viewer.get(PAGE).content.decode()

    assert "Subscribe with Stripe" not in without and "Manage payment in Stripe" not in without
    assert 'action="/billing/stripe/checkout/"' in with_stripe
    stripe_select = re.search(r'<select id="stripe-plan".*?</select>', with_stripe, re.S).group(0)
    assert re.findall(r'<option value="([^"]+)"', stripe_select) == ["pro"]  # plans sold through Stripe only
    assert 'action="/billing/stripe/portal/"' in with_stripe
    assert "Subscribe with Stripe" not in for_viewer


def test_the_page_needs_a_signed_in_member(cast):
    anonymous = Client().get(PAGE)

    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_a_suspended_organization_is_told_so(cast):
    subscribe(cast.org, Plan.objects.get(code="pro"), status="suspended")

    html = _client(cast.viewer).get(PAGE).content.decode()

    assert "This organization is suspended" in html


def test_the_main_navigation_links_to_billing(cast):
    html = _client(cast.viewer).get(PAGE).content.decode()

    assert '<a href="/billing/" aria-current="page">Billing</a>' in html


def test_an_empty_period_says_so(cast):
    html = _client(cast.owner).get(PAGE).content.decode()

    assert "No usage yet this period" in html
    assert "<rect " not in html


def test_compute_only_usage_is_listed(cast):
    charge_compute(organization=cast.org, reference="recommendation:x", seconds="30", project=cast.project)

    response = _client(cast.owner).get(PAGE)

    assert [(row["label"], str(row["compute_seconds"])) for row in response.context["rows"]] == [("Spring", "30.000")]


# --- chart geometry --------------------------------------------------------------------------


def test_stacked_bars_share_one_scale_and_stack_upwards():
    days = [timezone.now().date() + timedelta(days=n) for n in range(3)]
    series = [Series("A", [100, 0, 300], 400), Series("B", [100, 50, 0], 150)]

    chart = stacked_bars(days, series)

    assert [r.height for r in chart.rects] == [32.0, 32.0, 16.0, 96.0]  # 160 px for 500 tokens
    first_a, first_b = chart.rects[0], chart.rects[1]
    assert first_b.y + first_b.height == first_a.y  # B sits on A
    assert first_a.y + first_a.height == 8 + 160  # on the baseline
    assert [g.text for g in chart.gridlines] == ["0", "250", "500"]
    assert [e.label for e in chart.legend] == ["A", "B"]


@pytest.mark.parametrize(("value", "ceiling"), [(0, 1), (1, 1), (7, 10), (120, 200), (3_001, 5_000), (50_000, 50_000)])
def test_nice_ceiling(value, ceiling):
    assert nice_ceiling(value) == ceiling


def test_compact_numbers():
    assert [compact(v) for v in (0, 999, 1_200, 20_000, 3_000_000)] == ["0", "999", "1.2k", "20k", "3M"]


# --- in a browser ------------------------------------------------------------------------------


@pytest.mark.browser
def test_switching_the_breakdown_swaps_the_chart_in_place(browser_page, live_server):
    # given: an organization whose two projects and one key used tokens this period
    user = UserFactory(email="finance@example.com")
    organization = OrganizationFactory(name="Acme Outdoor")
    MembershipFactory(organization=organization, user=user, role="owner")
    subscribe(organization, make_plan("metered", name="Metered", included_tokens=20_000, overage_allowed=True))
    spring, autumn = (
        ProjectFactory(organization=organization, name="Spring"),
        ProjectFactory(organization=organization, name="Autumn"),
    )
    key = create_api_key(actor=user, organization=organization, name="Website", scope="write").api_key
    for days_ago, project, tokens, api_key in [
        (2, spring, 3_000, key),
        (1, autumn, 1_200, None),
        (0, spring, 2_500, None),
    ]:
        _charge(project, tokens, api_key=api_key, user=None if api_key else user, days_ago=days_ago)
    page, base = browser_page, live_server.url
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")

    # when: the Billing page, then "By API key"
    page.click("nav >> text=Billing")
    page.wait_for_url(f"{base}/billing/")
    assert page.text_content(".allowance-figure").split() == ["13,300", "tokens", "left", "of", "20,000"]
    assert page.locator("#usage .legend li").all_text_contents() == ["Spring 5,500", "Autumn 1,200"]
    page.screenshot(path=str(SCREENSHOTS / "loom-billing.png"), full_page=True)
    page.evaluate("window.loomSamePage = true")
    page.click("#usage >> text=By API key")

    # then: the usage section is swapped in place, without a reload
    page.wait_for_selector("#usage .legend li:has-text('Website')")
    assert page.evaluate("window.loomSamePage === true"), "the page was reloaded"
    assert page.locator("#usage .legend li").all_text_contents() == [
        "No API key (signed-in members) 3,700",
        f"Website ({key.masked}) 3,000",
    ]
    assert page.locator("#usage svg rect").count() == 3
    page.screenshot(path=str(SCREENSHOTS / "loom-billing-by-key.png"), full_page=True)


# --- how money and the period are written ---------------------------------------------------------


def _priced_plan() -> Plan:
    return make_plan(
        "priced", name="Priced", included_tokens=10_000, overage_allowed=True, monthly_price=Decimal("49"),
        price_per_1k_tokens=Decimal("0.020000"), price_per_gpu_second=Decimal("0.000600"),
    )


def test_compute_only_usage_is_not_called_no_usage(cast):
    # given: 12 GPU seconds of recommendation training at $0.0006, and no tokens
    subscribe(cast.org, _priced_plan())
    charge_compute(organization=cast.org, reference="recommendation:x", seconds="12", project=cast.project)

    html = _client(cast.owner).get(PAGE).content.decode()

    assert "No usage yet" not in html
    assert "No tokens used this period; the charges below are for compute time." in html
    assert "<dt>Usage billed so far</dt><dd>$0.01</dd>" in html
    assert '<td class="num">$0.01</td>' in html and '<th class="num">$0.01</th>' in html


def test_prices_are_in_cents_and_unit_prices_only_as_long_as_needed(cast):
    subscribe(cast.org, _priced_plan())

    html = _client(cast.owner).get(PAGE).content.decode()

    assert "<dd>$49.00 / month</dd>" in html
    assert "<dd>$0.02 per 1,000</dd>" in html
    assert "<dd>$0.0006 per GPU second</dd>" in html
    assert "0.020000" not in html and "0.000600" not in html
    assert "Priced: $49.00/month, 10k tokens (current)" in html


def test_the_period_is_written_once_in_one_format(cast):
    start = datetime(2026, 3, 1, tzinfo=UTC)
    subscribe(cast.org, _priced_plan(), current_period_start=start, current_period_end=datetime(2026, 4, 1, tzinfo=UTC))

    html = _client(cast.owner).get(PAGE).content.decode()

    assert html.count("1\N{EN DASH}31 Mar 2026") == 1
    assert "1 Mar 2026 to" not in html and "1 Apr 2026 to" not in html and "1 Mar to" not in html
    assert "No usage yet this period." in html


@pytest.mark.parametrize(
    ("amount", "text"),
    [("0", "$0.00"), ("0.0072", "$0.01"), ("0.005", "$0.01"), ("1234.5", "$1,234.50"), ("-3.2", "-$3.20")],
)
def test_money_is_written_in_cents(amount, text):
    assert formatting.money(Decimal(amount)) == text


@pytest.mark.parametrize(
    ("price", "text"),
    [("0", "$0.00"), ("0.020000", "$0.02"), ("0.015000", "$0.015"), ("0.000600", "$0.0006"),
     ("0.000002", "$0.000002"), ("1.500000", "$1.50")],
)
def test_unit_prices_keep_the_digits_they_need(price, text):
    assert formatting.unit_price(Decimal(price)) == text


def test_periods_name_the_year_once():
    assert formatting.period(date(2026, 3, 1), date(2026, 3, 31)) == "1\N{EN DASH}31 Mar 2026"
    assert formatting.period(date(2026, 3, 15), date(2026, 4, 14)) == "15 Mar \N{EN DASH} 14 Apr 2026"
    assert formatting.period(date(2025, 12, 15), date(2026, 1, 14)) == "15 Dec 2025 \N{EN DASH} 14 Jan 2026"
