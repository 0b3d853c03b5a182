from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from organizations.tenancy import tenant_for_user


class CurrentOrganizationMiddleware:
    """Exposes ``request.tenant`` for dashboard views: the signed-in user's current organization.

    Lazy, so requests that never look (static files, the API) pay no query.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.tenant = SimpleLazyObject(lambda: _dashboard_tenant(request))  # type: ignore[attr-defined]
        return self.get_response(request)


def _dashboard_tenant(request: HttpRequest) -> Any:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    # The dashboard follows the switcher (session), never the API's X-Organization header.
    request.META.pop("HTTP_X_ORGANIZATION", None)
    return tenant_for_user(request, user)
