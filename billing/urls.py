"""Billing pages, mounted at /billing/ (see config.urls)."""

from __future__ import annotations

from django.urls import path

from billing import invoice_views, stripe_views, views

app_name = "billing"
urlpatterns = [
    # Plan, allowance and usage; plan changes (billing/views.py)
    path("", views.overview, name="overview"),
    path("plan/", views.change_plan, name="change_plan"),
    path("plan/cancel/", views.cancel_plan_change, name="cancel_plan_change"),
    # Invoices (billing/invoice_views.py)
    path("invoices/", invoice_views.invoice_list, name="invoices"),
    path("invoices/<uuid:pk>/", invoice_views.invoice_detail, name="invoice"),
    path("invoices/<uuid:pk>/pdf/", invoice_views.invoice_pdf, name="invoice_pdf"),
    # Stripe (billing/stripe_views.py): the webhook, and the dashboard's redirects to Checkout and the portal
    path("stripe/webhook/", stripe_views.webhook, name="stripe_webhook"),
    path("stripe/checkout/", stripe_views.checkout, name="stripe_checkout"),
    path("stripe/portal/", stripe_views.portal, name="stripe_portal"),
]
