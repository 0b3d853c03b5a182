"""The recommendations API: catalog, customers, events (list and batch ingest), CSV imports,
recommendation jobs with their metrics, a customer's recommendations, similar items, and campaigns.

Every viewset is a ``TenantViewSet`` scoped by project: another organization's row
is a 404, and a key restricted to one project reaches that project's rows only.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import download, download_negotiation, validated
from core.errors import InvalidInput
from core.schema import CSV_FILE
from organizations.api.tenancy import TenantViewSet
from projects.api.scoping import ProjectScopedCreate
from projects.models import Project
from recommendations import importing, results, services
from recommendations.api.serializers import (
    CampaignCreateSerializer,
    CampaignRecipientSerializer,
    CampaignSerializer,
    CatalogItemSerializer,
    CustomerRecommendationsSerializer,
    CustomerSerializer,
    DataImportCreateSerializer,
    DataImportSerializer,
    EventFilterSerializer,
    EventSerializer,
    IngestResultSerializer,
    IngestSerializer,
    ProjectFilterSerializer,
    RecommendationJobCreateSerializer,
    RecommendationJobFilterSerializer,
    RecommendationJobSerializer,
    RecommendationSettingsSerializer,
    SimilarItemsSerializer,
)
from recommendations.models import (
    Campaign,
    CatalogItem,
    Customer,
    DataImport,
    Event,
    RecommendationJob,
    SimilarItem,
)


def _filters(serializer_class: type[serializers.Serializer[Any]], request: Request) -> dict[str, Any]:
    return dict(validated(serializer_class, request.query_params).validated_data)


# --- catalog and customers -------------------------------------------------------------------------


class CatalogItemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """A project's catalog, filled by imports and ingest. ``similar`` lists the items most like one."""

    queryset = CatalogItem.objects.defer("embedding")
    serializer_class = CatalogItemSerializer
    project_field = "project"

    @extend_schema(parameters=[ProjectFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[CatalogItem]) -> QuerySet[CatalogItem]:
        if self.action != "list":
            return queryset
        wanted = _filters(ProjectFilterSerializer, self.request)
        if "project" in wanted:
            queryset = queryset.filter(project_id=wanted["project"])
        if wanted.get("search"):
            queryset = queryset.filter(Q(sku__icontains=wanted["search"]) | Q(title__icontains=wanted["search"]))
        return queryset.order_by("project_id", "sku")

    @extend_schema(responses=SimilarItemsSerializer)
    @action(detail=True, methods=["get"])
    def similar(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The items most similar to this one, from the project's latest succeeded recommendation job."""
        item = self.get_object()
        job = services.latest_job(item.project)
        rows = SimilarItem.objects.filter(job=job, item=item).select_related("similar").order_by("rank")
        body = {"item": item.pk, "job": job.pk if job else None, "similar": rows if job else []}
        return Response(SimilarItemsSerializer(body).data)


class CustomerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """A project's customers. ``recommendations`` lists one customer's top items with scores and reasons."""

    queryset = Customer.objects.all()
    serializer_class = CustomerSerializer
    project_field = "project"

    @extend_schema(parameters=[ProjectFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[Customer]) -> QuerySet[Customer]:
        if self.action != "list":
            return queryset
        wanted = _filters(ProjectFilterSerializer, self.request)
        if "project" in wanted:
            queryset = queryset.filter(project_id=wanted["project"])
        if wanted.get("search"):
            queryset = queryset.filter(external_id__icontains=wanted["search"])
        return queryset.order_by("project_id", "external_id")

    @extend_schema(responses=CustomerRecommendationsSerializer)
    @action(detail=True, methods=["get"])
    def recommendations(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The customer's top K from the project's latest succeeded job (empty before the first job)."""
        customer = self.get_object()
        job, rows = services.recommendations_for(customer)
        body = {"customer": customer.pk, "job": job.pk if job else None, "recommendations": rows}
        return Response(CustomerRecommendationsSerializer(body).data)


# --- events ----------------------------------------------------------------------------------------


class EventViewSet(mixins.ListModelMixin, ProjectScopedCreate, TenantViewSet):
    """A project's events, newest first. ``POST`` ingests a batch, idempotent by ``event_id``."""

    queryset = Event.objects.select_related("customer", "item")
    serializer_class = EventSerializer
    project_field = "project"

    @extend_schema(parameters=[EventFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[Event]) -> QuerySet[Event]:
        if self.action != "list":
            return queryset
        wanted = _filters(EventFilterSerializer, self.request)
        for name, lookup in (
            ("project", "project_id"),
            ("customer", "customer_id"),
            ("type", "type"),
            ("since", "occurred_at__gte"),
            ("until", "occurred_at__lt"),
        ):
            if name in wanted:
                queryset = queryset.filter(**{lookup: wanted[name]})
        return queryset.order_by("-occurred_at", "-id")

    @extend_schema(
        request=IngestSerializer,
        responses={201: IngestResultSerializer, 200: IngestResultSerializer},
        description="Items and customers are upserted, then events stored; every bad record is reported by its "
        "index. 201 when anything was stored, 200 when everything was already there (a retry).",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(IngestSerializer, request.data).validated_data
        project = self.project_in_scope(data["project"])
        report = importing.ingest(
            organization=self.tenant.organization,
            project=project,
            events=data["events"],
            items=data["items"],
            customers=data["customers"],
        )
        stored = (
            report["outcomes"]["imported"]
            + report["outcomes"]["returns_imported"]
            + report["items_created"]
            + report["items_updated"]
            + report["customers_created"]
            + report["customers_updated"]
        )
        return Response(IngestResultSerializer(report).data, status=201 if stored else 200)


# --- imports ---------------------------------------------------------------------------------------


class DataImportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedCreate, TenantViewSet):
    """CSV imports of catalog, customers and events, each with its row report."""

    queryset = DataImport.objects.all()
    serializer_class = DataImportSerializer
    project_field = "project"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before authentication, which may parse the body (the session CSRF check reads form fields):
        # a file over the limit is refused from its declared length, without reading it.
        if request.method == "POST":
            length = request.META.get("CONTENT_LENGTH") or "0"
            if length.isdigit() and int(length) > importing.max_bytes() + 64 * 1024:  # room for the form fields
                raise importing.too_large(int(length))
        super().initial(request, *args, **kwargs)

    @extend_schema(parameters=[ProjectFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[DataImport]) -> QuerySet[DataImport]:
        if self.action == "list":
            wanted = _filters(ProjectFilterSerializer, self.request)
            if "project" in wanted:
                queryset = queryset.filter(project_id=wanted["project"])
        return queryset

    @extend_schema(
        request={"multipart/form-data": DataImportCreateSerializer},
        responses={201: DataImportSerializer, 413: None},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(DataImportCreateSerializer, request.data).validated_data
        project = self.project_in_scope(data["project"])
        upload = data["file"]
        if upload.size is not None and upload.size > importing.max_bytes():
            raise importing.too_large(upload.size)
        data_import = importing.import_events(
            organization=self.tenant.organization,
            project=project,
            data=upload.read(importing.max_bytes() + 1),  # one byte more than allowed is enough to refuse it
            filename=upload.name or "",
            mapping=_mapping(data.get("mapping", "")),
            exclude_skus=_skus(data.get("exclude_skus")),
            actor=self.actor,
            api_key=self.tenant.api_key,
        )
        return Response(DataImportSerializer(data_import).data, status=status.HTTP_201_CREATED)


def _mapping(text: str) -> dict[str, str] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidInput(
            "mapping must be a JSON object, e.g. {\"customer\": \"CustomerID\"}.",
            code="invalid_mapping",
            fields={"mapping": ["not JSON"]},
        ) from None
    return importing.validate_mapping(value)


def _skus(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [sku.strip() for sku in text.split(",") if sku.strip()]


# --- recommendation jobs ---------------------------------------------------------------------------


class RecommendationJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedCreate, TenantViewSet):
    """Training jobs: status, stats and evaluation metrics (model vs popularity baseline)."""

    queryset = RecommendationJob.objects.all()
    serializer_class = RecommendationJobSerializer
    project_field = "project"

    @extend_schema(parameters=[RecommendationJobFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[RecommendationJob]) -> QuerySet[RecommendationJob]:
        if self.action == "list":
            wanted = _filters(RecommendationJobFilterSerializer, self.request)
            if "project" in wanted:
                queryset = queryset.filter(project_id=wanted["project"])
            if "status" in wanted:
                queryset = queryset.filter(status=wanted["status"])
        return queryset

    @extend_schema(request=RecommendationJobCreateSerializer, responses={201: RecommendationJobSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(RecommendationJobCreateSerializer, request.data).validated_data
        project = self.project_in_scope(data.pop("project"))
        job = services.start_recommendation_job(
            organization=self.tenant.organization,
            project=project,
            actor=self.actor,
            api_key=self.tenant.api_key,
            **data,
        )
        return Response(RecommendationJobSerializer(job).data, status=status.HTTP_201_CREATED)


class ProjectRecommendationSettingsViewSet(TenantViewSet):
    """A project's recommendation settings: /projects/{id}/recommendation-settings/."""

    queryset = Project.objects.all()
    serializer_class = RecommendationSettingsSerializer
    project_field = "pk"

    @extend_schema(responses=RecommendationSettingsSerializer)
    @action(detail=True, methods=["get"], url_path="recommendation-settings", url_name="recommendation-settings")
    def recommendation_settings(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        return Response(RecommendationSettingsSerializer(services.settings_for(project)).data)

    @extend_schema(request=RecommendationSettingsSerializer, responses=RecommendationSettingsSerializer)
    @recommendation_settings.mapping.put
    def replace_recommendation_settings(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._save(request, partial=False)

    @extend_schema(request=RecommendationSettingsSerializer, responses=RecommendationSettingsSerializer)
    @recommendation_settings.mapping.patch
    def update_recommendation_settings(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._save(request, partial=True)

    def _save(self, request: Request, *, partial: bool) -> Response:
        project = self.get_object()
        data = validated(RecommendationSettingsSerializer, request.data, partial=partial).validated_data
        wanted = data.get("exclude_purchased", services.settings_for(project).exclude_purchased)
        saved = services.save_settings(actor=self.actor, project=project, exclude_purchased=wanted)
        return Response(RecommendationSettingsSerializer(saved).data)


# --- campaigns -------------------------------------------------------------------------------------


class CampaignViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedCreate, TenantViewSet):
    """Personalized campaigns: one generation job per customer of a segment, about their recommended items."""

    queryset = Campaign.objects.select_related("template_version__template")
    serializer_class = CampaignSerializer
    project_field = "project"

    @extend_schema(parameters=[ProjectFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[Campaign]) -> QuerySet[Campaign]:
        if self.action == "list":
            wanted = _filters(ProjectFilterSerializer, self.request)
            if "project" in wanted:
                queryset = queryset.filter(project_id=wanted["project"])
            if wanted.get("search"):
                queryset = queryset.filter(name__icontains=wanted["search"])
        return queryset

    @extend_schema(request=CampaignCreateSerializer, responses={201: CampaignSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(CampaignCreateSerializer, request.data).validated_data
        project = self.project_in_scope(data["project"])
        campaign = services.create_campaign(
            organization=self.tenant.organization,
            project=project,
            name=data["name"],
            template=data["template"],
            template_version=data.get("template_version"),
            segment=data["segment"],
            items_per_customer=data["items_per_customer"],
            extra_inputs=data["inputs"],
            params=data["params"],
            experiment=data.get("experiment"),
            landing_url=data.get("landing_url", ""),
            actor=self.actor,
            api_key=self.tenant.api_key,
        )
        return Response(CampaignSerializer(self.get_queryset().get(pk=campaign.pk)).data, status=201)

    @extend_schema(responses=CampaignRecipientSerializer(many=True))
    @action(detail=True, methods=["get"])
    def recipients(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Per customer: the recommended items, the job's status, the copy and which items it names."""
        campaign = self.get_object()
        page = self.paginate_queryset(results.recipients(campaign))
        return self.get_paginated_response(CampaignRecipientSerializer(results.results(page), many=True).data)

    @extend_schema(operation_id="campaign_results_csv", responses={(200, "text/csv"): CSV_FILE})
    @action(
        detail=True, methods=["get"], url_path="results.csv", url_name="results-csv",
        content_negotiation_class=download_negotiation("text/csv"),
    )
    def results_csv(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        """One line per customer (spreadsheet-safe): items, status, copy, mentioned items; in an experiment
        campaign also the arm, the assignment id and the tracking links."""
        campaign = self.get_object()
        return download(results.results_csv(campaign), "text/csv; charset=utf-8", f"campaign-{campaign.pk}.csv")
