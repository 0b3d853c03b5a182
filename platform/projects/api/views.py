from __future__ import annotations

from typing import Any

from django.utils.translation import gettext
from rest_framework import mixins, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import no_content
from organizations.api.tenancy import TenantViewSet
from organizations.models import Role
from projects import services
from projects.api.serializers import ProjectSerializer
from projects.models import Project


class ProjectViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
    mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantViewSet,
):
    """Projects of the current organization. Editors create and edit; admins delete."""

    queryset = Project.objects.select_related("created_by")
    serializer_class = ProjectSerializer
    project_field = "pk"
    action_roles = {"destroy": Role.ADMIN}

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if self.tenant.project_id is not None:
            raise PermissionDenied(gettext("This API key is restricted to one project and cannot create projects."))
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.create_project(
            actor=self.actor, organization=self.tenant.organization, **serializer.validated_data
        )
        return Response(self.get_serializer(project).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        serializer = self.get_serializer(project, data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        project = services.update_project(actor=self.actor, project=project, **serializer.validated_data)
        return Response(self.get_serializer(project).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_project(actor=self.actor, project=self.get_object())
        return no_content()
