"""Generate copy in headless Chromium against a real generation worker and the real bundled model.

Sign in, pick "Product description" in the gallery, fill the form, submit, and watch the job page
update itself (htmx polling, no reload) until both variants are there with their constraint
reports and brand-fit scores; then approve, rate and regenerate. Screenshots go to /tmp/loom-gen-*.png.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from generation.models import BrandVoice, GenerationJob, JobStatus, Variant
from organizations.models import Role
from tests.support.browser import SCREENSHOTS
from tests.support.factories import PASSWORD, MembershipFactory, OrganizationFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.worker]

#: The first job of a session waits for the worker to load the model (~25 s on a CPU); later ones take seconds.
JOB_TIMEOUT_MS = 180_000
def _sign_in(page: Any, base: str, user: Any) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"loom-gen-{name}.png"), full_page=True)


@pytest.mark.timeout(480)
def test_generate_from_the_gallery_with_live_progress(browser_page: Any, live_server: Any, generation_worker: Any):
    page, base = browser_page, live_server.url
    user = UserFactory(email="marketer@example.com")
    organization = OrganizationFactory(name="Acme Outdoor")
    MembershipFactory(organization=organization, user=user, role=Role.EDITOR)
    project = ProjectFactory(organization=organization, name="Spring launch")
    BrandVoice.objects.create(
        project=project,
        tone="Warm, outdoorsy",
        audience="Weekend hikers",
        words_to_use=["trail", "grip"],
        example_texts=["Grip the trail, whatever the weather."],
    )

    _sign_in(page, base, user)

    # The gallery, then the product description form.
    page.click("nav >> text=Generate")
    page.wait_for_url(f"{base}/templates/")
    _shot(page, "gallery")
    page.click("a.template-card:has-text('Product description')")
    page.wait_for_url(re.compile(r"/templates/[0-9a-f-]{36}/generate/$"))
    page.get_by_label("Product name").fill("Trail runner 2")
    page.get_by_label("Key features").fill("Light, grippy sole; recycled upper; 260 g")
    page.get_by_label("Target audience").fill("Weekend hikers")
    page.select_option("select[name=project]", label="Spring launch")
    page.fill("input[name=num_variants]", "2")
    page.fill("input[name=max_new_tokens]", "40")
    _shot(page, "form")
    page.click("button:has-text('Generate')")

    # The job page updates itself: no reload, no navigation.
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    job_url = page.url
    page.evaluate("window.loomSamePage = true")
    first_status = page.text_content("#job-status").strip()
    _shot(page, "progress")
    assert first_status in {"Queued", "Running"}, first_status
    page.wait_for_selector("#job-status:has-text('Succeeded')", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.loomSamePage === true"), "the page was reloaded"
    assert page.url == job_url

    cards = page.locator("article.variant")
    assert cards.count() == 2
    for i in range(2):
        card = cards.nth(i)
        assert card.locator(".variant-text").inner_text().strip()
        assert card.locator(".constraint-report .checks li").count() >= 2
        assert re.fullmatch(r"\d{1,3}%", card.locator(".fit-value").inner_text().strip())
    _shot(page, "job")

    job = GenerationJob.objects.get(pk=job_url.rstrip("/").rsplit("/", 1)[1])
    assert job.status == JobStatus.SUCCEEDED and job.requested_by == user and job.max_new_tokens == 40
    assert job.inputs["product"] == "Trail runner 2"

    # Approve the first variant inline.
    page.click("#variant-0 button:has-text('Approve')")
    page.wait_for_selector("#variant-0 .badge:has-text('Approved')")
    assert "approved" in page.text_content("#messages")
    variant = Variant.objects.get(job=job, index=0, is_current=True)
    assert variant.approved and variant.approved_by == user
    assert not Variant.objects.get(job=job, index=1, is_current=True).approved
    _shot(page, "approved")

    # Rate the second one; then the history lists the job.
    page.click("#variant-1 button[aria-label='Rate 4 of 5']")
    page.wait_for_selector("#variant-1 .variant-facts:has-text('4/5')")
    assert Variant.objects.get(job=job, index=1, is_current=True).rating == 4

    # Regenerate the second one: its card shows the new take when the worker has stored it.
    page.click("#variant-1 button:has-text('Regenerate')")
    page.wait_for_selector("#variant-1 .badge:has-text('Take 2')", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.loomSamePage === true"), "the page was reloaded"
    assert Variant.objects.get(job=job, index=1, is_current=True).revision == 1
    assert Variant.objects.get(job=job, index=0, is_current=True).approved
    _shot(page, "regenerated")
    page.click("nav >> text=History")
    page.wait_for_selector("table.jobs-table >> text=Trail runner 2")
    _shot(page, "history")
    page.goto(f"{base}/projects/{project.pk}/brand-voice/")
    _shot(page, "brand-voice")


BULK_CSV = (
    b"product,features,audience\n"
    b'Trail runner 2,"light, grippy",weekend hikers\n'
    b",a row without its product,\n"
    b"Rain shell,packable,commuters\n"
)


@pytest.mark.timeout(480)
def test_bulk_upload_shows_rows_finishing_live(browser_page: Any, live_server: Any, generation_worker: Any):
    page, base = browser_page, live_server.url
    user = UserFactory(email="bulk@example.com")
    organization = OrganizationFactory(name="Acme Outdoor")
    MembershipFactory(organization=organization, user=user, role=Role.EDITOR)
    ProjectFactory(organization=organization, name="Spring launch")
    _sign_in(page, base, user)

    page.click("nav >> text=Bulk")
    page.select_option("select[name=template]", label="Product description")
    page.set_input_files("input[name=file]", files=[{"name": "shoes.csv", "mimeType": "text/csv", "buffer": BULK_CSV}])
    page.fill("input[name=max_new_tokens]", "24")
    _shot(page, "bulk")
    page.click("button:has-text('Upload and start')")

    page.wait_for_url(re.compile(r"/bulk/[0-9a-f-]{36}/$"))
    page.evaluate("window.loomSamePage = true")
    assert "Line 3" in page.text_content(".bad-rows") and "product" in page.text_content(".bad-rows")
    _shot(page, "batch-running")
    page.wait_for_selector("#batch-status:has-text('Done')", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.loomSamePage === true"), "the page was reloaded"
    assert "2 succeeded" in page.text_content("#batch-live")
    _shot(page, "batch-done")

    # The results download carries both good rows with their text, and the rejected one.
    response = page.request.get(base + page.get_attribute("a:has-text('Download results CSV')", "href"))
    assert response.status == 200
    rows = list(csv.DictReader(io.StringIO(response.text())))
    assert [(r["line"], r["status"]) for r in rows] == [("2", "succeeded"), ("3", "rejected"), ("4", "succeeded")]
    assert rows[0]["variant_1"].strip() and rows[2]["variant_1"].strip()
