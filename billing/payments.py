"""Stripe, through the ``stripe`` library: customers, Checkout and Billing Portal links, invoices, webhooks.

Everything here is optional. Without ``STRIPE_SECRET_KEY`` ``enabled()`` is
False, the dashboard hides the Stripe buttons and invoices are paid by hand
(an operator marks them paid in the admin); without ``STRIPE_WEBHOOK_SECRET``
the webhook endpoint answers 404.

How the two systems divide the work:

* Checkout starts a Stripe subscription for a plan whose ``stripe_price_id`` is
  set; ``checkout.session.completed`` then starts the organization's
  subscription here, its period beginning now (also replacing a free or
  canceled one). A paid subscription that already runs changes plan at the end
  of its period, as every plan change does (configure the Billing Portal to
  schedule changes without proration).
* Stripe bills the subscription fee of a subscription it manages; our period
  invoice then carries the metered lines only and is sent to Stripe for
  collection (``send_invoice``); ``invoice.paid`` marks it paid here.
* Webhooks are verified (``Stripe-Signature``, 300 s tolerance) and applied
  once per event id: the ``StripeEvent`` row is written in the transaction of
  the change, so a replay, even a concurrent one, changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from audit.services import record
from billing import dispatch, invoicing
from billing.admission import lock_account
from billing.models import Invoice, InvoiceStatus, Plan, StripeEvent, Subscription, SubscriptionStatus
from core.errors import DomainError, InvalidInput, NotFound
from core.ids import parse_uuid
from organizations.models import Organization

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

#: Seconds a signed webhook stays acceptable: an older signature is a replay.
WEBHOOK_TOLERANCE_S = 300
#: Stripe's own retries (idempotent requests) before we give up on a call.
NETWORK_RETRIES = 2
#: Currencies Stripe counts in whole units (no cents); amounts are sent in the smallest unit.
ZERO_DECIMAL_CURRENCIES = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX",
                                     "VND", "VUV", "XAF", "XOF", "XPF"})


class StripeDisabled(NotFound):
    code = "stripe_disabled"


class StripeUnavailable(DomainError):
    """Stripe could not be reached or is failing: retry later."""

    status_code = 503
    code = "payment_provider_unavailable"
    retry_after = 30


class PaymentProviderError(DomainError):
    """Stripe refused the request (a wrong price id, a deleted customer): a configuration problem."""

    status_code = 502
    code = "payment_provider_error"


class WebhookRejected(InvalidInput):
    """A webhook that is not a genuine, well-formed Stripe event (400): nothing is applied."""


def enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def webhooks_enabled() -> bool:
    return bool(settings.STRIPE_WEBHOOK_SECRET)


def _client() -> stripe.StripeClient:
    if not enabled():
        raise StripeDisabled("Stripe is not configured on this platform; invoices are paid manually.")
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses=base, max_network_retries=NETWORK_RETRIES  # type: ignore[arg-type]
    )


def _call(request: Callable[..., Any], params: dict[str, Any], *, idempotency_key: str | None = None) -> Any:
    """One Stripe request, its errors as domain errors (retryable 503, or a refusal 502)."""
    options = {"idempotency_key": idempotency_key} if idempotency_key else {}
    try:
        return request(params=params, options=options)
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise StripeUnavailable(f"Stripe could not be reached ({type(exc).__name__}); try again shortly.") from exc
    except stripe.StripeError as exc:
        if (exc.http_status or 500) >= 500:
            raise StripeUnavailable("Stripe is failing; try again shortly.") from exc
        logger.warning("Stripe refused a request: %s", exc)
        raise PaymentProviderError(
            f"Stripe refused the request: {exc.user_message or type(exc).__name__}. Check the Stripe settings."
        ) from exc


def _locked_subscription(organization: Organization) -> Subscription | None:
    # The subscription, then the account: the order of subscriptions.change_plan and of closing a period.
    subscription = (
        Subscription.objects.select_for_update().select_related("plan").filter(organization=organization).first()
    )
    lock_account(organization)
    return subscription


# --- customers, Checkout, Billing Portal --------------------------------------------------------


def _customer_params(organization: Organization) -> dict[str, Any]:
    return {"name": organization.name, "metadata": {"organization_id": str(organization.pk)}}


def sync_customer(*, organization: Organization, email: str = "") -> str | None:
    """Create or update the Stripe customer of a subscribed organization; its id, or None without a subscription.

    An organization without a subscription gets its customer from Checkout. No
    lock is held across the network call; the idempotency key makes concurrent
    first syncs create one customer, and the id is stored only if still unset.
    """
    subscription = Subscription.objects.filter(organization=organization).first()
    if subscription is None:
        return None
    client = _client()
    params = _customer_params(organization)
    if subscription.stripe_customer_id:
        _call(lambda **kw: client.v1.customers.update(subscription.stripe_customer_id, **kw), params)
        return subscription.stripe_customer_id
    if email:
        params["email"] = email
    customer = _call(client.v1.customers.create, params, idempotency_key=f"loom-customer-{organization.pk}")
    Subscription.objects.filter(pk=subscription.pk, stripe_customer_id="").update(
        stripe_customer_id=customer.id, updated_at=timezone.now()
    )
    return Subscription.objects.values_list("stripe_customer_id", flat=True).get(pk=subscription.pk)


def purchasable_plan(code: str) -> Plan:
    """An active plan that Checkout can sell; 400 otherwise."""
    plan = Plan.objects.filter(code=(code or "").strip(), is_active=True).first()
    if plan is None:
        raise InvalidInput(gettext("There is no plan %(code)r.") % {"code": code}, code="unknown_plan")
    if not plan.stripe_price_id:
        raise InvalidInput(
            gettext("The %(plan)s plan is not sold through Stripe.") % {"plan": plan.name}, code="plan_not_purchasable"
        )
    return plan


def checkout_url(*, organization: Organization, plan: Plan, actor: User, success_url: str, cancel_url: str) -> str:
    """A hosted Checkout page that subscribes the organization to ``plan``; completed, it calls the webhook."""
    if not plan.stripe_price_id:
        raise InvalidInput(
            gettext("The %(plan)s plan is not sold through Stripe.") % {"plan": plan.name}, code="plan_not_purchasable"
        )
    metadata = {"organization_id": str(organization.pk), "plan_code": plan.code}
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [{"price": plan.stripe_price_id, "quantity": 1}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": str(organization.pk),
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
    }
    customer_id = sync_customer(organization=organization, email=actor.email)
    if customer_id:
        params["customer"] = customer_id
    else:
        params["customer_email"] = actor.email
    session = _call(_client().v1.checkout.sessions.create, params)
    record("billing.checkout_started", organization=organization, actor=actor, plan=plan.code, session=session.id)
    return str(session.url)


def portal_url(*, organization: Organization, return_url: str) -> str:
    """A Billing Portal session for the organization's Stripe customer (payment methods, Stripe invoices)."""
    subscription = Subscription.objects.filter(organization=organization).first()
    if subscription is None or not subscription.stripe_customer_id:
        raise InvalidInput(
            "This organization has no Stripe customer yet; subscribe through Checkout first.", code="no_stripe_customer"
        )
    session = _call(
        _client().v1.billing_portal.sessions.create,
        {"customer": subscription.stripe_customer_id, "return_url": return_url},
    )
    return str(session.url)


