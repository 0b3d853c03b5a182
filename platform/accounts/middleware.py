"""The signed-in user's dashboard language, applied on every request (and so from the first page after login)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import translation


class UserLanguageMiddleware:
    """Activates ``user.language`` over what ``LocaleMiddleware`` negotiated (cookie, Accept-Language).

    A user who never chose (an empty ``language``) keeps the browser's. API calls signed with a key have
    no session user: their ``Accept-Language`` decides.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.language:
            translation.activate(user.language)
            request.LANGUAGE_CODE = translation.get_language()  # type: ignore[attr-defined]
        return self.get_response(request)
