"""Dashboard pages for generation: template gallery, generate form, jobs, history, brand voice, bulk.

Everyone in the organization reads; editors generate and give feedback. Every lookup goes
through ``organizations.tenancy.scoped``, scoped to the current organization: another one's job, variant,
project or batch is a 404.
"""

from __future__ import annotations

import time
import uuid
from functools import partial
from itertools import groupby
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import BooleanField, Count, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from core.errors import DomainError, InvalidInput
from core.web import action_done, action_failed, add_service_error, form_status, htmx_fragment, post_data
from generation import limits, registry, services
from generation.bulk import batch_results_csv, create_bulk_batch
from generation.bulk import progress as bulk_progress
from generation.forms import (
    BrandVoiceForm,
    BulkUploadForm,
    FeedbackForm,
    GenerateForm,
    JobFilterForm,
    ProjectModelForm,
    variable_field_name,
)
from generation.models import BrandVoice, BulkBatch, GenerationJob, JobStatus, Template, TemplateVersion, Variant
from generation.templatetags.generation_tags import category_label
from organizations.models import Role
from organizations.tenancy import (
    current_organization,
    current_tenant,
    scoped,
    scoped_or_404,
    tenant_required,
)
from projects.models import Project
from workers.heartbeat import GENERATION_QUEUE, queue_status

#: Jobs per history page.
HISTORY_PAGE_SIZE = 25
#: Batches listed on the bulk page.
RECENT_BATCHES = 10


# --- scoping -----------------------------------------------------------------------------------


def _can_edit(request: HttpRequest) -> bool:
    return current_tenant(request).has_role(Role.EDITOR)


def _templates(request: HttpRequest) -> QuerySet[Template]:
    """Built-in and own templates that have a version to generate with."""
    has_version = Exists(TemplateVersion.objects.filter(template=OuterRef("pk")))
    return services.templates_for(current_organization(request)).filter(has_version)


def _project_param(request: HttpRequest) -> Project | None:
    """The project named by ``?project=`` when it is one of ours; anything else is ignored."""
    try:
        project_id = uuid.UUID(request.GET.get("project", ""))
    except ValueError:
        return None
    return scoped(request, Project).filter(pk=project_id).first()


# --- gallery and generate form -------------------------------------------------------------------


@tenant_required(Role.VIEWER)
def gallery(request: HttpRequest) -> HttpResponse:
    templates = _templates(request).annotate(version_count=Count("versions")).order_by("category", "name")
    groups = [
        (category_label(category), list(items)) for category, items in groupby(templates, key=lambda t: t.category)
    ]
    return render(request, "generation/gallery.html", {"groups": groups, "project": _project_param(request)})


#: Service refusals that read differently on this page than in the API.
_SUBMIT_MESSAGES = {
    "idempotency_key_reused": "This form was already submitted with other values. Submit it again to start a new job.",
}


def _version_number(request: HttpRequest) -> int | None:
    raw = request.POST.get("version") or request.GET.get("version")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise Http404("No such version.") from None


def _model_choices(organization: Any) -> list[tuple[str, str]]:
    """The models the organization may use, for a select, each saying whether its server answers now."""
    models = list(registry.usable_models(organization).order_by("-is_default", "name"))
    reachable = registry.reachability(models)
    return [
        (m.slug, m.name + ("" if reachable[m.slug].reachable else " (not reachable)")) for m in models
    ]


@tenant_required(Role.EDITOR)
def generate(request: HttpRequest, template_id: Any) -> HttpResponse:
    """GET: the form built from the template's variables. POST: queue a job and go to its page."""
    try:
        version = services.resolve_version(current_organization(request), template_id, _version_number(request))
    except DomainError:
        raise Http404("No such template.") from None
    projects = scoped(request, Project)
    models = _model_choices(current_organization(request))
    form = GenerateForm(version, projects, post_data(request), project=_project_param(request), models=models)
    if form.is_bound and form.is_valid():
        try:
            job, created = services.submit_generation(
                organization=current_organization(request),
                project=form.cleaned_data["project"],
                version=version,
                inputs=form.inputs(),
                params=form.params(),
                actor=request.user,
                idempotency_key=form.idempotency_key(),
            )
        except DomainError as exc:
            add_service_error(form, exc, messages=_SUBMIT_MESSAGES, rename=variable_field_name)
            form.renew_request_id()
        else:
            if not created:
                messages.info(request, _("This form was already submitted: here is its job."))
            return redirect("generation:job", pk=job.pk)
    context = {"form": form, "version": version, "template": version.template, "has_projects": projects.exists()}
    return render(request, "generation/generate.html", context, status=form_status(form))


# --- job page ------------------------------------------------------------------------------------