def schedule_plan_change(*, subscription: Subscription) -> bool:
    """Tell Stripe the price of ``pending_plan``, billed from the next period (no proration).

    For ``tell_of_plan_change``, after ``pending_plan`` was set on a Stripe-managed subscription;
    False when there is nothing to tell Stripe.
    """
    plan = subscription.pending_plan
    if not (enabled() and subscription.stripe_subscription_id and plan is not None and plan.stripe_price_id):
        return False
    client = _client()
    remote = _call(lambda **kw: client.v1.subscriptions.retrieve(subscription.stripe_subscription_id, **kw), {})
    items = remote["items"]["data"]
    if not items:
        return False
    _call(
        lambda **kw: client.v1.subscriptions.update(subscription.stripe_subscription_id, **kw),
        {"items": [{"id": items[0]["id"], "price": plan.stripe_price_id}], "proration_behavior": "none"},
    )
    return True


def tell_of_plan_change(subscription_id: Any) -> None:
    """After a plan change on a Stripe-managed subscription commits: schedule it in Stripe too.

    Registered with ``subscriptions.on_plan_change_scheduled`` (``billing.apps``). A failure is
    logged, not raised: the change is committed here, and Stripe's own portal can repeat it.
    """
    subscription = Subscription.objects.select_related("pending_plan").get(pk=subscription_id)
    try:
        schedule_plan_change(subscription=subscription)
    except Exception:
        logger.exception("Stripe was not told of the plan change of subscription %s", subscription_id)


# --- invoices ----------------------------------------------------------------------------------


