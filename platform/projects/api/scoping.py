"""For API resources created in a project the request body names."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils.translation import gettext

from core.errors import NotFound
from projects.models import Project


class ProjectScopedCreate:
    """Creating in a project named by the body: the project must be in the caller's scope."""

    tenant: Any

    def project_in_scope(self, project_id: uuid.UUID) -> Project:
        projects = Project.objects.filter(organization=self.tenant.organization)
        if self.tenant.project_id is not None:  # a key restricted to one project
            projects = projects.filter(pk=self.tenant.project_id)
        project = projects.filter(pk=project_id).first()
        if project is None:
            raise NotFound(gettext("Project not found."), code="project_not_found")
        return project
