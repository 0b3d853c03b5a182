"""Invoices for tests that need one without closing a period (API sweeps, pages, webhooks)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from billing.models import Invoice, InvoiceLine, InvoiceLineKind
from tests.support.factories import OrganizationFactory


class InvoiceFactory(DjangoModelFactory[Invoice]):
    """An open invoice of last month with one subscription line of 19.00 USD."""

    class Meta:
        model = Invoice
        skip_postgeneration_save = True

    organization = factory.SubFactory(OrganizationFactory)
    number = factory.Sequence(lambda n: f"TEST-2026-{n + 1:06d}")
    currency = "USD"
    period_end = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    period_start = factory.LazyAttribute(lambda o: o.period_end - timedelta(days=30))
    issued_at = factory.LazyFunction(timezone.now)
    due_at = factory.LazyAttribute(lambda o: o.issued_at + timedelta(days=14))
    organization_name = factory.LazyAttribute(lambda o: o.organization.name)
    plan_name = "Starter"
    total = Decimal("19.00")

    @factory.post_generation
    def lines(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create and extracted is None:
            InvoiceLine.objects.create(
                invoice=self, position=1, kind=InvoiceLineKind.SUBSCRIPTION, description="Starter plan",
                quantity=Decimal(1), unit="month", amount=self.total,
            )
