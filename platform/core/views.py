"""Error pages: JSON under /api/, HTML elsewhere, never a stack trace."""

from __future__ import annotations

import sys
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext_lazy as _
from django_htmx.http import reswap

from core.jobs import DB_CONNECTION_ERRORS

_MESSAGES = {
    400: ("bad_request", _("The request could not be understood.")),
    403: ("permission_denied", _("You do not have permission to do this.")),
    404: ("not_found", _("Not found.")),
    500: ("server_error", _("Something went wrong on our side. It has been logged.")),
    503: ("service_unavailable", _("The database is busy or unreachable. Try again in a few seconds.")),
}
#: Seconds a client should wait before retrying after a 503 (a connection slot frees up within a request
#: or two; a restarting database takes longer, and the client retries again).
RETRY_AFTER_S = 5


def _error(request: HttpRequest, status: int) -> HttpResponse:
    code, lazy_detail = _MESSAGES[status]
    detail = str(lazy_detail)  # in the request's language (LocaleMiddleware)
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
    # Django calls this inside its ``except``: the exception at hand says whether the database turned the
    # request away (connections exhausted, restarting, failing over). That is not a bug in the request
    # or in our code but a moment's unavailability, which clients and load balancers retry on a 503.
    if isinstance(sys.exc_info()[1], DB_CONNECTION_ERRORS):
        response = _error(request, 503)
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response
    return _error(request, 500)
