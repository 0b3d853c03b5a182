"""Error pages: JSON under /api/, HTML elsewhere, never a stack trace."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

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
    return render(request, "error.html", {"status": status, "detail": detail}, status=status)


def bad_request(request: HttpRequest, exception: Any = None) -> HttpResponse:
    return _error(request, 400)


def permission_denied(request: HttpRequest, exception: Any = None) -> HttpResponse:
    return _error(request, 403)


def page_not_found(request: HttpRequest, exception: Any = None) -> HttpResponse:
    return _error(request, 404)


def server_error(request: HttpRequest) -> HttpResponse:
    return _error(request, 500)