def collect_issued_invoice(invoice: Invoice) -> None:
    """After an invoice is issued: have Stripe collect it, when Stripe is set up and it owes something.

    Registered with ``invoicing.on_invoice_issued`` (``billing.apps``); sends the task, which retries.
    """
    if enabled() and invoice.total > 0:
        try:
            dispatch.send_invoice_to_stripe(invoice.pk)
        except Exception:
            # The invoice is issued either way; it can be sent again (or paid by hand).
            logger.exception("Could not queue invoice %s for Stripe", invoice.number)


def _minor_units(amount: Decimal, currency: str) -> int:
    if currency.upper() in ZERO_DECIMAL_CURRENCIES:
        return int(amount.quantize(Decimal(1)))
    return int((amount * 100).quantize(Decimal(1)))


def send_invoice(invoice: Invoice) -> str:
    """Create our invoice in Stripe and finalize it, so Stripe collects it; its Stripe id ("" if not sent).

    Only for an open invoice of an organization with a Stripe customer. Safe to
    repeat: every request carries an idempotency key derived from the invoice.
    """
    subscription = Subscription.objects.filter(organization_id=invoice.organization_id).first()
    customer = subscription.stripe_customer_id if subscription is not None else ""
    if invoice.stripe_invoice_id or invoice.status != InvoiceStatus.OPEN or not customer or not enabled():
        return invoice.stripe_invoice_id
    client = _client()
    key = f"loom-invoice-{invoice.pk}"
    remote = _call(
        client.v1.invoices.create,
        {
            "customer": customer,
            "currency": invoice.currency.lower(),
            "collection_method": "charge_automatically",
            "auto_advance": True,
            "pending_invoice_items_behavior": "exclude",
            "description": f"Loom invoice {invoice.number}",
            "metadata": {"loom_invoice_id": str(invoice.pk), "loom_invoice_number": invoice.number},
        },
        idempotency_key=key,
    )
    for line in invoice.lines.exclude(amount=0).order_by("position"):
        _call(
            client.v1.invoice_items.create,
            {
                "customer": customer,
                "invoice": remote.id,
                "currency": invoice.currency.lower(),
                "amount": _minor_units(line.amount, invoice.currency),
                "description": line.description,
            },
            idempotency_key=f"{key}-line-{line.position}",
        )
    _call(lambda **kw: client.v1.invoices.finalize_invoice(remote.id, **kw), {}, idempotency_key=f"{key}-finalize")
    Invoice.objects.filter(pk=invoice.pk, stripe_invoice_id="").update(stripe_invoice_id=remote.id)
    return str(remote.id)


# --- webhooks ----------------------------------------------------------------------------------


def verify_webhook(payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event of a genuine Stripe webhook, as a dict; ``WebhookRejected`` (400) for anything else."""
    if not webhooks_enabled():
        raise StripeDisabled("Stripe webhooks are not configured on this platform.")
    if not signature:
        raise WebhookRejected("The Stripe-Signature header is missing.", code="invalid_signature")
    try:
        text = payload.decode("utf-8")
        event = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise WebhookRejected("The payload is not JSON.", code="malformed_payload") from None
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and event["id"]
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise WebhookRejected("The payload is not a Stripe event (id, type, data.object).", code="malformed_payload")
    try:
        stripe.Webhook.construct_event(
            text, signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=WEBHOOK_TOLERANCE_S
        )
    except stripe.SignatureVerificationError:
        raise WebhookRejected(
            "The Stripe-Signature does not match this payload, or is too old.", code="invalid_signature"
        ) from None
    except ValueError:
        raise WebhookRejected("The payload is not a Stripe event.", code="malformed_payload") from None
    return event


def process_event(event: dict[str, Any]) -> tuple[StripeEvent, bool]:
    """Apply a verified event once: ``(its record, True)``, or ``(the earlier record, False)`` for a replay.

    The record and the change commit together: if applying fails, neither is
    kept and Stripe's retry applies it again.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                stored = StripeEvent.objects.create(
                    event_id=event["id"][:255],
                    type=str(event["type"])[:120],
                    livemode=bool(event.get("livemode")),
                    payload=event,
                )
        except IntegrityError:
            # Applied before (or right now by a concurrent delivery, which we waited for).
            return StripeEvent.objects.get(event_id=event["id"][:255]), False
        handler = _HANDLERS.get(stored.type)
        outcome = handler(event["data"]["object"]) if handler else "ignored: event type not handled"
        stored.outcome = outcome[:300]
        stored.processed_at = timezone.now()
        stored.save(update_fields=["outcome", "processed_at"])
    return stored, True


def _organization_of(obj: dict[str, Any]) -> Organization | None:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    org_id = parse_uuid(str(obj.get("client_reference_id") or metadata.get("organization_id") or ""))
    return Organization.objects.filter(pk=org_id).first() if org_id else None


