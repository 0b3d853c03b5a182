"""Webhooks: admins manage them, the secret is shown once, deliveries are signed, retried and logged."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import pytest

from audit.models import AuditLog
from generation.models import JobStatus, Webhook, WebhookDelivery
from generation.webhooks import SIGNATURE_HEADER, decrypt_secret, deliver, schedule_job_webhooks, verify
from tests.support.generation_factories import (
    WEBHOOK_SECRET,
    GenerationJobFactory,
    VariantFactory,
    WebhookDeliveryFactory,
    WebhookFactory,
)

pytestmark = pytest.mark.django_db

HOOKS = "/api/v1/webhooks/"


class Receiver:
    """A real HTTP endpoint on 127.0.0.1: answers with the queued status codes and records each request."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/loom"


@pytest.fixture
def receiver(monkeypatch) -> Iterator[Receiver]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    receiver = Receiver([500, 200])
    thread = threading.Thread(target=receiver.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    thread.join(timeout=5)


def _webhooks(cast):
    """Webhooks of the cast's organizations only: the test database may hold rows other sessions committed."""
    return Webhook.objects.filter(organization__in=[cast.org, cast.outsider_org])


# --- managing webhooks -------------------------------------------------------------------------


def test_admin_creates_a_webhook_and_sees_the_secret_once(cast, client_for):
    client = client_for(cast.admin)

    created = client.post(HOOKS, {"url": "https://hooks.example.com/loom"}, format="json")

    assert created.status_code == 201, created.json()
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and created["Cache-Control"] == "no-store"
    webhook = _webhooks(cast).get()
    assert (webhook.organization, webhook.url, webhook.is_active, webhook.created_by) == (
        cast.org,
        "https://hooks.example.com/loom",
        True,
        cast.admin,
    )
    assert secret not in webhook.encrypted_secret and decrypt_secret(webhook.encrypted_secret) == secret
    assert AuditLog.objects.filter(organization=cast.org, action="webhook.created", actor=cast.admin).count() == 1
    listing, detail = client.get(HOOKS), client.get(f"{HOOKS}{webhook.pk}/")
    assert [w["id"] for w in listing.json()["results"]] == [str(webhook.pk)]
    for response in (listing, detail):
        assert "secret" not in response.content.decode()


def test_a_webhook_url_must_be_http(cast, client_for):
    response = client_for(cast.admin).post(HOOKS, {"url": "ftp://hooks.example.com/"}, format="json")

    assert response.status_code == 400
    assert "url" in response.json()["fields"]
    assert not _webhooks(cast).exists()


@pytest.mark.parametrize("who", ["editor", "write-key"])
def test_only_admins_manage_webhooks(cast, client_for, key_for, who):
    client = client_for(cast.editor) if who == "editor" else key_for("write")[0]
    webhook = WebhookFactory(organization=cast.org)

    calls = [
        client.get(HOOKS),
        client.post(HOOKS, {"url": "https://evil.test/"}, format="json"),
        client.delete(f"{HOOKS}{webhook.pk}/"),
        client.get(f"{HOOKS}{webhook.pk}/deliveries/"),
    ]

    assert [c.status_code for c in calls] == [403] * 4
    assert list(_webhooks(cast)) == [webhook]
    webhook.refresh_from_db()
    assert webhook.is_active


def test_delete_deactivates_and_keeps_the_log(cast, client_for):
    delivery = WebhookDeliveryFactory(webhook__organization=cast.org, job__project=cast.project)
    webhook = delivery.webhook

    response = client_for(cast.admin).delete(f"{HOOKS}{webhook.pk}/")
    again = client_for(cast.admin).delete(f"{HOOKS}{webhook.pk}/")

    assert (response.status_code, again.status_code) == (204, 204)
    webhook.refresh_from_db()
    assert webhook.is_active is False
    assert WebhookDelivery.objects.filter(webhook=webhook).count() == 1
    assert AuditLog.objects.filter(organization=cast.org, action="webhook.deactivated").count() == 1


def test_a_deactivated_webhook_gets_no_new_deliveries(cast):
    WebhookFactory(organization=cast.org, is_active=False)
    job = GenerationJobFactory(project=cast.project, status=JobStatus.SUCCEEDED)

    with mock.patch("generation.dispatch.deliver_webhook"):
        assert schedule_job_webhooks(job.pk) == []


def test_delivery_log_lists_the_webhooks_deliveries(cast, client_for):
    delivery = WebhookDeliveryFactory(
        webhook__organization=cast.org,
        job__project=cast.project,
        attempts=2,
        status="delivered",
        last_status_code=200,
    )
    WebhookDeliveryFactory(webhook__organization=cast.org, job__project=cast.project)  # another webhook's

    response = client_for(cast.admin).get(f"{HOOKS}{delivery.webhook_id}/deliveries/")

    assert response.status_code == 200
    (entry,) = response.json()["results"]
    assert (entry["id"], entry["job"], entry["attempts"], entry["status"], entry["last_status_code"]) == (
        str(delivery.pk),
        str(delivery.job_id),
        2,
        "delivered",
        200,
    )


def test_outsider_cannot_see_acme_webhooks(cast, client_for):
    webhook = WebhookDeliveryFactory(webhook__organization=cast.org, job__project=cast.project).webhook
    client = client_for(cast.outsider)

    assert client.get(HOOKS).json()["count"] == 0
    for response in (
        client.get(f"{HOOKS}{webhook.pk}/"),
        client.get(f"{HOOKS}{webhook.pk}/deliveries/"),
        client.delete(f"{HOOKS}{webhook.pk}/"),
    ):
        assert response.status_code == 404
    webhook.refresh_from_db()
    assert webhook.is_active


# --- delivering --------------------------------------------------------------------------------


def test_delivery_is_signed_retried_after_a_500_and_logged(cast, receiver):
    # given: a finished job and an active webhook pointing at the local receiver (500 first, then 200)
    webhook = WebhookFactory(organization=cast.org, url=receiver.url)
    job = GenerationJobFactory(project=cast.project, status=JobStatus.SUCCEEDED)
    variant = VariantFactory(job=job, index=0, text="Bloom brighter.")
    with mock.patch("generation.dispatch.deliver_webhook"):
        (delivery,) = schedule_job_webhooks(job.pk)

    # when: the first attempt meets the 500
    retry_in = deliver(delivery.pk)

    # then: the attempt is logged and a retry is scheduled
    delivery.refresh_from_db()
    assert retry_in == 5
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.next_attempt_at is not None and delivery.delivered_at is None

    # when: the retry succeeds
    assert deliver(delivery.pk) is None

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    assert deliver(delivery.pk) is None and len(receiver.requests) == 2  # delivered: never sent again
    for headers, body in receiver.requests:
        assert verify(WEBHOOK_SECRET, body, headers[SIGNATURE_HEADER])
        assert not verify(WEBHOOK_SECRET, body + b" ", headers[SIGNATURE_HEADER])
        assert not verify("whsec_wrong", body, headers[SIGNATURE_HEADER])
        assert (headers["X-Loom-Event"], headers["X-Loom-Delivery"]) == ("job.succeeded", str(delivery.pk))
        payload = json.loads(body)
        assert payload["job"]["id"] == str(job.pk)
        assert payload["job"]["variants"][0] == {
            "id": str(variant.pk),
            "index": 0,
            "text": "Bloom brighter.",
            "finish_reason": "stop",
            "constraints_passed": True,
            "brand_fit": 0.8,
        }
    assert webhook.deliveries.count() == 1


def test_an_unreachable_url_is_logged_and_retried(cast):
    webhook = WebhookFactory(organization=cast.org, url="http://127.0.0.1:9/closed")
    job = GenerationJobFactory(project=cast.project, status=JobStatus.FAILED)
    delivery = WebhookDelivery.objects.create(webhook=webhook, job=job, event="job.failed", payload={"a": 1})

    retry_in = deliver(delivery.pk)

    delivery.refresh_from_db()
    assert retry_in == 5
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert "ConnectionError" in delivery.last_error


def test_pending_retries_stop_once_the_webhook_is_deactivated(cast, client_for, receiver):
    webhook = WebhookFactory(organization=cast.org, url=receiver.url)
    job = GenerationJobFactory(project=cast.project, status=JobStatus.SUCCEEDED)
    delivery = WebhookDelivery.objects.create(webhook=webhook, job=job, event="job.succeeded", payload={"a": 1})
    assert deliver(delivery.pk) == 5  # the receiver's 500

    client_for(cast.admin).delete(f"{HOOKS}{webhook.pk}/")

    assert deliver(delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 1, "Webhook deactivated.")
    assert len(receiver.requests) == 1
