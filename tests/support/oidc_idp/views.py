"""The test IdP's claims (email and a groups claim) and a small management API the tests drive.

The management API stands in for an IdP's admin console: it creates users (with groups) and client
applications, and removes or deactivates users. It answers only callers with IDP_ADMIN_TOKEN.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from django.contrib.auth.models import Group, User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import Application
from oauth2_provider.oauth2_validators import OAuth2Validator


class Validator(OAuth2Validator):
    # None: every claim goes out whatever the scope (DOT's table would drop "groups", which no scope names).
    oidc_claim_scope = None

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {
            "email": user.email,
            "email_verified": True,
            "given_name": user.first_name,
            "preferred_username": user.username,
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }

    def validate_refresh_token(self, refresh_token: str, client: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        # As Keycloak, Okta and Entra ID do: a deactivated user's grants stop working (DOT alone keeps them).
        valid = super().validate_refresh_token(refresh_token, client, request, *args, **kwargs)
        return bool(valid and request.user.is_active)


def _authorized(request: HttpRequest) -> bool:
    return hmac.compare_digest(request.headers.get("X-Idp-Admin-Token", ""), os.environ["IDP_ADMIN_TOKEN"])


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@csrf_exempt
def users(request: HttpRequest) -> HttpResponse:
    if not _authorized(request) or request.method != "POST":
        return HttpResponse(status=403)
    data = json.loads(request.body)
    user = User.objects.create_user(
        username=data["username"], email=data["email"], password=data["password"], first_name=data.get("first_name", "")
    )
    for name in data.get("groups", []):
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return JsonResponse({"id": user.pk}, status=201)


@csrf_exempt
def user(request: HttpRequest, username: str) -> HttpResponse:
    if not _authorized(request):
        return HttpResponse(status=403)
    if request.method == "DELETE":
        User.objects.filter(username=username).delete()  # its tokens and grants go with it
        return HttpResponse(status=204)
    if request.method == "PATCH":
        User.objects.filter(username=username).update(**json.loads(request.body))
        return HttpResponse(status=204)
    return HttpResponse(status=405)


@csrf_exempt
def applications(request: HttpRequest) -> HttpResponse:
    if not _authorized(request) or request.method != "POST":
        return HttpResponse(status=403)
    data = json.loads(request.body)
    Application.objects.create(
        name=data.get("name", data["client_id"]),
        client_id=data["client_id"],
        client_secret=data["client_secret"],
        redirect_uris=" ".join(data["redirect_uris"]),
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=data.get("skip_authorization", False),
    )
    return JsonResponse({"client_id": data["client_id"]}, status=201)
