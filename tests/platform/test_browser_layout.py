"""Layout facts at desktop widths, in headless Chromium: the dashboard, a job, billing, customers and the admin.

At 1280, 1366 and 1920 px every top-navigation label is shown whole (Billing, Members and Settings
too, without opening a menu), no page scrolls sideways, and the admin's job list shows its Status
column. Screenshots go to ``$LOOM_SCREENSHOT_DIR`` (default /tmp) as ``loom-layout-<page>-<width>.png``.
No worker: jobs, variants and ledger lines are made directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import User
from billing import formatting, usage
from billing.services import charge_compute
from generation.metering import reserve_for_job, settle_job
from generation.models import GenerationJob, JobStatus, Variant
from organizations.models import Organization, Role
from projects.models import Project
from tests.support.billing import make_jobs, make_plan, set_usage, subscribe
from tests.support.browser import SCREENSHOTS
from tests.support.factories import MembershipFactory, OrganizationFactory, ProjectFactory, UserFactory
from tests.support.generation_factories import VariantFactory
from tests.support.recommendation_factories import CustomerFactory
from tests.support.web_generation import job_for, succeeded_job

pytestmark = pytest.mark.browser

WIDTHS = (1280, 1366, 1920)
HEIGHT = 900
#: The top navigation of an owner who is also staff, in order.
NAV_LABELS = [
    "Overview", "Projects", "Generate", "History", "Bulk", "Customers", "Experiments",
    "Members", "Billing", "Settings", "API keys", "Admin",
]

#: For each nav link: its text, whether its text is cut, and whether its box lies inside the nav and the window.
_NAV_FACTS = """() => {
  const nav = document.querySelector("nav.nav");
  const box = nav.getBoundingClientRect();
  return {
    navScrolls: nav.scrollWidth > nav.clientWidth,
    links: [...nav.querySelectorAll("a")].map((a) => {
      const r = a.getBoundingClientRect();
      const style = getComputedStyle(a);
      return {
        text: a.textContent.trim(),
        cut: a.scrollWidth > a.clientWidth,
        shown: r.width > 0 && r.height > 0 && style.visibility !== "hidden" && style.display !== "none",
        inside: r.left >= box.left - 0.5 && r.right <= box.right + 0.5 && r.left >= 0 && r.right <= window.innerWidth,
      };
    }),
  };
}"""
_OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


@dataclass
class World:
    owner: User
    organization: Organization
    project: Project
    job: GenerationJob


def _world() -> World:
    """Acme Outdoor Supplies: a staff owner, a finished three-variant job, usage (tokens and compute), customers."""
    owner = UserFactory(email="olivia.owner@acme-outdoor.example", is_staff=True, is_superuser=True)
    organization = OrganizationFactory(name="Acme Outdoor Supplies")
    MembershipFactory(organization=organization, user=owner, role=Role.OWNER)
    project = ProjectFactory(organization=organization, name="Spring launch")
    ProjectFactory(organization=organization, name="Autumn catalogue")
    plan = make_plan(
        "metered", name="Metered", included_tokens=10_000, overage_allowed=True, monthly_price=Decimal("49"),
        price_per_1k_tokens=Decimal("0.020000"), price_per_gpu_second=Decimal("0.000600"),
    )
    subscribe(organization, plan)
    for tokens in (2_400, 900):
        job = make_jobs(project, 1, requested_by=owner)[0]
        reserve_for_job(job=job)
        settle_job(job=set_usage(job, prompt=tokens // 2, completion=tokens - tokens // 2))
    charge_compute(organization=organization, reference="recommendation:layout", seconds="12", project=project)
    job = succeeded_job(project, variants=3, requested_by=owner)
    for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED):
        job_for(project, status=status, requested_by=owner)
    for n in range(3):
        CustomerFactory(project=project, external_id=f"C-{n:04d}", attributes={"name": f"Customer {n}"})
    return World(owner=owner, organization=organization, project=project, job=job)


def _sign_in(page: Any, base: str, user: User) -> None:
    """A session made in process and handed to the browser as its cookie (no login form to wait on)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base}])


def _open(page: Any, url: str, name: str, width: int) -> None:
    page.goto(url)
    page.wait_for_load_state("load")
    page.screenshot(path=str(SCREENSHOTS / f"loom-layout-{name}-{width}.png"), full_page=True)
    assert page.evaluate(_OVERFLOW) <= 0, f"{name} scrolls sideways at {width} px"


def _assert_nav_whole(page: Any, name: str, width: int) -> None:
    facts = page.evaluate(_NAV_FACTS)
    assert [link["text"] for link in facts["links"]] == NAV_LABELS, name
    assert not facts["navScrolls"], f"the nav of {name} scrolls at {width} px"
    for link in facts["links"]:
        assert link["shown"] and link["inside"] and not link["cut"], f"{link['text']!r} is cut on {name} at {width} px"


