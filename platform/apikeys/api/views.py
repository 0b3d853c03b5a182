from __future__ import annotations

from typing import Any

from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from apikeys import services
from apikeys.api.serializers import ApiKeySerializer, IssuedApiKeySerializer
from apikeys.models import ApiKey
from core.api import no_content
from core.errors import InvalidInput
from organizations.api.tenancy import TenantViewSet
from organizations.models import Role
from projects.models import Project


class ApiKeyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin,
    TenantViewSet,
):
    """Organization API keys (admins). ``DELETE`` revokes: the key fails from its next request on."""

    queryset = ApiKey.objects.select_related("created_by")
    serializer_class = ApiKeySerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(request=ApiKeySerializer, responses={201: IssuedApiKeySerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        issued = services.create_api_key(
            actor=self.actor,
            organization=self.tenant.organization,
            name=data["name"],
            scope=data["scope"],
            project=self._project(data.get("project_id")),
            expires_at=data.get("expires_at"),
        )
        body = IssuedApiKeySerializer(issued.api_key).data
        body["key"] = issued.secret
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    def _project(self, project_id: Any) -> Project | None:
        if project_id is None:
            return None
        project = Project.objects.filter(organization=self.tenant.organization, pk=project_id).first()
        if project is None:
            raise InvalidInput(gettext("Unknown project for this organization."), code="invalid_project")
        return project

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.revoke_api_key(actor=self.actor, api_key=self.get_object())
        return no_content()
