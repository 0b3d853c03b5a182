"""Stripe: webhooks signed locally are applied once, forged/stale/malformed ones change nothing; API calls
go to a local stand-in server (``STRIPE_API_BASE``), never to the network."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from audit.models import AuditLog
from billing import invoicing, payments
from billing.models import Invoice, InvoiceLine, InvoiceStatus, StripeEvent, Subscription, SubscriptionStatus
from billing.services import change_plan
from tests.api_routes import db_state
from tests.support.billing import seed_plans, subscribe
from tests.support.factories import OrganizationFactory
from tests.support.invoice_factories import InvoiceFactory

pytestmark = pytest.mark.django_db

SECRET = "whsec_test_secret"
WEBHOOK = "/billing/stripe/webhook/"


def signature(payload: str, *, secret: str = SECRET, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header as Stripe computes it: HMAC-SHA256 of ``"{t}.{payload}"``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event(type_: str, obj: dict[str, Any], *, event_id: str = "evt_1") -> str:
    return json.dumps({"id": event_id, "object": "event", "type": type_, "livemode": False, "data": {"object": obj}})


def deliver(payload: str | bytes, header: str | None = None, client: Client | None = None) -> Any:
    if header is None:
        header = signature(payload.decode() if isinstance(payload, bytes) else payload)
    extra = {"HTTP_STRIPE_SIGNATURE": header}
    # Stripe sends no CSRF token: the endpoint must not need one.
    client = client or Client(enforce_csrf_checks=True)
    return client.post(WEBHOOK, data=payload, content_type="application/json", **extra)


@pytest.fixture
def plans(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    settings.STRIPE_SECRET_KEY = ""
    plans = seed_plans()
    for code in ("starter", "pro"):
        plans[code].stripe_price_id = f"price_{code}"
        plans[code].save()
    return plans


def checkout_completed(organization, plan_code: str = "starter", **extra: Any) -> dict[str, Any]:
    return {
        "id": "cs_test_1",
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "client_reference_id": str(organization.pk),
        "customer": "cus_acme",
        "subscription": "sub_acme",
        "metadata": {"organization_id": str(organization.pk), "plan_code": plan_code},
        **extra,
    }


# --- verification -------------------------------------------------------------------------------


def test_checkout_completed_subscribes_the_organization_once(plans):
    organization = OrganizationFactory()
    payload = event("checkout.session.completed", checkout_completed(organization))

    first = deliver(payload)
    replay = deliver(payload)  # Stripe retries, or an attacker replays it with a fresh signature

    assert first.status_code == 200 and first.json()["duplicate"] is False
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    subscription = Subscription.objects.get(organization=organization)
    assert (subscription.plan.code, subscription.status) == ("starter", SubscriptionStatus.ACTIVE)
    assert (subscription.stripe_customer_id, subscription.stripe_subscription_id) == ("cus_acme", "sub_acme")
    assert subscription.current_period_end > subscription.current_period_start
    stored = StripeEvent.objects.get()
    assert (stored.event_id, stored.type) == ("evt_1", "checkout.session.completed")
    assert stored.outcome == "subscribed to starter"
    assert stored.processed_at is not None and stored.payload["data"]["object"]["customer"] == "cus_acme"
    assert AuditLog.objects.filter(action="billing.stripe_checkout_completed").count() == 1


def test_forged_signature_is_refused_and_changes_nothing(plans):
    organization = OrganizationFactory()
    payload = event("checkout.session.completed", checkout_completed(organization))
    before = db_state()

    forged = deliver(payload, signature(payload, secret="whsec_attacker"))
    tampered = deliver(payload.replace("starter", "pro"), signature(payload))
    missing = Client().post(WEBHOOK, data=payload, content_type="application/json")

    for response in (forged, tampered, missing):
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_signature" and response.json()["detail"]
    assert db_state() == before


def test_a_stale_signature_is_a_replay_and_is_refused(plans):
    organization = OrganizationFactory()
    payload = event("checkout.session.completed", checkout_completed(organization))

    response = deliver(payload, signature(payload, timestamp=int(time.time()) - 301))

    assert response.status_code == 400 and response.json()["code"] == "invalid_signature"
    assert not Subscription.objects.exists() and not StripeEvent.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"id": "evt_1", "type": "x"}',
        b'{"id": 5, "type": "x", "data": {"object": {}}}',
        b'{"id": "evt_1", "type": "invoice.paid", "data": {"object": "in_1"}}',
    ],
    ids=["text", "not-utf8", "list", "no-data", "numeric-id", "object-not-a-dict"],
)
def test_malformed_payloads_are_400_with_code_and_detail(plans, payload):
    response = deliver(payload, signature(payload.decode("utf-8", "replace")))

    assert response.status_code == 400
    assert response.json()["code"] == "malformed_payload" and response.json()["detail"]
    assert not StripeEvent.objects.exists()


def test_unknown_event_types_are_recorded_and_ignored(plans):
    response = deliver(event("customer.created", {"id": "cus_1", "object": "customer"}, event_id="evt_unknown"))

    assert response.status_code == 200
    assert StripeEvent.objects.get().outcome == "ignored: event type not handled"


def test_the_webhook_is_post_only_and_off_without_a_secret(plans, settings):
    assert Client().get(WEBHOOK).status_code == 405
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = deliver(event("customer.created", {"id": "cus_1"}))
    assert response.status_code == 404 and response.json()["code"] == "stripe_disabled"


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_event_apply_it_once(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    plans = seed_plans()
    plans["starter"].stripe_price_id = "price_starter"
    plans["starter"].save()
    organization = OrganizationFactory()
    payload = event("checkout.session.completed", checkout_completed(organization))
    start = threading.Barrier(6)

    def post(_):
        try:
            start.wait()
            return deliver(payload).json()["duplicate"]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        duplicates = list(pool.map(post, range(6)))

    assert sorted(duplicates) == [False] + [True] * 5
    assert Subscription.objects.filter(organization=organization).count() == 1
    assert AuditLog.objects.filter(action="billing.stripe_checkout_completed").count() == 1


# --- what each event does -----------------------------------------------------------------------


def test_checkout_on_a_running_subscription_changes_the_plan_at_period_end(plans):
    subscription = subscribe(OrganizationFactory(), plans["starter"])
    period = (subscription.current_period_start, subscription.current_period_end)

    deliver(event("checkout.session.completed", checkout_completed(subscription.organization, "pro")))

    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.pending_plan.code) == ("starter", "pro")
    assert (subscription.current_period_start, subscription.current_period_end) == period
    assert subscription.stripe_subscription_id == "sub_acme"


def test_checkout_from_a_free_subscription_starts_the_paid_plan_now(plans):
    subscription = subscribe(OrganizationFactory(), plans["free"])

    deliver(event("checkout.session.completed", checkout_completed(subscription.organization, "pro")))

    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.pending_plan) == ("pro", None)
    assert subscription.current_period_start > timezone.now() - timedelta(minutes=1)
    assert subscription.stripe_customer_id == "cus_acme"


def test_checkout_for_an_unknown_organization_or_plan_is_ignored(plans):
    organization = OrganizationFactory()
    deliver(event("checkout.session.completed", {**checkout_completed(organization), "client_reference_id": "x",
                                                 "metadata": {}}, event_id="evt_a"))
    deliver(event("checkout.session.completed", checkout_completed(organization, "platinum"), event_id="evt_b"))

    assert not Subscription.objects.exists()
    assert list(StripeEvent.objects.order_by("event_id").values_list("outcome", flat=True)) == [
        "ignored: no organization of ours",
        "ignored: unknown plan",
    ]


def stripe_subscription(status: str = "active", price: str = "price_starter") -> dict[str, Any]:
    return {
        "id": "sub_acme",
        "object": "subscription",
        "customer": "cus_acme",
        "status": status,
        "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": price, "object": "price"}}]},
    }


@pytest.fixture
def stripe_subscribed(plans):
    return subscribe(
        OrganizationFactory(), plans["starter"], stripe_customer_id="cus_acme", stripe_subscription_id="sub_acme"
    )


def test_subscription_updates_change_the_plan_at_period_end_and_follow_the_status(stripe_subscribed):
    deliver(event("customer.subscription.updated", stripe_subscription(price="price_pro"), event_id="evt_1"))
    stripe_subscribed.refresh_from_db()
    assert (stripe_subscribed.plan.code, stripe_subscribed.pending_plan.code) == ("starter", "pro")

    deliver(event("customer.subscription.updated", stripe_subscription("past_due"), event_id="evt_2"))
    stripe_subscribed.refresh_from_db()
    assert (stripe_subscribed.status, stripe_subscribed.pending_plan) == (SubscriptionStatus.PAST_DUE, None)

    deliver(event("customer.subscription.deleted", stripe_subscription("canceled"), event_id="evt_3"))
    stripe_subscribed.refresh_from_db()
    assert stripe_subscribed.status == SubscriptionStatus.CANCELED


def test_payment_events_do_not_lift_an_operators_suspension(stripe_subscribed):
    stripe_subscribed.status = SubscriptionStatus.SUSPENDED
    stripe_subscribed.save()

    deliver(event("customer.subscription.updated", stripe_subscription("active")))

    stripe_subscribed.refresh_from_db()
    assert stripe_subscribed.status == SubscriptionStatus.SUSPENDED


def stripe_invoice(invoice: Invoice | None = None, *, customer: str = "cus_acme", paid_at: int = 1_794_000_000):
    return {
        "id": "in_1",
        "object": "invoice",
        "customer": customer,
        "metadata": {"loom_invoice_id": str(invoice.pk)} if invoice else {},
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_acme"}},
        "status_transitions": {"paid_at": paid_at},
    }


def test_invoice_paid_marks_our_invoice_paid_once(stripe_subscribed):
    invoice = InvoiceFactory(organization=stripe_subscribed.organization)
    payload = event("invoice.paid", stripe_invoice(invoice))

    deliver(payload)
    deliver(payload)

    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_reference, invoice.stripe_invoice_id) == (
        InvoiceStatus.PAID, "stripe:in_1", "in_1"
    )
    assert invoice.paid_at.timestamp() == 1_794_000_000
    assert AuditLog.objects.filter(action="billing.invoice_paid").count() == 1


def test_invoice_paid_cannot_pay_another_customers_invoice(stripe_subscribed):
    victim = InvoiceFactory(organization=OrganizationFactory())

    deliver(event("invoice.paid", stripe_invoice(victim)))

    victim.refresh_from_db()
    assert victim.status == InvoiceStatus.OPEN


def test_a_failed_payment_makes_the_subscription_past_due_and_a_payment_active_again(stripe_subscribed):
    deliver(event("invoice.payment_failed", stripe_invoice(), event_id="evt_1"))
    stripe_subscribed.refresh_from_db()
    assert stripe_subscribed.status == SubscriptionStatus.PAST_DUE

    deliver(event("invoice.paid", stripe_invoice(), event_id="evt_2"))
    stripe_subscribed.refresh_from_db()
    assert stripe_subscribed.status == SubscriptionStatus.ACTIVE


# --- calls to Stripe, answered by a local stand-in ------------------------------------------------


class StubStripe:
    """A tiny HTTP server answering Stripe's API paths with canned JSON, recording every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.fail_with: tuple[int, dict[str, Any]] | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                self._answer()

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = dict(urllib.parse.parse_qsl(body))
                stub.requests.append((self.command, self.path, form, dict(self.headers)))
                status, answer = stub.fail_with or (200, stub.answer(self.command, self.path, form))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method: str, path: str, form: dict[str, str]) -> dict[str, Any]:
        path = path.split("?")[0]
        if path == "/v1/customers":
            return {"id": "cus_new", "object": "customer"}
        if path.startswith("/v1/customers/"):
            return {"id": path.rsplit("/", 1)[1], "object": "customer"}
        if path == "/v1/checkout/sessions":
            return {"id": "cs_1", "object": "checkout.session", "url": "https://checkout.stripe.test/c/cs_1"}
        if path == "/v1/billing_portal/sessions":
            return {"id": "bps_1", "object": "billing_portal.session", "url": "https://billing.stripe.test/p/bps_1"}
        if path == "/v1/invoices":
            return {"id": "in_new", "object": "invoice", "status": "draft"}
        if path == "/v1/invoiceitems":
            return {"id": f"ii_{len(self.requests)}", "object": "invoiceitem"}
        if path == "/v1/invoices/in_new/finalize":
            return {"id": "in_new", "object": "invoice", "status": "open"}
        if path == "/v1/subscriptions/sub_acme":
            return {**stripe_subscription(), "object": "subscription"}
        return {"error": {"type": "invalid_request_error", "message": f"no stub for {path}"}}

    def paths(self) -> list[str]:
        return [path for _, path, _, _ in self.requests]