def _job_context(job: GenerationJob) -> dict[str, Any]:
    variants = job.variants.filter(is_current=True).select_related("job", "job__template_version")
    context = {"job": job, "variants": variants.order_by("index")}
    if job.status == JobStatus.QUEUED:
        context["queue"] = _generation_queue()
    return context


def _generation_queue() -> dict[str, Any] | None:
    """Whether a worker can take a queued job now (heartbeats in Redis); None when that is unknown."""
    try:
        return queue_status([GENERATION_QUEUE])[GENERATION_QUEUE]
    except Exception:  # Redis away or a garbled heartbeat: the page still shows, without the notice
        return None


def _get_job(request: HttpRequest, pk: Any) -> GenerationJob:
    jobs = GenerationJob.objects.select_related("project", "template_version__template", "requested_by", "batch")
    return scoped_or_404(request, jobs, pk=pk)


@tenant_required(Role.VIEWER)
def job_detail(request: HttpRequest, pk: Any, *, status: int = 200) -> HttpResponse:
    job = _get_job(request, pk)
    return render(request, "generation/job.html", _job_context(job), status=status)


@tenant_required(Role.VIEWER)
def job_status(request: HttpRequest, pk: Any) -> HttpResponse:
    """The live part of the job page, polled every second while the job is queued or running."""
    job = _get_job(request, pk)
    return render(request, "generation/_job_live.html", _job_context(job))


@require_POST
@tenant_required(Role.EDITOR)
def job_cancel(request: HttpRequest, pk: Any) -> HttpResponse:
    job = _get_job(request, pk)
    try:
        job = services.cancel_job(job=job, actor=request.user)
    except DomainError as exc:
        return action_failed(request, exc, partial(job_detail, pk=job.pk))
    job = _get_job(request, pk)
    message = "Job canceled." if job.is_final else "Cancel requested; the job stops within a moment."
    return action_done(
        request,
        message,
        redirect_to=reverse("generation:job", args=[job.pk]),
        fragment="generation/_job_live.html",
        context=_job_context(job),
    )


# --- variants ------------------------------------------------------------------------------------


def _get_variant(request: HttpRequest, pk: Any) -> Variant:
    variants = Variant.objects.select_related("job", "job__template_version")
    return scoped_or_404(request, variants, organization_field="job__organization", pk=pk)


def _variant_url(variant: Variant) -> str:
    return reverse("generation:job", args=[variant.job_id]) + f"#variant-{variant.index}"


@require_POST
@tenant_required(Role.EDITOR)
def variant_feedback(request: HttpRequest, pk: Any) -> HttpResponse:
    """Rate, edit, approve or unapprove one variant (whichever fields the form sent)."""
    variant = _get_variant(request, pk)
    form = FeedbackForm(request.POST)
    page = partial(job_detail, pk=variant.job_id)
    if not form.is_valid():
        return action_failed(request, InvalidInput(form.error_text()), page)
    changes = form.changes()
    if not changes:
        return action_failed(request, InvalidInput(_("Nothing to change: send a rating, a text or an approval.")), page)
    try:
        variant = services.give_feedback(variant=variant, actor=request.user, **changes)
    except DomainError as exc:
        return action_failed(request, exc, page)
    return action_done(
        request,
        _feedback_message(variant, changes),
        redirect_to=_variant_url(variant),
        fragment="generation/_variant.html",
        context={"variant": variant, "job": variant.job},
    )


def _feedback_message(variant: Variant, changes: dict[str, Any]) -> str:
    number = {"number": variant.index + 1}
    if "approved" in changes:
        return (
            _("Variant %(number)s approved.") if variant.approved else _("Variant %(number)s is no longer approved.")
        ) % number
    if "edited_text" in changes:
        return (
            _("Variant %(number)s edited.") if variant.edited_text
            else _("Variant %(number)s is back to the generated text.")
        ) % number
    return _("Variant %(number)s rated %(rating)s of 5.") % {**number, "rating": variant.rating}


@require_POST
@tenant_required(Role.EDITOR)
def variant_regenerate(request: HttpRequest, pk: Any) -> HttpResponse:
    variant = _get_variant(request, pk)
    try:
        variant = services.regenerate_variant(variant=variant)
    except DomainError as exc:
        return action_failed(request, exc, partial(job_detail, pk=variant.job_id))
    context = {
        "variant": variant,
        "job": variant.job,
        "pending_after": variant.revision,
        "pending_since": int(time.time()),
    }
    return action_done(
        request,
        f"Regenerating variant {variant.index + 1}…",
        redirect_to=_variant_url(variant),
        fragment="generation/_variant.html",
        context=context,
    )


