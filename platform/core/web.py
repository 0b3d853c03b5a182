"""Shared plumbing for the server-rendered dashboard.

Dashboard views are thin: ``organizations.tenancy.tenant_required`` signs the
user in, resolves the current organization and checks the role; the view
validates a form, calls one service and redirects. A ``DomainError`` from the service becomes a form error
or a message, answered with the error's 4xx status, never a 500.

Inline (htmx) actions get the changed fragment plus the messages, swapped
out-of-band into the page's message area; the same URLs work as plain form
posts without JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django_htmx.http import reswap

from core.errors import DomainError


def post_data(request: HttpRequest) -> Any:
    """What to bind a form to: the POST data on a POST (even an empty one), else nothing."""
    return request.POST if request.method == "POST" else None


def form_status(form: forms.BaseForm) -> int:
    """200 for a fresh form; for one re-rendered with errors, 400 or the service error's status."""
    if not (form.is_bound and form.errors):
        return 200
    return getattr(form, "error_status", 400)  # type: ignore[no-any-return]


def add_domain_error(form: forms.BaseForm, exc: DomainError, fields: dict[str, str] | None = None) -> None:
    """Attach a service error to the form: on the field its code names, else to the whole form."""
    field = (fields or {}).get(exc.code)
    form.add_error(field if field in form.fields else None, exc.detail)
    form.error_status = exc.status_code  # type: ignore[attr-defined]


def add_service_error(
    form: forms.BaseForm,
    exc: DomainError,
    field_for: dict[str, str] | None = None,
    *,
    messages: dict[str, str] | None = None,
    rename: Callable[[str], str] | None = None,
) -> None:
    """Put a service error's per-field messages on the matching form fields, else on the whole form.

    ``field_for`` maps the service's field names to the form's, ``rename`` does it by rule (a
    prefix); ``messages`` replaces the service's wording for a code, where the page has a better one.
    """
    form.error_status = exc.status_code  # type: ignore[attr-defined]
    if messages and exc.code in messages:
        form.add_error(None, messages[exc.code])
        return
    placed = False
    for key, errors in exc.fields.items():
        name = (field_for or {}).get(key, key)
        if rename:
            name = rename(name)
        if name in form.fields:
            for error in errors:
                form.add_error(name, error[:1].upper() + error[1:])
            placed = True
    if not placed:
        form.add_error(None, exc.detail)


def is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def htmx_fragment(
    request: HttpRequest, template: str | None, context: dict[str, Any] | None = None, *, status: int = 200
) -> HttpResponse:
    """The fragment an inline action swaps in, followed by the pending messages (out of band)."""
    html = render_to_string(template, context or {}, request=request) if template else ""
    html += render_to_string("includes/messages.html", {"oob": True}, request=request)
    return HttpResponse(html, status=status)


def action_failed(request: HttpRequest, exc: DomainError, page: Callable[..., HttpResponse]) -> HttpResponse:
    """A refused action: the page again with the reason, under the error's status."""
    messages.error(request, exc.detail)
    if is_htmx(request):
        return reswap(htmx_fragment(request, None, status=exc.status_code), "none")
    return page(request, status=exc.status_code)


def action_done(
    request: HttpRequest, message: str, *, redirect_to: str, fragment: str | None = None,
    context: dict[str, Any] | None = None,
) -> HttpResponse:
    """A completed action: the changed fragment for htmx, else a redirect (post/redirect/get)."""
    messages.success(request, message)
    if is_htmx(request):
        return htmx_fragment(request, fragment, context)
    return redirect(redirect_to)
