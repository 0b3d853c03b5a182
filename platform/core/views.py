"""Error pages: JSON under /api/, HTML elsewhere, never a stack trace."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django_htmx.http import reswap

_MESSAGES = {
    400: ("bad_request", "The request could not be understood."),
    403: ("permission_denied", "You do not have permission to do this."),
    404: ("not_found", "Not found."),
    500: ("server_error", "Something went wrong on our side. It has been logged."),
}


def _error(request: HttpRequest, status: int) -> HttpResponse:
    code, detail = _MESSAGES[status]
    if request.path.startswith("/api/"):
        return JsonResponse({"code": code, "detail": detail}, status=status)
    # Rendered without the request: no context processors, so no database query,
    # which may be what just failed.
    context = {"status": status, "detail": detail}
    if getattr(request, "htmx", False):
        # An inline action: show the reason in the page's message area, leave the page as it is.
        html = render_to_string("includes/error_oob.html", context)
        return reswap(HttpResponse(html, status=status), "none")
    return HttpResponse(render_to_string("error.html", context), status=status)


def bad_request(request: HttpRequest, exception: Any = None) -> HttpResponse:
    return _error(request, 400)


def permission_denied(request: HttpRequest, exception: Any = None) -> HttpResponse:
    return _error(request, 403)


def page_not_found(request: HttpRequest, exception: Any = None) -> HttpResponse:
    return _error(request, 404)


def server_error(request: HttpRequest) -> HttpResponse:
    return _error(request, 500)
