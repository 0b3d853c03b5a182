"""The language switcher's endpoint (the form in templates/base.html)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import services
from core.errors import InvalidInput


@require_POST
def set_language(request: HttpRequest) -> HttpResponse:
    """Like ``django.views.i18n.set_language`` (cookie, safe redirect), and kept on the user when signed in."""
    language = request.POST.get("language", "")
    if language not in dict(settings.LANGUAGES):
        return HttpResponseBadRequest()
    if request.user.is_authenticated:
        try:
            services.set_language(user=request.user, language=language)  # type: ignore[arg-type]
        except InvalidInput:  # pragma: no cover: checked above
            return HttpResponseBadRequest()
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = "/"
    response = redirect(target)
    # Anonymous visitors (the sign-in page) keep it in the cookie LocaleMiddleware reads.
    response.set_cookie(settings.LANGUAGE_COOKIE_NAME, language, samesite="Lax", secure=request.is_secure())
    return response
