from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from sso import sessions


class SsoSessionMiddleware:
    """Signs a session out once its identity provider refuses it (``sso.sessions``); after authentication."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated and sessions.is_due(request) and not sessions.still_valid(request):
            logout(request)  # the request goes on anonymous: a page sends it to sign in, the API answers 401/403
            messages.warning(request, _("Your identity provider ended your session. Sign in again."))
        return self.get_response(request)
