"""API views that span the platform apps: ``/api/v1/me``, the caller as a user or an API key."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import UserSerializer
from apikeys.models import ApiKey, Scope
from organizations.tenancy import resolve_tenant


class MeView(APIView):
    """The caller: the signed-in user, or the API key and its organization."""

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "user": UserSerializer(allow_null=True),
                "api_key": inline_serializer(
                    "MeApiKey",
                    {
                        "id": serializers.UUIDField(),
                        "name": serializers.CharField(),
                        "scope": serializers.ChoiceField(choices=Scope.choices),
                        "project": serializers.UUIDField(
                            allow_null=True, help_text="The one project the key is restricted to; null: every one."
                        ),
                    },
                    allow_null=True,
                    help_text="The API key of the call; null for a signed-in user.",
                ),
                "organization": inline_serializer(
                    "MeOrganization",
                    {"id": serializers.UUIDField(), "name": serializers.CharField(), "slug": serializers.CharField()},
                    allow_null=True,
                    help_text="The organization the call acts in; null for a user who belongs to none.",
                ),
                "role": serializers.CharField(allow_null=True),
            },
        )
    )
    def get(self, request: Request) -> Response:
        tenant = resolve_tenant(request)
        key = request.auth if isinstance(request.auth, ApiKey) else None
        return Response(
            {
                "user": None if key else UserSerializer(request.user).data,
                "api_key": (
                    {"id": str(key.pk), "name": key.name, "scope": key.scope,
                     "project": str(key.project_id) if key.project_id else None}
                    if key else None
                ),
                "organization": (
                    {"id": str(tenant.organization.pk), "name": tenant.organization.name,
                     "slug": tenant.organization.slug}
                    if tenant else None
                ),
                "role": tenant.role.value if tenant else None,
            }
        )
