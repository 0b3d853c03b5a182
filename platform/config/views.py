"""The dashboard home: a summary across the platform apps (projects, members, API keys)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apikeys.models import ApiKey
from organizations.models import Membership, Role
from organizations.tenancy import scoped, tenant_required
from projects.models import Project

#: Projects shown on the dashboard; the full list is one click away.
RECENT_PROJECTS = 6


@tenant_required(Role.VIEWER)
def dashboard(request: HttpRequest) -> HttpResponse:
    projects = scoped(request, Project)
    context = {
        "recent_projects": projects.order_by("-updated_at")[:RECENT_PROJECTS],
        "project_count": projects.count(),
        "member_count": scoped(request, Membership).count(),
        "key_count": scoped(request, ApiKey).active().count(),
    }
    return render(request, "dashboard.html", context)