@pytest.fixture
def stub(settings, plans) -> Iterator[StubStripe]:
    server = StubStripe()
    settings.STRIPE_SECRET_KEY = "sk_test_local"
    settings.STRIPE_API_BASE = server.url
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_checkout_redirects_an_admin_to_stripe_with_the_plans_price(cast, client, stub):
    client.force_login(cast.admin)

    response = client.post("/billing/stripe/checkout/", {"plan": "pro"})

    assert response.status_code == 302 and response["Location"] == "https://checkout.stripe.test/c/cs_1"
    ((method, path, form, headers),) = stub.requests
    assert (method, path) == ("POST", "/v1/checkout/sessions")
    assert headers["Authorization"] == "Bearer sk_test_local"
    assert form["line_items[0][price]"] == "price_pro" and form["mode"] == "subscription"
    assert form["client_reference_id"] == str(cast.org.pk) and form["metadata[plan_code]"] == "pro"
    assert form["customer_email"] == cast.admin.email
    assert form["success_url"].startswith("http://testserver/billing/")


def test_checkout_of_a_subscribed_organization_syncs_its_customer_first(cast, client, stub, plans):
    subscribe(cast.org, plans["starter"])
    client.force_login(cast.owner)

    client.post("/billing/stripe/checkout/", {"plan": "pro"})

    assert stub.paths() == ["/v1/customers", "/v1/checkout/sessions"]
    assert stub.requests[0][2]["metadata[organization_id]"] == str(cast.org.pk)
    assert stub.requests[0][3]["Idempotency-Key"] == f"loom-customer-{cast.org.pk}"
    assert stub.requests[1][2]["customer"] == "cus_new"
    assert Subscription.objects.get(organization=cast.org).stripe_customer_id == "cus_new"