def _assert_billing_text(text: str, organization: Organization) -> None:
    """12 GPU seconds at $0.0006 are billed as $0.01: in cents, unit prices only as long as needed, the period once."""
    assert "No usage yet" not in text
    assert "$49.00 / month" in text and "$0.02 per 1,000" in text and "$0.0006 per GPU second" in text
    assert "$0.01" in text and "0.000600" not in text and "0.020000" not in text
    period = usage.parse_range(organization, start=None, end=None)
    assert text.count(formatting.period(period.first_day, period.last_day)) == 1


@pytest.mark.parametrize("width", WIDTHS)
def test_dashboard_pages_show_the_whole_nav_without_sideways_scrolling(
    browser_page: Any, live_server: Any, width: int
) -> None:
    world = _world()
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": width, "height": HEIGHT})
    _sign_in(page, base, world.owner)

    pages = [
        ("dashboard", "/", "Overview"),
        ("job", f"/jobs/{world.job.pk}/", "Product description"),
        ("billing", "/billing/", "Billing"),
        ("customers", "/recommendations/customers/", "Customers"),
    ]
    for name, path, heading in pages:
        _open(page, f"{base}{path}", name, width)
        assert page.text_content("main h1").strip() == heading, name
        _assert_nav_whole(page, name, width)
        if name == "billing":
            _assert_billing_text(page.text_content("main"), world.organization)

    # The nav's "Customers" leads to a page called Customers, not to one called something else.
    page.goto(f"{base}/")
    page.click("nav.nav >> text=Customers")
    page.wait_for_load_state("load")
    assert page.text_content("main h1").strip() == "Customers"
    assert page.title().startswith("Customers")


@pytest.mark.parametrize("width", WIDTHS)
def test_admin_pages_fit_and_the_job_list_shows_its_status_column(
    browser_page: Any, live_server: Any, width: int
) -> None:
    world = _world()
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": width, "height": HEIGHT})
    _sign_in(page, base, world.owner)

    _open(page, f"{base}/admin/", "admin", width)
    sections = [caption.strip() for caption in page.locator("#content-main .module caption").all_text_contents()]
    assert len(sections) == len(set(sections)), sections
    models = page.locator("#content-main .module th[scope=row]").all_text_contents()
    assert {"Bulk batches", "Webhook deliveries"} <= {m.strip() for m in models}

    _open(page, f"{base}/admin/organizations/organization/{world.organization.pk}/change/", "admin-org", width)
    billing = page.text_content("fieldset.billing-summary")
    assert "Metered" in billing and "Active" in billing
    assert "3,300 of 10,000 tokens" in billing

    _open(page, f"{base}/admin/generation/generationjob/", "admin-jobs", width)
    header = page.locator("th.column-status")
    box = header.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, f"Status off-screen at {width} px"
    results = page.locator("#changelist .results").bounding_box()
    assert results is not None and box["x"] + box["width"] <= results["x"] + results["width"]
    assert page.evaluate("() => { const r = document.querySelector('#changelist .results'); "
                         "return r.scrollWidth <= r.clientWidth; }"), f"the job list scrolls at {width} px"


def test_the_regenerating_notice_goes_when_the_new_take_arrives(browser_page: Any, live_server: Any) -> None:
    # given: the job page of a finished three-variant job
    world = _world()
    page, base = browser_page, live_server.url
    _sign_in(page, base, world.owner)
    page.goto(f"{base}/jobs/{world.job.pk}/")

    # when: variant 3 is regenerated (the task is not sent: this test stores the new take itself)
    with mock.patch("generation.dispatch.regenerate_variant") as delay:
        page.click("#variant-2 >> button:has-text('Regenerate')")
        page.wait_for_selector("#messages >> text=Regenerating variant 3")
        page.wait_for_selector("#variant-2 >> text=Writing a new take")
    delay.assert_called_once()
    old = Variant.objects.get(job=world.job, index=2, is_current=True)
    Variant.objects.filter(pk=old.pk).update(is_current=False)
    VariantFactory(job=world.job, index=2, revision=1, text="A fresh take on the trail runner.")

    # then: the card shows the new take and the notice says it is done
    page.wait_for_selector("#variant-2 >> text=A fresh take on the trail runner.", timeout=10_000)
    page.wait_for_selector("#messages >> text=Variant 3 has a new take.")
    assert "Regenerating" not in page.text_content("#messages")
    assert page.locator("#variant-2 .spinner").count() == 0
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / "loom-layout-regenerated.png"))
