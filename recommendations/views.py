"""Dashboard pages for recommendations: data import with its row report, recommendation jobs with
their metrics, customer profiles, item pages and personalized campaigns.

Everyone in the organization reads; editors import, train and start campaigns. Every lookup goes
through ``organizations.tenancy.scoped``, scoped to the current organization: another one's row is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from core.errors import DomainError
from core.web import action_done, action_failed, add_service_error, form_status, post_data
from experiments.models import Experiment
from experiments.models import Status as ExperimentStatus
from generation import services as generation
from organizations.models import Role
from organizations.tenancy import (
    current_organization,
    current_tenant,
    scoped,
    scoped_or_404,
    tenant_required,
)
from projects.models import Project
from recommendations import importing, results, services
from recommendations.forms import (
    CampaignForm,
    CustomerFilterForm,
    ImportForm,
    SettingsForm,
    StartJobForm,
    campaign_templates,
)
from recommendations.models import (
    Campaign,
    CatalogItem,
    Customer,
    DataImport,
    Event,
    Recommendation,
    RecommendationJob,
    SimilarItem,
)

#: Rows per page of the customer list and of a profile's history.
PAGE_SIZE = 50
#: Imports, jobs and campaigns listed on their pages.
RECENT = 20
#: How the import report names each outcome (recommendations.importing.OUTCOMES).
OUTCOME_LABELS = {
    "imported": "Imported (new events)",
    "returns_imported": "Cancellations, stored as returns",
    "already_imported": "Already imported",
    "duplicate_in_file": "Repeated row in the file",
    "missing_customer": "No customer id",
    "non_product": "Not a product (postage, fees)",
    "unknown_item": "Unknown item",
    "negative_quantity": "Negative quantity (not a cancellation)",
    "rejected": "Rejected (see below)",
}
#: Room for the form fields around an uploaded file in a request's length.
FORM_ALLOWANCE_BYTES = 64 * 1024


def _can_edit(request: HttpRequest) -> bool:
    return current_tenant(request).has_role(Role.EDITOR)


def _require_editor(request: HttpRequest, what: str) -> None:
    if request.method == "POST" and not _can_edit(request):
        raise PermissionDenied(f"{what} needs the editor role or higher.")


# --- data: import --------------------------------------------------------------------------------


def _data_page(request: HttpRequest, form: ImportForm, *, status: int = 200) -> HttpResponse:
    projects = scoped(request, Project).annotate(
        item_count=Count("catalog_items", distinct=True), customer_count=Count("customers", distinct=True)
    )
    event_counts = dict(
        scoped(request, Event).order_by().values_list("project").annotate(
            n=Count("pk")
        )
    )
    context = {
        "form": form,
        "projects": [(p, event_counts.get(p.pk, 0)) for p in projects.order_by("name")],
        "imports": scoped(request, DataImport).select_related("project", "created_by")[:RECENT],
        "max_mb": importing.max_bytes() // 1024 // 1024,
        "has_projects": projects.exists(),
    }
    return render(request, "recommendations/data.html", context, status=status)


@csrf_protect
def _import(request: HttpRequest) -> HttpResponse:
    _require_editor(request, "Importing data")
    form = ImportForm(post_data(request), request.FILES or None, projects=scoped(request, Project))
    if form.is_bound and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            if upload.size is not None and upload.size > importing.max_bytes():
                raise importing.too_large(upload.size)
            data_import = importing.import_events(
                organization=current_organization(request),
                project=form.cleaned_data["project"],
                data=upload.read(importing.max_bytes() + 1),
                filename=upload.name or "",
                mapping=form.cleaned_data["mapping"],
                exclude_skus=form.cleaned_data["exclude_skus"],
                actor=request.user,
            )
        except DomainError as exc:
            add_service_error(form, exc)
        else:
            created = data_import.events_created
            messages.success(
                request,
                ngettext(
                    "Imported %(rows)s rows: %(created)s new event.", "Imported %(rows)s rows: %(created)s new events.",
                    created,
                ) % {"rows": intcomma(data_import.total_rows), "created": intcomma(created)},
            )
            return redirect("recommendations:import", pk=data_import.pk)
    return _data_page(request, form, status=form_status(form))


@csrf_exempt  # checked by _import once the upload is known to fit (csrf_protect reads the body)
@tenant_required(Role.VIEWER)
def data(request: HttpRequest) -> HttpResponse:
    """Everyone sees the data per project and the recent imports; editors upload a CSV file.

    A file over the limit is refused from the request's declared length, before its body is read.
    """
    length = request.META.get("CONTENT_LENGTH") or "0"
    if request.method == "POST" and length.isdigit() and int(length) > importing.max_bytes() + FORM_ALLOWANCE_BYTES:
        messages.error(request, importing.too_large(int(length)).detail)
        return _data_page(request, ImportForm(projects=scoped(request, Project)), status=413)
    return _import(request)


@tenant_required(Role.VIEWER)
def import_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    data_import = scoped_or_404(request, DataImport.objects.select_related("project", "created_by"), pk=pk)
    report = data_import.report
    examples = report.get("example_lines", {})
    outcomes = [
        (name, label, report.get("outcomes", {}).get(name, 0), examples.get(name, []))
        for name, label in OUTCOME_LABELS.items()
    ]
    context = {"data_import": data_import, "report": report, "outcomes": outcomes}
    return render(request, "recommendations/import.html", context)


# --- recommendation jobs -------------------------------------------------------------------------


def _settings_initial(project: Project) -> dict[str, Any]:
    return {"exclude_purchased": services.settings_for(project).exclude_purchased}


def _jobs_page(
    request: HttpRequest, form: StartJobForm | None = None, *, status: int = 200
) -> HttpResponse:
    projects = scoped(request, Project)
    form = form or StartJobForm(projects=projects)
    jobs = scoped(request, RecommendationJob).select_related("project", "requested_by")[:RECENT]
    settings_forms = [
        (project, SettingsForm(initial=_settings_initial(project), auto_id=f"id_{project.pk.hex}_%s"))
        for project in projects.order_by("name")
    ]
    context = {"form": form, "jobs": jobs, "settings_forms": settings_forms, "has_projects": projects.exists()}
    return render(request, "recommendations/jobs.html", context, status=status)


@tenant_required(Role.VIEWER)
def jobs(request: HttpRequest) -> HttpResponse:
    """Everyone sees the jobs and their metrics; editors start one."""
    _require_editor(request, "Starting a recommendation job")
    form = StartJobForm(post_data(request), projects=scoped(request, Project))
    if form.is_bound and form.is_valid():
        try:
            job = services.start_recommendation_job(
                organization=current_organization(request),
                project=form.cleaned_data["project"],
                actor=request.user,
                k=form.cleaned_data["k"],
                holdout_days=form.cleaned_data["holdout_days"],
            )
        except DomainError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, _("Recommendation job queued."))
            return redirect("recommendations:job", pk=job.pk)
    return _jobs_page(request, form, status=form_status(form))


@require_POST
@tenant_required(Role.EDITOR)
def project_settings(request: HttpRequest, pk: Any) -> HttpResponse:
    project = scoped_or_404(request, Project, pk=pk)
    form = SettingsForm(request.POST)
    form.is_valid()  # a checkbox: absent means False, nothing can be invalid
    try:
        saved = services.save_settings(
            actor=request.user, project=project, exclude_purchased=form.cleaned_data["exclude_purchased"]
        )
    except DomainError as exc:
        return action_failed(request, exc, _jobs_page)
    state = "excluded" if saved.exclude_purchased else "allowed"
    message = f"{project.name}: items a customer already bought are {state}."
    return action_done(request, message, redirect_to=reverse("recommendations:jobs"))


def _get_job(request: HttpRequest, pk: Any) -> RecommendationJob:
    return scoped_or_404(request, RecommendationJob.objects.select_related("project", "requested_by"), pk=pk)


def _job_context(job: RecommendationJob) -> dict[str, Any]:
    metrics = job.metrics or {}
    rows = []
    labels = (("precision", "Precision@K"), ("recall", "Recall@K"), ("ndcg", "NDCG@K"), ("coverage", "Coverage"))
    for name, label in labels:
        model = (metrics.get("model") or {}).get(name)
        baseline = (metrics.get("popularity") or {}).get(name)
        ratio = model / baseline if model is not None and baseline else None
        rows.append({"label": label, "model": model, "baseline": baseline, "ratio": ratio})
    sample = (
        Recommendation.objects.filter(job=job, rank=1).select_related("customer", "item").order_by("-score")[:10]
        if job.is_final
        else []
    )
    return {"job": job, "metric_rows": rows, "has_metrics": "model" in metrics, "sample": sample}


@tenant_required(Role.VIEWER)
def job_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    return render(request, "recommendations/job.html", _job_context(_get_job(request, pk)))


@tenant_required(Role.VIEWER)
def job_status(request: HttpRequest, pk: Any) -> HttpResponse:
    """The live part of the job page, polled while the job is queued or running."""
    return render(request, "recommendations/_job_live.html", _job_context(_get_job(request, pk)))


# --- customers and items -------------------------------------------------------------------------


@tenant_required(Role.VIEWER)
def customers(request: HttpRequest) -> HttpResponse:
    form = CustomerFilterForm(request.GET or None, projects=scoped(request, Project))
    filters = form.filters() if form.is_bound else {}
    rows = scoped(request, Customer).select_related("project")
    if filters.get("project"):
        rows = rows.filter(project=filters["project"])
    if filters.get("q"):
        rows = rows.filter(external_id__icontains=filters["q"])
    if filters.get("country"):
        rows = rows.filter(attributes__country__iexact=filters["country"])
    rows = rows.annotate(event_count=Count("events")).order_by("project__name", "external_id")
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "recommendations/customers.html", {"form": form, "page": page, "filtered": bool(filters)})


@tenant_required(Role.VIEWER)
def customer_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    customer = scoped_or_404(request, Customer.objects.select_related("project"), pk=pk)
    history = Event.objects.filter(customer=customer).select_related("item").order_by("-occurred_at", "-id")
    job, recommended = services.recommendations_for(customer)
    counts = dict(history.order_by().values_list("type").annotate(n=Count("pk")))
    context = {
        "customer": customer,
        "page": Paginator(history, PAGE_SIZE).get_page(request.GET.get("page")),
        "counts": counts,
        "job": job,
        "recommended": recommended,
    }
    return render(request, "recommendations/customer.html", context)


@tenant_required(Role.VIEWER)
def item_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    item = scoped_or_404(request, CatalogItem.objects.select_related("project").defer("embedding"), pk=pk)
    job = services.latest_job(item.project)
    similar = (
        SimilarItem.objects.filter(job=job, item=item).select_related("similar").order_by("rank") if job else []
    )
    stats = Event.objects.filter(item=item).aggregate(
        events=Count("pk"), customers=Count("customer", distinct=True)
    )
    return render(request, "recommendations/item.html", {"item": item, "job": job, "similar": similar, **stats})


# --- campaigns -----------------------------------------------------------------------------------


def _campaign_form(request: HttpRequest) -> CampaignForm:
    templates = campaign_templates(generation.templates_for(current_organization(request)))
    running = scoped(request, Experiment).filter(status=ExperimentStatus.RUNNING).select_related("project")
    return CampaignForm(
        post_data(request), projects=scoped(request, Project), templates=templates, experiments=running
    )


def _campaigns_page(request: HttpRequest, form: CampaignForm | None = None, *, status: int = 200) -> HttpResponse:
    campaigns = scoped(request, Campaign).select_related("project", "template_version__template", "created_by")
    rows = [(c, results.progress(c)) for c in campaigns[:RECENT]]
    context = {
        "form": form or _campaign_form(request),
        "campaigns": rows,
        "has_projects": scoped(request, Project).exists(),
    }
    return render(request, "recommendations/campaigns.html", context, status=status)


@tenant_required(Role.VIEWER)
def campaigns(request: HttpRequest) -> HttpResponse:
    """Everyone sees the campaigns; editors start one."""
    _require_editor(request, "Starting a campaign")
    form = _campaign_form(request)
    if form.is_bound and form.is_valid():
        try:
            campaign = services.create_campaign(
                organization=current_organization(request),
                project=form.cleaned_data["project"],
                name=form.cleaned_data["name"],
                template=form.cleaned_data["template"],
                segment=form.segment(),
                items_per_customer=form.cleaned_data["items_per_customer"],
                extra_inputs=form.cleaned_data["inputs"],
                experiment=form.cleaned_data["experiment"],
                landing_url=form.cleaned_data["landing_url"],
                actor=request.user,
            )
        except DomainError as exc:
            add_service_error(
                form, exc, {"segment.countries": "countries", "segment.limit": "limit", "inputs": "inputs"}
            )
        else:
            if campaign.is_experiment:
                assigned = campaign.recipients.count()
                started = ngettext(
                    "Campaign started: %(assigned)d customer assigned an arm.",
                    "Campaign started: %(assigned)d customers assigned an arm.",
                    assigned,
                ) % {"assigned": assigned}
            else:
                queued = campaign.recipients.filter(job__isnull=False).count()
                started = ngettext(
                    "Campaign started: %(queued)d job queued.", "Campaign started: %(queued)d jobs queued.", queued
                ) % {"queued": queued}
            messages.success(request, started)
            return redirect("recommendations:campaign", pk=campaign.pk)
    return _campaigns_page(request, form, status=form_status(form))


def _get_campaign(request: HttpRequest, pk: Any) -> Campaign:
    queryset = Campaign.objects.select_related("project", "template_version__template", "created_by", "experiment")
    return scoped_or_404(request, queryset, pk=pk)


def _campaign_context(campaign: Campaign) -> dict[str, Any]:
    return {
        "campaign": campaign,
        "progress": results.progress(campaign),
        "rows": results.results(results.recipients(campaign)),
    }


@tenant_required(Role.VIEWER)
def campaign_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    return render(request, "recommendations/campaign.html", _campaign_context(_get_campaign(request, pk)))


@tenant_required(Role.VIEWER)
def campaign_progress(request: HttpRequest, pk: Any) -> HttpResponse:
    """The campaign's live rows, polled until every customer's copy is written."""
    return render(request, "recommendations/_campaign_live.html", _campaign_context(_get_campaign(request, pk)))


@tenant_required(Role.VIEWER)
def campaign_results(request: HttpRequest, pk: Any) -> HttpResponse:
    campaign = _get_campaign(request, pk)
    response = HttpResponse(results.results_csv(campaign), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="loom-campaign-{campaign.pk}.csv"'
    return response

