"""End to end in headless Chromium: sign up, confirm the email, create an organization, a project and
an API key, then call the REST API with that key.

Runs against pytest-django's ``live_server`` (in-process, so the locmem outbox is readable here).
Debian's ``/usr/bin/chromium`` is driven through Playwright's sync API; nothing is downloaded.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.core import mail

from tests.support.browser import SCREENSHOTS

pytestmark = pytest.mark.browser

PASSWORD = "a-long-unusual-passphrase-42"
def _api_get(url: str, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_signup_to_api_call(browser_page: Any, live_server: Any) -> None:
    page = browser_page
    base = live_server.url

    # Sign up.
    page.goto(f"{base}/accounts/signup/")
    page.screenshot(path=str(SCREENSHOTS / "loom-signup.png"))
    page.fill("input[name=email]", "marketer@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/accounts/confirm-email/$"))
    assert "Check your email" in page.content()

    # Confirm the address with the emailed link.
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["marketer@example.com"]
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[0].body)
    assert link, mail.outbox[0].body
    page.goto(link.group(0))
    page.click("button:has-text('Confirm')")

    # Signed in, with no organization yet: create one.
    page.wait_for_url(re.compile(r"/organizations/new/$"))
    page.fill("input[name=name]", "Acme Marketing")
    page.click("button:has-text('Create organization')")
    page.wait_for_url(f"{base}/")
    assert "Acme Marketing" in page.text_content(".switcher")

    # Create a project.
    page.click("a:has-text('New project')")
    page.fill("input[name=name]", "Spring launch")
    page.fill("textarea[name=description]", "Tone: warm, playful. Audience: young families.")
    page.select_option("select[name=default_language]", "de")
    page.click("button:has-text('Create project')")
    page.wait_for_url(re.compile(r"/projects/[0-9a-f-]{36}/$"))
    assert page.text_content("h1") == "Spring launch"
    page.goto(f"{base}/")
    page.screenshot(path=str(SCREENSHOTS / "loom-dashboard.png"), full_page=True)

    # Create a write key and read its secret off the page.
    page.click("nav >> text=API keys")
    page.fill("input[name=name]", "CI pipeline")
    page.check("input[name=scope][value=write]")
    page.click("button:has-text('Create key')")
    secret = page.input_value("#api-key-secret")
    assert re.fullmatch(r"loom_[A-Za-z0-9]+_[A-Za-z0-9_-]+", secret)
    page.screenshot(path=str(SCREENSHOTS / "loom-key-created.png"), full_page=True)

    # The key works against the REST API and sees the project.
    status, body = _api_get(f"{base}/api/v1/projects/", secret)
    assert status == 200, body
    assert [p["name"] for p in body["results"]] == ["Spring launch"]

    # The secret is never shown again.
    page.goto(f"{base}/api-keys/")
    assert secret not in page.content()
    page.screenshot(path=str(SCREENSHOTS / "loom-api-keys.png"), full_page=True)

    # Revoke inline (htmx, CSRF token from the layout's hx-headers): the row updates in place
    # and the key stops working at once.
    url_before = page.url
    page.click("button:has-text('Revoke')")
    page.wait_for_selector("tr.is-inactive >> text=Revoked")
    assert page.url == url_before
    assert "stops working immediately" in page.text_content("#messages")
    status, _ = _api_get(f"{base}/api/v1/projects/", secret)
    assert status == 401

    page.goto(f"{base}/members/")
    page.screenshot(path=str(SCREENSHOTS / "loom-members.png"), full_page=True)
