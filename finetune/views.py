"""Dashboard pages of a project's brand model: the training data preview, the start form, runs with their
progress and loss curve (polled while they run), and the adapters with their evaluation and actions.

Everyone in the organization reads; editors start and cancel runs, activate, roll back and export; admins
delete an adapter. Every lookup goes through ``organizations.tenancy.scoped_or_404``: another
organization's project, run or adapter is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.errors import DomainError
from core.web import add_service_error, form_status, post_data
from finetune import charts, reports, services
from finetune.forms import StartRunForm
from finetune.models import TrainingRun
from generation.models import BrandAdapter
from organizations.models import Role
from organizations.tenancy import current_organization, current_tenant, scoped_or_404, tenant_required
from projects.models import Project

#: Runs listed on the page, newest first.
RUNS_SHOWN = 10


def _run_context(run: TrainingRun) -> dict[str, Any]:
    return {"run": run, "chart": charts.loss_chart(run.loss_points, (run.progress or {}).get("total_steps"))}


def _page(request: HttpRequest, project: Project, form: StartRunForm, *, status: int = 200) -> HttpResponse:
    built = services.preview(organization=current_organization(request), project=project)
    runs = TrainingRun.objects.filter(project=project).select_related("serving_model", "adapter")[:RUNS_SHOWN]
    adapters = BrandAdapter.objects.filter(project=project).select_related("serving_model")
    context = {
        "project": project,
        "form": form,
        "data": built.preview(),
        "runs": [_run_context(run) for run in runs],
        "adapters": [
            {"adapter": a, "rows": reports.comparison(a.evaluation), "samples": reports.samples(a.evaluation)}
            for a in adapters
        ],
        "active": next((a for a in adapters if a.is_active), None),
    }
    return render(request, "finetune/project.html", context, status=status)


@tenant_required(Role.VIEWER)
def project_page(request: HttpRequest, pk: Any) -> HttpResponse:
    project = scoped_or_404(request, Project, pk=pk)
    if request.method == "POST" and not current_tenant(request).has_role(Role.EDITOR):
        raise PermissionDenied(_("Training a brand model needs the editor role or higher."))
    form = StartRunForm(post_data(request))
    if form.is_bound and form.is_valid():
        try:
            run = services.start_training_run(
                organization=current_organization(request),
                project=project,
                actor=request.user,
                config=form.config(),
            )
        except DomainError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, _("Training started: run %(pk)s is queued.") % {"pk": run.pk})
            return redirect("finetune:project", pk=project.pk)
    return _page(request, project, form, status=form_status(form))


@tenant_required(Role.VIEWER)
def run_status(request: HttpRequest, pk: Any) -> HttpResponse:
    """The live part of one run (status, progress, loss curve), polled while it is queued or running."""
    run = scoped_or_404(request, TrainingRun.objects.select_related("serving_model", "adapter"), pk=pk)
    return render(request, "finetune/_run.html", {"item": _run_context(run)})


def _act(request: HttpRequest, project_id: Any, action: Any, done: str) -> HttpResponse:
    try:
        action()
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, done)
    return redirect("finetune:project", pk=project_id)


@require_POST
@tenant_required(Role.EDITOR)
def run_cancel(request: HttpRequest, pk: Any) -> HttpResponse:
    run = scoped_or_404(request, TrainingRun, pk=pk)
    return _act(
        request,
        run.project_id,
        lambda: services.cancel_training_run(organization=current_organization(request), run=run, actor=request.user),
        _("Cancel requested: the run stops at its next step."),
    )


@require_POST
@tenant_required(Role.EDITOR)
def activate(request: HttpRequest, pk: Any) -> HttpResponse:
    adapter = scoped_or_404(request, BrandAdapter.objects.select_related("project"), pk=pk)
    insist = request.POST.get("insist") in {"1", "true", "on"}
    return _act(
        request,
        adapter.project_id,
        lambda: services.activate_adapter(
            organization=current_organization(request), adapter=adapter, actor=request.user, insist=insist
        ),
        _("Brand model v%(version)s is active: new jobs of the project use it.") % {"version": adapter.version},
    )


@require_POST
@tenant_required(Role.EDITOR)
def rollback(request: HttpRequest, pk: Any) -> HttpResponse:
    project = scoped_or_404(request, Project, pk=pk)
    insist = request.POST.get("insist") in {"1", "true", "on"}
    return _act(
        request,
        project.pk,
        lambda: services.rollback_adapter(
            organization=current_organization(request), project=project, actor=request.user, insist=insist
        ),
        _("Rolled back to the previous brand model."),
    )


@require_POST
@tenant_required(Role.EDITOR)
def deactivate(request: HttpRequest, pk: Any) -> HttpResponse:
    project = scoped_or_404(request, Project, pk=pk)
    return _act(
        request,
        project.pk,
        lambda: services.deactivate_adapter(
            organization=current_organization(request), project=project, actor=request.user
        ),
        _("New jobs of the project run on the base model."),
    )


@tenant_required(Role.EDITOR)
def export(request: HttpRequest, pk: Any) -> HttpResponse:
    adapter = scoped_or_404(request, BrandAdapter.objects.select_related("project", "serving_model"), pk=pk)
    try:
        filename, data = services.export_adapter(organization=current_organization(request), adapter=adapter)
    except DomainError as exc:
        messages.error(request, exc.detail)
        return redirect("finetune:project", pk=adapter.project_id)
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@tenant_required(Role.ADMIN)
def delete(request: HttpRequest, pk: Any) -> HttpResponse:
    adapter = scoped_or_404(request, BrandAdapter.objects.select_related("project"), pk=pk)
    version, project_id = adapter.version, adapter.project_id
    return _act(
        request,
        project_id,
        lambda: services.delete_adapter(
            organization=current_organization(request), adapter=adapter, actor=request.user
        ),
        _("Deleted brand model v%(version)s and its files.") % {"version": version},
    )
