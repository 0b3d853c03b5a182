"""Dashboard pages for experiments (list and create, results with the chart, start/stop/conclude), and the
public tracking endpoints that links and emails carry (``/t/<token>``, ``/t/<token>.gif``).

Dashboard lookups go through ``organizations.tenancy.scoped``: another organization's experiment is a 404.
The tracking endpoints take no login: the signed token is the credential, and names one assignment.
"""

from __future__ import annotations

import base64
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotFound, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from billing.ratelimit import limit_by_address
from core.errors import DomainError
from core.ids import parse_uuid
from core.web import action_done, action_failed, add_service_error, form_status, post_data
from experiments import charts, results, services, serving, tracking
from experiments.forms import ExperimentForm
from experiments.models import Assignment, Experiment
from generation.models import Variant
from organizations.models import Role
from organizations.tenancy import current_organization, current_tenant, scoped, scoped_or_404, tenant_required
from projects.models import Project

#: Experiments listed on the page.
RECENT = 50


def _form(request: HttpRequest) -> ExperimentForm:
    variants = scoped(request, Variant, organization_field="job__organization").filter(
        approved=True, is_current=True
    ).select_related("job__project").order_by("-approved_at")
    return ExperimentForm(post_data(request), projects=scoped(request, Project), variants=variants,
                          initial={"project": request.GET.get("project") or None})


def _list_page(request: HttpRequest, form: ExperimentForm | None = None, *, status: int = 200) -> HttpResponse:
    experiments = scoped(request, Experiment).select_related("project", "winner")
    project = parse_uuid(request.GET.get("project", ""))
    if project is not None:
        experiments = experiments.filter(project_id=project)
    context = {
        "form": form or _form(request),
        "experiments": experiments[:RECENT],
        "has_projects": scoped(request, Project).exists(),
        "project": scoped(request, Project).filter(pk=project).first() if project else None,
    }
    return render(request, "experiments/list.html", context, status=status)


@tenant_required(Role.VIEWER)
def experiment_list(request: HttpRequest) -> HttpResponse:
    """Everyone reads; editors create (a draft, started from its page)."""
    if request.method == "POST" and not current_tenant(request).has_role(Role.EDITOR):
        raise PermissionDenied(_("Creating an experiment needs the editor role or higher."))
    form = _form(request)
    if form.is_bound and form.is_valid():
        try:
            experiment = services.create_experiment(
                organization=current_organization(request),
                project=form.cleaned_data["project"],
                arms=form.arms(),
                actor=request.user,
                **form.settings(),
            )
        except DomainError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, _("Experiment created as a draft: check the arms, then start it."))
            return redirect("experiments:detail", pk=experiment.pk)
    return _list_page(request, form, status=form_status(form))


def _get(request: HttpRequest, pk: Any) -> Experiment:
    queryset = Experiment.objects.select_related("project", "winner", "created_by")
    return scoped_or_404(request, queryset, pk=pk)


def _detail_page(request: HttpRequest, experiment: Experiment, *, status: int = 200) -> HttpResponse:
    summary = results.summary(experiment)
    context = {
        "experiment": experiment,
        "results": summary,
        "chart": charts.interval_chart(summary.arms),
        "assign_url": request.build_absolute_uri(reverse("api:experiment-assign", args=[experiment.pk])),
    }
    return render(request, "experiments/detail.html", context, status=status)


@tenant_required(Role.VIEWER)
def experiment_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    # The page applies the stop rule as the API's results do: what it shows is what holds now.
    experiment = services.review_experiment(_get(request, pk))
    return _detail_page(request, _get(request, experiment.pk))


def _lifecycle(request: HttpRequest, pk: Any, change: Any, done: str) -> HttpResponse:
    experiment = _get(request, pk)
    try:
        change(experiment=experiment, actor=request.user)
    except DomainError as exc:
        return action_failed(request, exc, lambda request, status: _detail_page(request, experiment, status=status))
    return action_done(request, done, redirect_to=reverse("experiments:detail", args=[experiment.pk]))


@tenant_required(Role.EDITOR)
@require_POST
def experiment_start(request: HttpRequest, pk: Any) -> HttpResponse:
    return _lifecycle(request, pk, services.start_experiment, _("Experiment started: assign now hands out arms."))


@tenant_required(Role.EDITOR)
@require_POST
def experiment_stop(request: HttpRequest, pk: Any) -> HttpResponse:
    return _lifecycle(request, pk, services.stop_experiment, _("Experiment stopped."))


@tenant_required(Role.EDITOR)
@require_POST
def experiment_conclude(request: HttpRequest, pk: Any) -> HttpResponse:
    return _lifecycle(
        request, pk, services.conclude_experiment, _("Experiment concluded: its winner is served to all.")
    )


# --- tracking (public, signed) -----------------------------------------------------------------------

#: The smallest transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store, private"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"  # the token is not passed on to the target
    return response


def _assignment(token: tracking.Token) -> Assignment | None:
    pk = parse_uuid(token.assignment_id)
    if pk is None:
        return None
    return Assignment.objects.select_related("experiment").filter(pk=pk).first()


@require_safe
@limit_by_address("tracking", "TRACKING_RATE_LIMIT_PER_MINUTE")
def track(request: HttpRequest, token: str) -> HttpResponse:
    """A tracking link: record the click (people only, once per assignment), then go to the signed target.

    A tampered or foreign token is a 400 and a target whose host the experiment no longer allows a 404:
    never a redirect to anywhere the platform did not sign and the experiment does not list.
    """
    try:
        parsed = tracking.unsign(token)
    except tracking.BadToken:
        return _no_store(HttpResponseBadRequest("This link is broken or was changed.", content_type="text/plain"))
    assignment = _assignment(parsed) if parsed.kind == tracking.CLICK else None
    if assignment is None or not tracking.host_allowed(parsed.target, serving.allowed_hosts(assignment.experiment)):
        return _no_store(HttpResponseNotFound("This link leads nowhere any more.", content_type="text/plain"))
    if not tracking.is_automated(request):
        services.record_tracked(assignment=assignment, kind=tracking.CLICK)
    return _no_store(HttpResponseRedirect(parsed.target))


@require_safe
@limit_by_address("tracking", "TRACKING_RATE_LIMIT_PER_MINUTE")
def pixel(request: HttpRequest, token: str) -> HttpResponse:
    """A 1x1 transparent GIF recording an open (people only, once per assignment)."""
    try:
        parsed = tracking.unsign(token)
    except tracking.BadToken:
        return _no_store(HttpResponseBadRequest("Bad token.", content_type="text/plain"))
    assignment = _assignment(parsed) if parsed.kind == tracking.OPEN else None
    if assignment is None:
        return _no_store(HttpResponseNotFound("Unknown.", content_type="text/plain"))
    if not tracking.is_automated(request):
        services.record_tracked(assignment=assignment, kind=tracking.OPEN)
    return _no_store(HttpResponse(PIXEL, content_type="image/gif"))
