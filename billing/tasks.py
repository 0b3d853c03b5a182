"""Billing's Celery tasks: thin, idempotent wrappers around billing.invoicing and billing.payments."""

from __future__ import annotations

from celery import shared_task

from billing import invoicing, payments
from billing.models import Invoice


@shared_task(name="billing.close_periods")
def close_periods() -> list[str]:
    """Beat, every 15 minutes: close every ended billing period and issue its invoice. Safe to overlap."""
    return [invoice.number for invoice in invoicing.close_due_periods()]


@shared_task(
    name="billing.send_invoice_to_stripe",
    autoretry_for=(payments.StripeUnavailable,),
    retry_backoff=30,
    max_retries=8,
)
def send_invoice_to_stripe(invoice_id: str) -> str:
    """Have Stripe collect an issued invoice (the organization's customer is charged or emailed)."""
    invoice = Invoice.objects.filter(pk=invoice_id).first()
    if invoice is None:
        return ""
    return payments.send_invoice(invoice)