@tenant_required(Role.VIEWER)
def variant_card(request: HttpRequest, pk: Any, index: int) -> HttpResponse:
    """One variant's card; with ``?after=<revision>`` it keeps polling until a newer revision is stored."""
    job = _get_job(request, pk)
    variant = get_object_or_404(
        Variant.objects.select_related("job", "job__template_version"), job=job, index=index, is_current=True
    )
    context: dict[str, Any] = {"variant": variant, "job": job}
    try:
        after, since = int(request.GET.get("after", "")), int(request.GET.get("since", ""))
    except ValueError:
        after = since = None  # type: ignore[assignment]
    if after is None:
        return render(request, "generation/_variant.html", context)
    label = _("Variant %(number)s") % {"number": variant.index + 1}
    if variant.revision <= after:
        if time.time() - since < settings.GENERATION_JOB_DEADLINE_S:
            context.update(pending_after=after, pending_since=since)
            return render(request, "generation/_variant.html", context)
        context["pending_stalled"] = True
        messages.warning(
            request, _("%(label)s: the new take is taking long; reload the page later.") % {"label": label}
        )
    else:
        messages.success(request, _("%(label)s has a new take.") % {"label": label})
    # The last poll replaces the "Regenerating variant N…" notice, which would otherwise stay up.
    return htmx_fragment(request, "generation/_variant.html", context)


# --- history -------------------------------------------------------------------------------------


def _search_inputs(jobs: QuerySet[GenerationJob], text: str) -> QuerySet[GenerationJob]:
    """Jobs with an input value containing ``text`` (values only: keys like "product" do not match)."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    table = GenerationJob._meta.db_table
    # The text only ever travels as a query parameter; the table name is our own.
    matches = RawSQL(  # noqa: S611
        f'EXISTS (SELECT 1 FROM jsonb_each_text("{table}"."inputs") AS input WHERE input.value ILIKE %s)',  # noqa: S608
        [pattern],
        output_field=BooleanField(),
    )
    return jobs.filter(matches)


@tenant_required(Role.VIEWER)
def history(request: HttpRequest) -> HttpResponse:
    form = JobFilterForm(request.GET or None, projects=scoped(request, Project), templates=_templates(request))
    filters = form.filters() if form.is_bound else {}
    jobs = scoped(request, GenerationJob).select_related("project", "template_version__template", "requested_by")
    if filters.get("q"):
        jobs = _search_inputs(jobs, filters["q"])
    if filters.get("status"):
        jobs = jobs.filter(status=filters["status"])
    if filters.get("project"):
        jobs = jobs.filter(project=filters["project"])
    if filters.get("template"):
        jobs = jobs.filter(template_version__template=filters["template"])
    jobs = jobs.annotate(variant_count=Count("variants", filter=Q(variants__is_current=True))).order_by("-created_at")
    page = Paginator(jobs, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "page": page, "filtered": bool(filters)}
    return render(request, "generation/history.html", context)


# --- brand voice ---------------------------------------------------------------------------------


@tenant_required(Role.VIEWER)
def brand_voice(request: HttpRequest, pk: Any) -> HttpResponse:
    """Everyone reads a project's brand voice; editors change it."""
    project = scoped_or_404(request, Project, pk=pk)
    can_edit = _can_edit(request)
    if request.method == "POST" and not can_edit:
        raise PermissionDenied(_("Changing the brand voice needs the editor role or higher."))
    voice = BrandVoice.objects.filter(project=project).first()
    form = BrandVoiceForm.for_voice(voice, post_data(request), read_only=not can_edit)
    if form.is_bound and form.is_valid():
        try:
            services.save_brand_voice(actor=request.user, project=project, **form.cleaned_data)
        except DomainError as exc:
            add_service_error(form, exc, rename=variable_field_name)
        else:
            messages.success(request, _("Brand voice of %(name)s saved.") % {"name": project.name})
            return redirect("generation:brand_voice", pk=project.pk)
    context = {"form": form, "project": project, "voice": voice}
    return render(request, "generation/brand_voice.html", context, status=form_status(form))


# --- models --------------------------------------------------------------------------------------