def test_checkout_and_portal_need_the_csrf_token_and_a_session(cast, stub):
    assert Client().post("/billing/stripe/checkout/", {"plan": "pro"}).status_code == 302  # to the login page
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(cast.owner)

    assert forged.post("/billing/stripe/checkout/", {"plan": "pro"}).status_code == 403
    assert forged.post("/billing/stripe/portal/").status_code == 403
    assert stub.requests == []


def test_checkout_refuses_bad_plans_viewers_and_runs_only_with_keys(cast, client, stub, settings):
    client.force_login(cast.admin)
    assert client.post("/billing/stripe/checkout/", {"plan": "platinum"}).status_code == 400
    assert client.post("/billing/stripe/checkout/", {"plan": "free"}).status_code == 400  # no Stripe price
    client.force_login(cast.viewer)
    assert client.post("/billing/stripe/checkout/", {"plan": "pro"}).status_code == 403
    settings.STRIPE_SECRET_KEY = ""
    client.force_login(cast.admin)
    assert client.post("/billing/stripe/checkout/", {"plan": "pro"}).status_code == 404
    assert stub.requests == []


def test_stripe_failures_are_503_and_refusals_502_never_500(cast, client, stub):
    client.force_login(cast.admin)
    stub.fail_with = (500, {"error": {"type": "api_error", "message": "boom"}})
    assert client.post("/billing/stripe/checkout/", {"plan": "pro"}).status_code == 503
    stub.fail_with = (400, {"error": {"type": "invalid_request_error", "message": "No such price"}})
    assert client.post("/billing/stripe/checkout/", {"plan": "pro"}).status_code == 502