def _subscription_for(stripe_subscription_id: Any, customer_id: Any) -> Subscription | None:
    """Our subscription for a Stripe subscription id, else for the customer id; locked like the others."""
    subscription = None
    if isinstance(stripe_subscription_id, str) and stripe_subscription_id:
        subscription = Subscription.objects.filter(stripe_subscription_id=stripe_subscription_id).first()
    if subscription is None and isinstance(customer_id, str) and customer_id:
        subscription = Subscription.objects.filter(stripe_customer_id=customer_id).first()
    if subscription is None:
        return None
    return _locked_subscription(subscription.organization)


def _id(value: Any) -> str:
    """A Stripe reference, expanded (``{"id": ...}``) or not."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _starts_anew(subscription: Subscription | None) -> bool:
    """Whether a completed Checkout starts a subscription rather than changing a running one.

    It does for an organization without one, with a canceled one, or with an
    active free one that nobody pays for (a Free plan chosen on the dashboard):
    paying now for a plan that only starts next month would be no upgrade.
    """
    if subscription is None or subscription.status == SubscriptionStatus.CANCELED:
        return True
    return (
        subscription.status == SubscriptionStatus.ACTIVE
        and not subscription.stripe_subscription_id
        and subscription.plan.monthly_price == 0
    )


def _on_checkout_completed(session: dict[str, Any]) -> str:
    if session.get("mode") != "subscription":
        return "ignored: not a subscription checkout"
    organization = _organization_of(session)
    if organization is None:
        return "ignored: no organization of ours"
    metadata = session.get("metadata") if isinstance(session.get("metadata"), dict) else {}
    plan = Plan.objects.filter(code=str(metadata.get("plan_code") or "")).first()
    if plan is None:
        return "ignored: unknown plan"
    customer_id, stripe_subscription_id = _id(session.get("customer")), _id(session.get("subscription"))
    subscription = _locked_subscription(organization)
    if _starts_anew(subscription):
        # A new paid subscription: its first period starts now, as Stripe's does.
        now = timezone.now()
        fields = {
            "plan": plan,
            "pending_plan": None,
            "status": SubscriptionStatus.ACTIVE,
            "current_period_start": now,
            "current_period_end": invoicing.add_month(now, now.astimezone(UTC).day),
            "stripe_customer_id": customer_id,
            "stripe_subscription_id": stripe_subscription_id,
        }
        if subscription is None:
            subscription = Subscription.objects.create(organization=organization, **fields)
        else:
            for name, value in fields.items():
                setattr(subscription, name, value)
            subscription.save()
        outcome = f"subscribed to {plan.code}"
    else:
        # A running subscription changes plan at the end of its period, like every plan change.
        subscription.stripe_customer_id = customer_id or subscription.stripe_customer_id
        subscription.stripe_subscription_id = stripe_subscription_id or subscription.stripe_subscription_id
        subscription.pending_plan = plan if plan.pk != subscription.plan_id else None
        subscription.save()
        outcome = f"{plan.code} from the next period" if subscription.pending_plan else f"stays on {plan.code}"
    record(
        "billing.stripe_checkout_completed",
        organization=organization,
        target=subscription,
        plan=plan.code,
        stripe_subscription=stripe_subscription_id,
    )
    return outcome


#: Stripe subscription statuses and ours; others (incomplete, paused) leave ours as it is.
_STATUSES = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.ACTIVE,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "canceled": SubscriptionStatus.CANCELED,
    "incomplete_expired": SubscriptionStatus.CANCELED,
}


def _set_status(subscription: Subscription, status: str) -> bool:
    # An operator's suspension is lifted by an operator, not by a payment event.
    if subscription.status in (SubscriptionStatus.SUSPENDED, status):
        return False
    if subscription.status == SubscriptionStatus.CANCELED and status != SubscriptionStatus.CANCELED:
        return False  # a canceled subscription comes back through Checkout only
    old = subscription.status
    subscription.status = status
    subscription.save(update_fields=["status", "updated_at"])
    record(
        "billing.subscription_status_changed",
        organization=subscription.organization,
        target=subscription,
        old=old,
        new=status,
        source="stripe",
    )
    return True


def _price_of(remote: dict[str, Any]) -> str:
    items = remote.get("items") if isinstance(remote.get("items"), dict) else {}
    data = items.get("data") if isinstance(items.get("data"), list) else []
    if data and isinstance(data[0], dict) and isinstance(data[0].get("price"), dict):
        return _id(data[0]["price"])
    return ""


def _on_subscription_updated(remote: dict[str, Any]) -> str:
    subscription = _subscription_for(remote.get("id"), _id(remote.get("customer")))
    if subscription is None:
        return "ignored: no subscription of ours"
    changes = []
    status = _STATUSES.get(str(remote.get("status")))
    if status is not None and _set_status(subscription, status):
        changes.append(f"status {status}")
    price = _price_of(remote)
    plan = Plan.objects.filter(stripe_price_id=price).first() if price else None
    if plan is not None and subscription.status != SubscriptionStatus.CANCELED:
        pending = plan if plan.pk != subscription.plan_id else None
        if pending != subscription.pending_plan:
            subscription.pending_plan = pending
            subscription.save(update_fields=["pending_plan", "updated_at"])
            changes.append(f"{plan.code} from the next period" if pending else "pending plan change dropped")
    return "; ".join(changes) or "no change"


def _on_subscription_deleted(remote: dict[str, Any]) -> str:
    subscription = _subscription_for(remote.get("id"), _id(remote.get("customer")))
    if subscription is None:
        return "ignored: no subscription of ours"
    if subscription.status == SubscriptionStatus.CANCELED:
        return "no change"
    subscription.status = SubscriptionStatus.CANCELED
    subscription.pending_plan = None
    subscription.save(update_fields=["status", "pending_plan", "updated_at"])
    record("billing.subscription_canceled", organization=subscription.organization, target=subscription,
           source="stripe")
    return "canceled"


def _stripe_subscription_of_invoice(remote: dict[str, Any]) -> str:
    """The subscription a Stripe invoice bills: ``subscription`` before API 2025-03-31, ``parent`` after."""
    parent = remote.get("parent") if isinstance(remote.get("parent"), dict) else {}
    details = parent.get("subscription_details") if isinstance(parent.get("subscription_details"), dict) else {}
    return _id(remote.get("subscription")) or _id(details.get("subscription"))


def _our_invoice(remote: dict[str, Any]) -> Invoice | None:
    metadata = remote.get("metadata") if isinstance(remote.get("metadata"), dict) else {}
    invoice_id = parse_uuid(str(metadata.get("loom_invoice_id") or ""))
    invoice = Invoice.objects.filter(pk=invoice_id).first() if invoice_id else None
    if invoice is None and isinstance(remote.get("id"), str) and remote["id"]:
        invoice = Invoice.objects.filter(stripe_invoice_id=remote["id"]).first()
    if invoice is None:
        return None
    # The metadata must belong to this customer's organization, not name someone else's invoice.
    subscription = Subscription.objects.filter(organization_id=invoice.organization_id).first()
    customer = _id(remote.get("customer"))
    if subscription is None or not customer or subscription.stripe_customer_id != customer:
        return None
    return invoice


def _paid_at(remote: dict[str, Any]) -> datetime | None:
    transitions = remote.get("status_transitions") if isinstance(remote.get("status_transitions"), dict) else {}
    paid = transitions.get("paid_at")
    return datetime.fromtimestamp(paid, tz=UTC) if isinstance(paid, int) and paid > 0 else None


def _on_invoice_paid(remote: dict[str, Any]) -> str:
    changes = []
    invoice = _our_invoice(remote)
    if invoice is not None:
        if invoice.status == InvoiceStatus.OPEN:
            invoicing.mark_invoice_paid(
                invoice=invoice, actor=None, reference=f"stripe:{remote.get('id')}", paid_at=_paid_at(remote)
            )
            changes.append(f"invoice {invoice.number} paid")
        else:
            changes.append(f"invoice {invoice.number} already {invoice.status}")
        if not invoice.stripe_invoice_id and isinstance(remote.get("id"), str):
            Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=remote["id"])
    subscription = _subscription_for(_stripe_subscription_of_invoice(remote), "")
    if subscription is not None and subscription.status == SubscriptionStatus.PAST_DUE:
        _set_status(subscription, SubscriptionStatus.ACTIVE)
        changes.append("subscription active again")
    return "; ".join(changes) or "ignored: no invoice or subscription of ours"


def _on_invoice_payment_failed(remote: dict[str, Any]) -> str:
    subscription = _subscription_for(_stripe_subscription_of_invoice(remote), _id(remote.get("customer")))
    if subscription is None:
        return "ignored: no subscription of ours"
    if subscription.status == SubscriptionStatus.ACTIVE and _set_status(subscription, SubscriptionStatus.PAST_DUE):
        return "subscription past due"
    return "no change"


_HANDLERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "checkout.session.completed": _on_checkout_completed,
    "customer.subscription.updated": _on_subscription_updated,
    "customer.subscription.deleted": _on_subscription_deleted,
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_payment_failed,
}
