"""Stripe's edges: the webhook endpoint, and the dashboard's Checkout and Billing Portal redirects.

The webhook is called by Stripe, not by a signed-in user: no session, no CSRF
token; the ``Stripe-Signature`` header is its authentication. It answers JSON:
400 ``{code, detail}`` for a forged, stale or malformed request (nothing is
applied), 200 for an applied, replayed or ignored event.
"""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_htmx.http import reswap

from billing import payments
from core.errors import DomainError
from organizations.models import Role
from organizations.tenancy import current_organization, tenant_required

logger = logging.getLogger(__name__)


def _error(exc: DomainError) -> JsonResponse:
    return JsonResponse({"code": exc.code, "detail": exc.detail}, status=exc.status_code)


def _refused(request: HttpRequest, exc: DomainError) -> HttpResponse:
    """A dashboard action Stripe or the input refused: the reason, under the error's status."""
    context = {"status": exc.status_code, "detail": exc.detail}
    if getattr(request, "htmx", False):
        html = render_to_string("includes/error_oob.html", context)
        return reswap(HttpResponse(html, status=exc.status_code), "none")
    return HttpResponse(render_to_string("error.html", context, request=request), status=exc.status_code)


@csrf_exempt
def webhook(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        response = JsonResponse({"code": "method_not_allowed", "detail": "POST a Stripe event."}, status=405)
        response["Allow"] = "POST"
        return response
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse({"code": "too_large", "detail": "The payload is too large."}, status=413)
    try:
        event = payments.verify_webhook(body, request.headers.get("Stripe-Signature"))
        stored, applied = payments.process_event(event)
    except DomainError as exc:
        if exc.status_code >= 500:
            logger.warning("Stripe event could not be applied: %s", exc.detail)
        return _error(exc)
    return JsonResponse({"received": True, "event": stored.event_id, "duplicate": not applied})


def _billing_page(request: HttpRequest) -> str:
    """Where Stripe sends the user back: the billing overview when it exists, else the invoices."""
    try:
        path = reverse("billing:overview")
    except NoReverseMatch:
        path = reverse("billing:invoices")
    return request.build_absolute_uri(path)


def _stripe_redirect(request: HttpRequest, url: str) -> HttpResponse:
    response = redirect(url)
    if getattr(request, "htmx", False):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
    return response


@tenant_required(Role.ADMIN)
@require_POST
def checkout(request: HttpRequest) -> HttpResponse:
    """Send an admin to Stripe Checkout for the plan posted as ``plan`` (its code)."""
    try:
        plan = payments.purchasable_plan(request.POST.get("plan", ""))
        back = _billing_page(request)
        url = payments.checkout_url(
            organization=current_organization(request),
            plan=plan,
            actor=request.user,  # type: ignore[arg-type]
            success_url=f"{back}?checkout=done",
            cancel_url=f"{back}?checkout=canceled",
        )
    except DomainError as exc:
        return _refused(request, exc)
    return _stripe_redirect(request, url)


@tenant_required(Role.ADMIN)
@require_POST
def portal(request: HttpRequest) -> HttpResponse:
    """Send an admin to the Stripe Billing Portal (payment methods, Stripe's invoices, cancellation)."""
    try:
        url = payments.portal_url(
            organization=current_organization(request),
            return_url=_billing_page(request),
        )
    except DomainError as exc:
        return _refused(request, exc)
    return _stripe_redirect(request, url)