def test_the_portal_needs_a_stripe_customer(cast, client, stub, plans):
    client.force_login(cast.admin)
    assert client.post("/billing/stripe/portal/").status_code == 400

    subscribe(cast.org, plans["starter"], stripe_customer_id="cus_acme")
    response = client.post("/billing/stripe/portal/")

    assert response.status_code == 302 and response["Location"] == "https://billing.stripe.test/p/bps_1"
    assert stub.requests[-1][2]["customer"] == "cus_acme"


def test_an_invoice_is_sent_to_stripe_once_with_its_lines_in_cents(stub, stripe_subscribed):
    invoice = InvoiceFactory(organization=stripe_subscribed.organization, total=Decimal("15.67"), lines=[])
    InvoiceLine.objects.create(invoice=invoice, position=1, kind="subscription", description="Starter plan",
                               quantity=1, unit="month", amount=Decimal("19.00"))
    InvoiceLine.objects.create(invoice=invoice, position=2, kind="adjustment", description="Credit note: outage",
                               amount=Decimal("-3.33"))

    first = payments.send_invoice(invoice)
    invoice.refresh_from_db()
    again = payments.send_invoice(invoice)

    assert first == again == invoice.stripe_invoice_id == "in_new"
    assert stub.paths() == ["/v1/invoices", "/v1/invoiceitems", "/v1/invoiceitems", "/v1/invoices/in_new/finalize"]
    created, fee, credit, _ = (form for _, _, form, _ in stub.requests)
    assert created["metadata[loom_invoice_id]"] == str(invoice.pk) and created["customer"] == "cus_acme"
    assert (fee["amount"], credit["amount"], credit["invoice"]) == ("1900", "-333", "in_new")


