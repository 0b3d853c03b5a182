from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apikeys.models import ApiKey
from apikeys.services import authenticate_request_key

# Query parameter names clients commonly (and wrongly) put keys in.
_QUERY_KEY_NAMES = {"api_key", "apikey", "key", "token", "access_token", "auth", "authorization"}


class KeyInQueryString(exceptions.AuthenticationFailed):
    default_code = "api_key_in_query_string"
    default_detail = (
        "API keys must be sent in the Authorization header (Authorization: Bearer <key>), "
        "never in the URL, where proxies and logs record them. Revoke this key and create a new one."
    )


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer loom_...``. A key in the query string is refused outright."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        self._refuse_query_string_keys(request)
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, raw_key = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            return None
        raw_key = raw_key.strip()
        if not raw_key:
            raise exceptions.AuthenticationFailed("The Authorization header has no key after 'Bearer'.")
        api_key = authenticate_request_key(request, raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'

    @staticmethod
    def _refuse_query_string_keys(request: Request) -> None:
        prefix = settings.API_KEY_PREFIX
        for name, values in request.query_params.lists():
            if (
                name.lower() in _QUERY_KEY_NAMES
                or name.strip().startswith(prefix)  # "?loom_..." with no value
                or any(v.strip().startswith(prefix) for v in values)
            ):
                raise KeyInQueryString()


class ApiKeyPrincipal:
    """The ``request.user`` of a key-authenticated request.

    A key acts for its organization, not for the person who created it, so it
    keeps working when they leave and never inherits their other memberships.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    @property
    def email(self) -> str:
        return ""

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "apikeys.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": f"{settings.API_KEY_PREFIX}<prefix>_<secret>",
            "description": "An organization API key, sent as `Authorization: Bearer <key>`.",
        }