@tenant_required(Role.VIEWER)
def project_models(request: HttpRequest, pk: Any) -> HttpResponse:
    """The models the project may run on, whether each answers now, and the project's default (editors)."""
    project = scoped_or_404(request, Project, pk=pk)
    can_edit = _can_edit(request)
    if request.method == "POST" and not can_edit:
        raise PermissionDenied(_("Choosing the project's model needs the editor role or higher."))
    global_default = registry.default_model()
    models = list(registry.usable_models(project.organization).order_by("name", "slug"))
    current = registry.settings_for(project)
    initial = {"default_model": current.default_model.slug if current.default_model_id else ""}
    form = ProjectModelForm(
        post_data(request),
        initial=initial,
        choices=[(m.slug, f"{m.name} ({m.slug})") for m in models],
        global_default=global_default.slug,
    )
    if not can_edit:
        form.fields["default_model"].disabled = True
    if form.is_bound and form.is_valid():
        try:
            registry.save_project_settings(
                actor=request.user, project=project, default_model=form.cleaned_data["default_model"] or None
            )
        except DomainError as exc:
            add_service_error(form, exc, {"model": "default_model"})
        else:
            messages.success(request, _("Default model of %(name)s saved.") % {"name": project.name})
            return redirect("generation:project_models", pk=project.pk)
    reach = registry.reachability(models)
    in_use = current.default_model if current.default_model_id else global_default
    rows = [{"model": m, "reach": reach.get(m.slug), "in_use": m.pk == in_use.pk} for m in models]
    context = {"form": form, "project": project, "rows": rows, "global_default": global_default}
    return render(request, "generation/project_models.html", context, status=form_status(form))


# --- bulk ----------------------------------------------------------------------------------------


def _bulk_page(
    request: HttpRequest, form: BulkUploadForm, *, status: int = 200, rejected_rows: list[Any] | None = None
) -> HttpResponse:
    batches = scoped(request, BulkBatch).select_related("project", "template_version__template", "created_by")
    context = {
        "form": form,
        "batches": batches[:RECENT_BATCHES],
        "has_projects": scoped(request, Project).exists(),
        "rejected_rows": rejected_rows or [],
    }
    return render(request, "generation/bulk.html", context, status=status)


@tenant_required(Role.VIEWER)
def bulk_upload(request: HttpRequest) -> HttpResponse:
    """Everyone sees the recent batches; editors upload a CSV to start one."""

    if request.method == "POST" and not _can_edit(request):
        raise PermissionDenied(_("Bulk generation needs the editor role or higher."))
    form = BulkUploadForm(
        post_data(request),
        request.FILES or None,
        projects=scoped(request, Project),
        templates=_templates(request),
        initial={"project": _project_param(request)},
    )
    rejected_rows = None
    if form.is_bound and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            batch = create_bulk_batch(
                organization=current_organization(request),
                project=form.cleaned_data["project"],
                version=services.resolve_version(current_organization(request), form.cleaned_data["template"].pk),
                # One byte over the limit is enough for the service to refuse a file that is too large.
                data=upload.read(limits.BULK_MAX_BYTES + 1),
                filename=upload.name or "",
                params=form.params(),
                actor=request.user,
                api_key=None,
            )
        except DomainError as exc:
            if exc.code == "no_valid_rows":
                rejected_rows = [(key.removeprefix("line "), errors) for key, errors in exc.fields.items()]
            add_service_error(form, exc, rename=variable_field_name)
        else:
            queued, skipped = batch.total_rows - len(batch.row_errors), len(batch.row_errors)
            started = ngettext(
                "Batch started: %(queued)d job queued.", "Batch started: %(queued)d jobs queued.", queued
            )
            if skipped:
                started += " " + ngettext("%(skipped)d row skipped.", "%(skipped)d rows skipped.", skipped)
            messages.success(request, started % {"queued": queued, "skipped": skipped})
            return redirect("generation:batch", pk=batch.pk)
    return _bulk_page(request, form, status=form_status(form), rejected_rows=rejected_rows)


def _batch_context(batch: BulkBatch) -> dict[str, Any]:
    jobs = batch.jobs.annotate(variant_count=Count("variants", filter=Q(variants__is_current=True)))
    return {"batch": batch, "jobs": jobs.order_by("batch_line"), "progress": bulk_progress(batch)}


def _get_batch(request: HttpRequest, pk: Any) -> BulkBatch:
    batches = BulkBatch.objects.select_related("project", "template_version__template", "created_by")
    return scoped_or_404(request, batches, pk=pk)


@tenant_required(Role.VIEWER)
def batch_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    return render(request, "generation/batch.html", _batch_context(_get_batch(request, pk)))


@tenant_required(Role.VIEWER)
def batch_progress(request: HttpRequest, pk: Any) -> HttpResponse:
    """The batch's live rows, polled while any job is still queued or running."""
    return render(request, "generation/_batch_live.html", _batch_context(_get_batch(request, pk)))


@tenant_required(Role.VIEWER)
def batch_results(request: HttpRequest, pk: Any) -> HttpResponse:

    batch = _get_batch(request, pk)
    response = HttpResponse(batch_results_csv(batch), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="loom-batch-{batch.pk}.csv"'
    return response
