from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Models need the app registry: these modules load once it is ready, not at import.
        from billing import invoicing, payments, subscriptions

        # Plans and invoices do not import the Stripe adapter; it hears of what it must tell Stripe.
        subscriptions.on_plan_change_scheduled(payments.tell_of_plan_change)
        invoicing.on_invoice_issued(payments.collect_issued_invoice)
