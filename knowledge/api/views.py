"""The knowledge API: a project's sources (``/projects/{id}/knowledge/``: list, upload or text), one source
(``/knowledge/{id}/``: read, change, delete) and a retrieval preview (``/projects/{id}/knowledge/search/``).

Both are ``TenantViewSet``s: another organization's project or source is a 404, and a key restricted to one
project reaches that project's knowledge only.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from django.db.models.functions import Length
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import validated
from core.ids import parse_uuid
from knowledge import ingest, retrieval, services
from knowledge.api.serializers import (
    KnowledgeSearchSerializer,
    KnowledgeSourceCreateSerializer,
    KnowledgeSourceDetailSerializer,
    KnowledgeSourceSerializer,
    KnowledgeSourceUpdateSerializer,
    KnowledgeTextCreateSerializer,
    RetrievedChunkSerializer,
)
from knowledge.models import KnowledgeSource
from organizations.api.tenancy import TenantViewSet
from projects.models import Project

#: Room for the form fields around an uploaded file in a request's declared length.
FORM_ALLOWANCE_BYTES = 64 * 1024


def _sources(project: Project) -> QuerySet[KnowledgeSource]:
    return (
        KnowledgeSource.objects.filter(project=project)
        .defer("text", "original")
        .annotate(chunk_count=Count("chunks"), characters=Length("text"))
        .order_by("-created_at")
    )


def _csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


class ProjectKnowledgeViewSet(TenantViewSet):
    """A project's knowledge as a whole: its sources, a new one, and what a brief would retrieve."""

    queryset = Project.objects.all()
    serializer_class = KnowledgeSourceSerializer
    project_field = "pk"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before authentication, which may parse the body: a file over the limit is refused from its declared
        # length, without reading it.
        if request.method == "POST":
            length = request.META.get("CONTENT_LENGTH") or "0"
            if length.isdigit() and int(length) > ingest.max_bytes() + FORM_ALLOWANCE_BYTES:
                raise ingest.too_large(int(length))
        super().initial(request, *args, **kwargs)

    @extend_schema(responses=KnowledgeSourceSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="knowledge", url_name="knowledge", pagination_class=None)
    def knowledge(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        return Response(KnowledgeSourceSerializer(_sources(project), many=True).data)

    @extend_schema(
        request={
            "multipart/form-data": KnowledgeSourceCreateSerializer,
            "application/json": KnowledgeTextCreateSerializer,
        },
        responses={201: KnowledgeSourceSerializer, 413: None, 415: None},
        description="A document from a file (plain text, Markdown, HTML, PDF) or from text; it is chunked and "
        "embedded on the queue (status pending, then embedded).",
    )
    @knowledge.mapping.post
    def add_knowledge(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        data = dict(validated(KnowledgeSourceCreateSerializer, request.data).validated_data)
        upload = data.pop("file", None)
        if upload is not None and upload.size is not None and upload.size > ingest.max_bytes():
            raise ingest.too_large(upload.size)
        source = services.create_source(
            organization=self.tenant.organization,
            project=project,
            actor=self.actor,
            title=data.pop("title", "") or (upload.name if upload else ""),
            text=data.pop("text", None),
            data=upload.read(ingest.max_bytes() + 1) if upload is not None else None,
            filename=(upload.name or "") if upload is not None else "",
            declared_mime=getattr(upload, "content_type", "") or "",
            **data,
        )
        return Response(KnowledgeSourceSerializer(source).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[KnowledgeSearchSerializer],
        responses=RetrievedChunkSerializer(many=True),
        description="The chunks a job with this brief (and these filters) would get in its prompt, best first.",
    )
    @action(
        detail=True, methods=["get"], url_path="knowledge/search", url_name="knowledge-search", pagination_class=None
    )
    def knowledge_search(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        wanted = validated(KnowledgeSearchSerializer, request.query_params).validated_data
        filters = services.clean_filters({
            key: value
            for key, value in {
                "kind": sorted(wanted.get("kind") or []),
                "sku": _csv(wanted.get("sku")),
                "tags": _csv(wanted.get("tags")),
                "language": wanted.get("language", ""),
            }.items()
            if value
        })
        chunks = retrieval.retrieve(project, wanted["q"], filters=filters, k=wanted.get("k"))
        return Response(RetrievedChunkSerializer(chunks, many=True).data)


class KnowledgeSourceViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantViewSet
):
    """One knowledge source. ``PATCH`` changes its title, text or metadata (new text is re-embedded);
    ``DELETE`` removes it and its chunks at once."""

    queryset = KnowledgeSource.objects.defer("original").annotate(chunk_count=Count("chunks"))
    serializer_class = KnowledgeSourceDetailSerializer
    project_field = "project"

    @extend_schema(
        parameters=[OpenApiParameter("project", str, description="Only this project's sources.")],
        responses=KnowledgeSourceSerializer(many=True),
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset()).defer("text").annotate(characters=Length("text"))
        queryset = queryset.order_by("-created_at")
        page = self.paginate_queryset(queryset)
        rows = page if page is not None else queryset
        data = KnowledgeSourceSerializer(rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def filter_queryset(self, queryset: QuerySet[KnowledgeSource]) -> QuerySet[KnowledgeSource]:
        if self.action == "list" and (project := self.request.query_params.get("project")):
            project_id = parse_uuid(project)
            queryset = queryset.filter(project_id=project_id) if project_id else queryset.none()
        return queryset

    @extend_schema(request=KnowledgeSourceUpdateSerializer, responses=KnowledgeSourceDetailSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        source = self.get_object()
        data = validated(KnowledgeSourceUpdateSerializer, request.data, partial=True).validated_data
        services.update_source(source=source, actor=self.actor, **data)
        return Response(KnowledgeSourceDetailSerializer(self.get_object()).data)

    def perform_destroy(self, instance: KnowledgeSource) -> None:
        services.delete_source(source=instance, actor=self.actor)