def test_a_plan_change_is_scheduled_in_stripe_without_proration(stub, stripe_subscribed, plans):
    stripe_subscribed.pending_plan = plans["pro"]
    stripe_subscribed.save()

    assert payments.schedule_plan_change(subscription=stripe_subscribed) is True

    assert stub.paths() == ["/v1/subscriptions/sub_acme", "/v1/subscriptions/sub_acme"]
    update = stub.requests[1][2]
    assert (update["items[0][id]"], update["items[0][price]"], update["proration_behavior"]) == (
        "si_1", "price_pro", "none"
    )


def test_a_plan_change_reaches_stripe_after_its_commit(cast, stub, plans, django_capture_on_commit_callbacks):
    # billing.subscriptions does not import the Stripe adapter: billing.apps registers it as a listener.
    subscribe(cast.org, plans["starter"], stripe_customer_id="cus_acme", stripe_subscription_id="sub_acme")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        change_plan(actor=cast.owner, organization=cast.org, plan_code="pro")
    assert stub.requests == []
    for callback in callbacks:
        callback()

    assert stub.paths() == ["/v1/subscriptions/sub_acme", "/v1/subscriptions/sub_acme"]
    assert stub.requests[1][2]["items[0][price]"] == "price_pro"


def test_an_issued_invoice_is_sent_to_stripe_by_task_name_only_when_it_owes_something(stub, stripe_subscribed):
    owing = InvoiceFactory(organization=stripe_subscribed.organization, total=Decimal("15.67"), lines=[])
    settled = InvoiceFactory(organization=stripe_subscribed.organization, total=Decimal("0"), lines=[])

    # What closing a period runs after its commit (billing.apps registers the Stripe adapter with it).
    with mock.patch("billing.dispatch.current_app") as app:
        invoicing._after_issue(owing)
        invoicing._after_issue(settled)

    assert [call.args[0] for call in app.send_task.call_args_list] == ["billing.send_invoice_to_stripe"]
    assert app.send_task.call_args.kwargs["args"] == (str(owing.pk),)
