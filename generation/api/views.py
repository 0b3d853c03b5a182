"""The generation API: templates, brand voices, jobs and variants, exports, webhooks and bulk CSV.

Every viewset is a ``TenantViewSet``: another organization's object is a 404, and a
key restricted to one project reaches that project's jobs, variants, batches,
brand voice and exports only.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from django.http import HttpResponse, HttpResponseBase
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import download, download_negotiation, no_content, validated
from core.errors import Forbidden
from core.ids import parse_uuid
from core.schema import CSV_FILE
from generation import bulk, exports, limits, services, streaming, webhooks
from generation.api.serializers import (
    BrandVoiceSerializer,
    BulkBatchSerializer,
    BulkCreateSerializer,
    CreatedWebhookSerializer,
    JobCreateSerializer,
    JobFilterSerializer,
    JobSerializer,
    TemplateCreateSerializer,
    TemplateDetailSerializer,
    TemplateFilterSerializer,
    TemplateSerializer,
    TemplateVersionCreateSerializer,
    TemplateVersionSerializer,
    VariantFeedbackSerializer,
    VariantFilterSerializer,
    VariantSerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
)
from generation.models import BrandVoice, BulkBatch, GenerationJob, Template, Variant, Webhook
from organizations.api.tenancy import TenantViewSet
from organizations.models import Role
from projects.api.scoping import ProjectScopedCreate
from projects.models import Project

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Retry safely: the same key with the same body returns the first job (200, header "
    "`Idempotent-Replayed: true`); with a different body it is a 409 `idempotency_key_reused`.",
)


# --- templates ---------------------------------------------------------------------------------


#: ``/templates/{id}/``: jobs name a template by id or slug, so its own URL takes either.
TEMPLATE_ID_OR_SLUG = OpenApiParameter(
    "id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    pattern=r"^[-a-zA-Z0-9_]+$",
    description="The template's id or slug; the organization's own template before a built-in of the same slug.",
)


@extend_schema_view(retrieve=extend_schema(parameters=[TEMPLATE_ID_OR_SLUG]))
class TemplateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, TenantViewSet):
    """The built-in template library plus the organization's own templates. Built-ins are read-only."""

    queryset = Template.objects.prefetch_related("versions")
    shared_rows = {"organization__isnull": True}
    slug_lookup_field = "slug"
    serializer_class = TemplateSerializer

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return TemplateDetailSerializer if self.action == "retrieve" else TemplateSerializer

    @extend_schema(parameters=[TemplateFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[Template]) -> QuerySet[Template]:
        if self.action == "list":
            wanted = validated(TemplateFilterSerializer, self.request.query_params).validated_data
            if wanted.get("category"):
                queryset = queryset.filter(category=wanted["category"])
        return queryset

    @extend_schema(request=TemplateCreateSerializer, responses={201: TemplateDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(TemplateCreateSerializer, request.data).validated_data
        version = services.create_template(actor=self.actor, organization=self.tenant.organization, **data)
        template = Template.objects.prefetch_related("versions").get(pk=version.template_id)
        return Response(TemplateDetailSerializer(template).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[TEMPLATE_ID_OR_SLUG], responses=TemplateVersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        versions = self.get_object().versions.order_by("-version")
        return Response(TemplateVersionSerializer(versions, many=True).data)

    @extend_schema(
        parameters=[TEMPLATE_ID_OR_SLUG],
        request=TemplateVersionCreateSerializer,
        responses={201: TemplateVersionSerializer},
    )
    @versions.mapping.post
    def add_version(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        template = self.get_object()
        if template.is_builtin:
            raise Forbidden(
                gettext("Built-in templates are read-only; create your own template instead."), code="builtin"
            )
        data = validated(TemplateVersionCreateSerializer, request.data).validated_data
        version = services.add_template_version(actor=self.actor, template=template, **data)
        return Response(TemplateVersionSerializer(version).data, status=status.HTTP_201_CREATED)


# --- a project's brand voice and exports -------------------------------------------------------


class ProjectContentViewSet(TenantViewSet):
    """What belongs to one project as a whole: its brand voice and the export of its copy."""

    queryset = Project.objects.all()
    serializer_class = BrandVoiceSerializer  # what OPTIONS describes for PUT
    project_field = "pk"

    @extend_schema(responses=BrandVoiceSerializer)
    @action(detail=True, methods=["get"], url_path="brand-voice", url_name="brand-voice")
    def brand_voice(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        voice = BrandVoice.objects.filter(project=project).first() or BrandVoice(project=project)
        return Response(BrandVoiceSerializer(voice).data)

    @extend_schema(request=BrandVoiceSerializer, responses=BrandVoiceSerializer)
    @brand_voice.mapping.put
    def replace_brand_voice(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._save_brand_voice(request, partial=False)

    @extend_schema(request=BrandVoiceSerializer, responses=BrandVoiceSerializer)
    @brand_voice.mapping.patch
    def update_brand_voice(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._save_brand_voice(request, partial=True)

    def _save_brand_voice(self, request: Request, *, partial: bool) -> Response:
        project = self.get_object()
        data = validated(BrandVoiceSerializer, request.data, partial=partial).validated_data
        voice = services.save_brand_voice(actor=self.actor, project=project, **data)
        return Response(BrandVoiceSerializer(voice).data)

    @extend_schema(operation_id="projects_export_csv", responses={(200, "text/csv"): CSV_FILE})
    @action(
        detail=True, methods=["get"], url_path="export.csv", url_name="export-csv",
        content_negotiation_class=download_negotiation("text/csv"),
    )
    def export_csv(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        """Every current variant of the project with its job's inputs, template and feedback."""
        project = self.get_object()
        return download(exports.export_csv(project), "text/csv; charset=utf-8", f"{project.slug}.csv")

    @extend_schema(
        operation_id="projects_export_jsonl",
        parameters=[
            OpenApiParameter("all", OpenApiTypes.BOOL, description="Every variant, not only approved or rated 4+.")
        ],
        responses={(200, "application/jsonl"): OpenApiResponse(OpenApiTypes.STR, description="Chat JSONL.")},
    )
    @action(
        detail=True, methods=["get"], url_path="export.jsonl", url_name="export-jsonl",
        content_negotiation_class=download_negotiation("application/jsonl"),
    )
    def export_jsonl(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        """Fine-tuning data: one chat conversation (system, user, assistant) per line."""
        project = self.get_object()
        include_all = request.query_params.get("all", "").lower() in {"1", "true", "yes"}
        body = exports.export_jsonl(project, include_all=include_all)
        return download(body, "application/jsonl; charset=utf-8", f"{project.slug}.jsonl")


# --- jobs and variants -------------------------------------------------------------------------

_CURRENT_VARIANTS = Prefetch(
    "variants", queryset=Variant.objects.filter(is_current=True).order_by("index"), to_attr="current_variants"
)


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedCreate, TenantViewSet):
    """Generation jobs. ``POST`` validates and queues one; its variants appear as it runs."""

    queryset = GenerationJob.objects.select_related(
        "template_version__template", "serving_model", "adapter"
    ).prefetch_related(
        _CURRENT_VARIANTS
    )
    serializer_class = JobSerializer
    project_field = "project"

    @extend_schema(parameters=[JobFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[GenerationJob]) -> QuerySet[GenerationJob]:
        if self.action != "list":
            return queryset
        wanted = validated(JobFilterSerializer, self.request.query_params).validated_data
        for name, lookup in (
            ("status", "status"),
            ("project", "project_id"),
            ("batch", "batch_id"),
            ("created_after", "created_at__gte"),
            ("created_before", "created_at__lt"),
        ):
            if name in wanted:
                queryset = queryset.filter(**{lookup: wanted[name]})
        if wanted.get("template"):
            template = wanted["template"]
            matches = Q(template_version__template__slug=template)
            if parse_uuid(template) is not None:
                matches |= Q(template_version__template_id=parse_uuid(template))
            queryset = queryset.filter(matches)
        if wanted.get("search"):
            queryset = queryset.filter(inputs__icontains=wanted["search"])
        return queryset

    @extend_schema(
        parameters=[IDEMPOTENCY_KEY],
        request=JobCreateSerializer,
        responses={201: JobSerializer, 200: OpenApiResponse(JobSerializer, description="An idempotent replay.")},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = validated(JobCreateSerializer, request.data)
        data = serializer.validated_data
        project = self.project_in_scope(data["project"])
        version = services.resolve_version(self.tenant.organization, data["template"], data.get("template_version"))
        job, created = services.submit_generation(
            organization=self.tenant.organization,
            project=project,
            version=version,
            inputs=data["inputs"],
            params=serializer.parameters(),
            actor=self.actor,
            api_key=self.tenant.api_key,
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            knowledge_filters=data.get("knowledge_filters"),
        )
        if created:
            # Answered from the job just made: it has no variants yet, and its version (with the template)
            # is the one resolved above. Reading it back cost two queries on the API's busiest write.
            job.current_variants = []
            return Response(JobSerializer(job).data, status=201)
        response = Response(JobSerializer(self.get_queryset().get(pk=job.pk)).data)
        response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Cancel a queued job at once, or ask a running one to stop (it ends as canceled)."""
        job = services.cancel_job(job=self.get_object(), actor=self.actor)
        return Response(JobSerializer(self.get_queryset().get(pk=job.pk)).data)


STREAM_DESCRIPTION = """Server-Sent Events: the job's text as it is written, then its final state.

Events (`data` is JSON; `id` is the position in the stream):

* `start` `{"attempt": 1, "variants": 2}`: the job's text begins (or begins again: drop what you have).
* `delta` `{"variant": 0, "text": "Soft linen"}`: text that variant wrote next. After the last `start`,
  a variant's deltas add up to its stored text.
* `end` `{"status": "succeeded", "failure_reason": ""}`: the job is final and its variants are stored
  (`GET /api/v1/variants/?job={id}`); the stream closes.

Lines starting with `:` are keepalives. A connection closes after a few minutes; reconnect with the
header `Last-Event-ID` (browsers' EventSource does so by itself) to get exactly what you missed. A job
already final is answered at once, from the stream or, once it has expired, from the stored variants
(ids `stored-1`, `stored-2`, ...)."""


#: One event of the stream (the schema of each event, as OpenAPI 3.2's ``itemSchema`` reads it).
STREAM_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "Send back as `Last-Event-ID` to resume after this event."},
        "event": {"type": "string", "enum": ["start", "delta", "end"]},
        "data": {"type": "string", "description": "The event's JSON (see above)."},
        "retry": {"type": "integer", "description": "Milliseconds to wait before reconnecting."},
    },
}


class JobStreamViewSet(TenantViewSet):
    """A job's events as they happen (``GET /jobs/{id}/stream``): its own viewset, so the API sweeps
    point it at a finished job (tests/api_routes.py) and an unfinished one never holds them."""

    queryset = GenerationJob.objects.all()
    serializer_class = JobSerializer  # what OPTIONS describes
    project_field = "project"

    @extend_schema(
        operation_id="jobs_stream",
        description=STREAM_DESCRIPTION,
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Resume after this event (the `id` of the last event received); an id this "
                "stream never sent replays it from its `start`.",
            )
        ],
        responses={
            (200, streaming.CONTENT_TYPE): OpenApiResponse(STREAM_EVENT, description="The event stream."),
            (503, "application/json"): OpenApiResponse(description="This server follows as many streams as it can."),
        },
    )
    @action(
        detail=True, methods=["get"], url_path="stream", url_name="stream",
        content_negotiation_class=download_negotiation(streaming.CONTENT_TYPE),
    )
    def stream(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return streaming.response_for(self.get_object(), request.headers.get("Last-Event-ID"))


class VariantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """The current variants of jobs: listed (``?job=`` for one job's), feedback (rating, edits, approval)
    and regeneration."""

    queryset = Variant.objects.filter(is_current=True)
    serializer_class = VariantSerializer
    organization_field = "job__organization"
    project_field = "job__project"

    @extend_schema(parameters=[VariantFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Newest jobs first, each job's variants by index. A job of another organization lists nothing."""
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[Variant]) -> QuerySet[Variant]:
        if self.action != "list":
            return queryset
        wanted = validated(VariantFilterSerializer, self.request.query_params).validated_data
        if "job" in wanted:
            queryset = queryset.filter(job_id=wanted["job"])
        return queryset.order_by("-job__created_at", "job_id", "index")

    @extend_schema(request=VariantFeedbackSerializer, responses=VariantSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        variant = self.get_object()
        data = validated(VariantFeedbackSerializer, request.data).validated_data
        variant = services.give_feedback(variant=variant, actor=self.actor, **data)
        return Response(VariantSerializer(variant).data)

    @extend_schema(
        request=None,
        responses={
            202: inline_serializer(
                "RegenerationQueued",
                {
                    "job": serializers.UUIDField(),
                    "index": serializers.IntegerField(),
                    "revision": serializers.IntegerField(help_text="The revision being generated."),
                },
            )
        },
    )
    @action(detail=True, methods=["post"])
    def regenerate(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Queue a new revision; this one stays current until the new one is stored."""
        variant = services.regenerate_variant(variant=self.get_object())
        body = {"job": str(variant.job_id), "index": variant.index, "revision": variant.revision + 1}
        return Response(body, status=status.HTTP_202_ACCEPTED)


# --- webhooks ----------------------------------------------------------------------------------


class WebhookViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    TenantViewSet,
):
    """URLs that receive each job's final state, signed (admins). ``DELETE`` deactivates."""

    queryset = Webhook.objects.select_related("created_by")
    serializer_class = WebhookSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(request=WebhookSerializer, responses={201: CreatedWebhookSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(WebhookSerializer, request.data).validated_data
        webhook, secret = webhooks.create_webhook(actor=self.actor, organization=self.tenant.organization, **data)
        body = CreatedWebhookSerializer(webhook).data
        body["secret"] = secret
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        webhooks.deactivate_webhook(actor=self.actor, webhook=self.get_object())
        return no_content()

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Every delivery attempt log of the webhook, newest first."""
        deliveries = self.get_object().deliveries.order_by("-created_at")
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


# --- bulk --------------------------------------------------------------------------------------


class BulkBatchViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedCreate, TenantViewSet):
    """A CSV file of inputs becomes one job per row; bad rows are reported by line."""

    queryset = BulkBatch.objects.select_related("template_version__template")
    serializer_class = BulkBatchSerializer
    project_field = "project"

    def get_base_queryset(self) -> QuerySet[BulkBatch]:
        return bulk.with_status_counts(super().get_base_queryset())

    @extend_schema(request={"multipart/form-data": BulkCreateSerializer}, responses={201: BulkBatchSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = validated(BulkCreateSerializer, request.data)
        data = serializer.validated_data
        project = self.project_in_scope(data["project"])
        version = services.resolve_version(self.tenant.organization, data["template"], data.get("template_version"))
        upload = data["file"]
        batch = bulk.create_bulk_batch(
            organization=self.tenant.organization,
            project=project,
            version=version,
            data=upload.read(limits.BULK_MAX_BYTES + 1),  # one byte more than allowed is enough to refuse it
            filename=upload.name or "",
            params=serializer.parameters(),
            actor=self.actor,
            api_key=self.tenant.api_key,
        )
        return Response(BulkBatchSerializer(batch).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="bulk_results_csv", responses={(200, "text/csv"): CSV_FILE})
    @action(
        detail=True, methods=["get"], url_path="results.csv", url_name="results-csv",
        content_negotiation_class=download_negotiation("text/csv"),
    )
    def results_csv(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        """One line per row of the file: status, error, and each variant's text."""
        batch = self.get_object()
        return download(bulk.batch_results_csv(batch), "text/csv; charset=utf-8", f"batch-{batch.pk}.csv")
