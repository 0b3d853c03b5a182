"""The dashboard home: a summary across the platform apps (projects, members, API keys)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apikeys.models import ApiKey
from organizations.models import Membership, Role
from organizations.tenancy import tenant_required
from projects.models import Project

#: Projects shown on the dashboard; the full list is one click away.
RECENT_PROJECTS = 6


@tenant_required(Role.VIEWER)
def dashboard(request: HttpRequest) -> HttpResponse:
    organization = request.tenant.organization  # type: ignore[attr-defined]
    projects = Project.objects.filter(organization=organization)
    context = {
        "recent_projects": projects.order_by("-updated_at")[:RECENT_PROJECTS],
        "project_count": projects.count(),
        "member_count": Membership.objects.filter(organization=organization).count(),
        "key_count": ApiKey.objects.filter(organization=organization).active().count(),
    }
    return render(request, "dashboard.html", context)
