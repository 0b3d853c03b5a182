"""Dashboard pages for projects. Everyone reads; editors create and edit; admins delete."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from core.errors import DomainError
from core.web import add_domain_error, form_status, post_data
from organizations.models import Role
from organizations.tenancy import current_organization, scoped, scoped_or_404, tenant_required
from projects import services
from projects.forms import ProjectForm
from projects.models import Project

_FIELD_ERRORS = {
    "name_required": "name", "invalid_slug": "slug", "slug_taken": "slug", "invalid_language": "default_language",
}


@tenant_required(Role.VIEWER)
def project_list(request: HttpRequest) -> HttpResponse:
    projects = scoped(request, Project).select_related("created_by").annotate(
        key_count=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True))
    )
    return render(request, "projects/list.html", {"projects": projects})


@tenant_required(Role.VIEWER)
def project_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    project = scoped_or_404(request, Project.objects.select_related("created_by"), pk=pk)
    keys = project.api_keys.filter(organization=project.organization).active()
    return render(request, "projects/detail.html", {"project": project, "restricted_keys": keys})


@tenant_required(Role.EDITOR)
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(post_data(request))
    if form.is_bound and form.is_valid():
        try:
            project = services.create_project(
                actor=request.user, organization=current_organization(request),
                **form.cleaned_data,
            )
        except DomainError as exc:
            add_domain_error(form, exc, _FIELD_ERRORS)
        else:
            messages.success(request, _("Project %(name)s created.") % {"name": project.name})
            return redirect("projects:detail", pk=project.pk)
    return render(request, "projects/form.html", {"form": form}, status=form_status(form))


@tenant_required(Role.EDITOR)
def project_edit(request: HttpRequest, pk: Any) -> HttpResponse:
    project = scoped_or_404(request, Project, pk=pk)
    form = ProjectForm.for_project(project, post_data(request))
    if form.is_bound and form.is_valid():
        changes = {**form.cleaned_data, "slug": form.cleaned_data["slug"] or project.slug}
        try:
            services.update_project(actor=request.user, project=project, **changes)
        except DomainError as exc:
            project.refresh_from_db()
            add_domain_error(form, exc, _FIELD_ERRORS)
        else:
            messages.success(request, _("Project saved."))
            return redirect("projects:detail", pk=project.pk)
    return render(request, "projects/form.html", {"form": form, "project": project}, status=form_status(form))


@tenant_required(Role.ADMIN)
def project_delete(request: HttpRequest, pk: Any) -> HttpResponse:
    project = scoped_or_404(request, Project, pk=pk)
    if request.method == "POST":
        services.delete_project(actor=request.user, project=project)
        messages.success(request, _("Project %(name)s deleted.") % {"name": project.name})
        return redirect("projects:list")
    return render(request, "projects/confirm_delete.html", {"project": project})
