"""Dashboard pages of a project's knowledge: its sources with their status, an upload form, a retrieval
preview, one source's chunks, and deletion.

Everyone in the organization reads; editors add and delete. Every lookup goes through
``organizations.tenancy.scoped_or_404``: another organization's project or source is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from core.errors import DomainError
from core.web import add_service_error, form_status, post_data
from knowledge import ingest, retrieval, services
from knowledge.forms import SearchForm, SourceForm
from knowledge.models import KnowledgeSource
from organizations.models import Role
from organizations.tenancy import current_organization, current_tenant, scoped_or_404, tenant_required
from projects.models import Project

#: Room for the form fields around an uploaded file in a request's length.
FORM_ALLOWANCE_BYTES = 64 * 1024


def _page(request: HttpRequest, project: Project, form: SourceForm, *, status: int = 200) -> HttpResponse:
    search = SearchForm(request.GET or None)
    results: list[retrieval.RetrievedChunk] = []
    if search.is_valid() and search.cleaned_data["q"].strip():
        skus = [s.strip() for s in search.cleaned_data["sku"].split(",") if s.strip()]
        results = retrieval.retrieve(project, search.cleaned_data["q"], filters={"sku": skus} if skus else None)
    sources = KnowledgeSource.objects.filter(project=project).defer("text", "original").annotate(n=Count("chunks"))
    context = {
        "project": project,
        "form": form,
        "search": search,
        "results": results,
        "sources": sources.order_by("kind", "-created_at"),
        "max_mb": ingest.max_bytes() // 1024 // 1024,
    }
    return render(request, "knowledge/project.html", context, status=status)


@csrf_protect
def _add(request: HttpRequest, project: Project) -> HttpResponse:
    if request.method == "POST" and not current_tenant(request).has_role(Role.EDITOR):
        raise PermissionDenied(_("Adding knowledge needs the editor role or higher."))
    form = SourceForm(post_data(request), request.FILES or None)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        upload = data["file"]
        try:
            if upload is not None and upload.size is not None and upload.size > ingest.max_bytes():
                raise ingest.too_large(upload.size)
            source = services.create_source(
                organization=current_organization(request),
                project=project,
                actor=request.user,
                title=data["title"] or (upload.name if upload else ""),
                text=None if upload else data["text"],
                data=upload.read(ingest.max_bytes() + 1) if upload else None,
                filename=(upload.name or "") if upload else "",
                declared_mime=getattr(upload, "content_type", "") or "",
                sku=data["sku"],
                language=data["language"],
                tags=data["tags"],
                valid_from=data["valid_from"],
                valid_until=data["valid_until"],
            )
        except DomainError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, _("Added “%(title)s”: it is being embedded.") % {"title": source.title})
            return redirect("knowledge:project", pk=project.pk)
    return _page(request, project, form, status=form_status(form))


@csrf_exempt  # checked by _add once the upload is known to fit (csrf_protect reads the body)
@tenant_required(Role.VIEWER)
def project_knowledge(request: HttpRequest, pk: Any) -> HttpResponse:
    """Everyone sees the project's sources and can preview retrieval; editors add sources.

    A file over the limit is refused from the request's declared length, before its body is read.
    """
    project = scoped_or_404(request, Project, pk=pk)
    length = request.META.get("CONTENT_LENGTH") or "0"
    if request.method == "POST" and length.isdigit() and int(length) > ingest.max_bytes() + FORM_ALLOWANCE_BYTES:
        messages.error(request, ingest.too_large(int(length)).detail)
        return _page(request, project, SourceForm(), status=413)
    return _add(request, project)


@tenant_required(Role.VIEWER)
def source_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    source = scoped_or_404(request, KnowledgeSource.objects.select_related("project").defer("original"), pk=pk)
    chunks = source.chunks.only("position", "text", "token_count").order_by("position")
    return render(request, "knowledge/source.html", {"source": source, "chunks": chunks})


@require_POST
@tenant_required(Role.EDITOR)
def source_delete(request: HttpRequest, pk: Any) -> HttpResponse:
    source = scoped_or_404(request, KnowledgeSource.objects.select_related("project"), pk=pk)
    services.delete_source(source=source, actor=request.user)
    messages.success(request, _("Deleted “%(title)s” and its chunks.") % {"title": source.title})
    return redirect("knowledge:project", pk=source.project_id)
