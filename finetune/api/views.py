"""The brand model API.

- ``/projects/{id}/training-data/``: the preview of what a run would train on (counts, split, examples).
- ``/projects/{id}/training-runs/``: the project's runs; ``POST`` starts one (400 with the number of
  examples still needed when there are too few; 409 while one runs).
- ``/projects/{id}/brand-models/``: the project's adapters; ``.../rollback/`` and ``.../deactivate/``.
- ``/training-runs/{id}/`` (``cancel/``) and ``/brand-models/{id}/`` (``activate/``, ``export/``, ``DELETE``).

All are ``TenantViewSet``s: another organization's project, run or adapter is a 404.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import download_negotiation, no_content, validated
from finetune import services
from finetune.api.serializers import (
    ActivateSerializer,
    BrandModelSerializer,
    TrainingDataSerializer,
    TrainingRunCreateSerializer,
    TrainingRunSerializer,
)
from finetune.models import TrainingRun
from generation.models import BrandAdapter
from organizations.api.tenancy import TenantViewSet
from projects.models import Project

ZIP = "application/zip"


class ProjectBrandModelViewSet(TenantViewSet):
    """A project's brand model as a whole: its training data, runs and adapters."""

    queryset = Project.objects.all()
    serializer_class = TrainingRunSerializer
    project_field = "pk"

    @extend_schema(responses=TrainingDataSerializer)
    @action(detail=True, methods=["get"], url_path="training-data", url_name="training-data")
    def training_data(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        built = services.preview(organization=self.tenant.organization, project=project)
        return Response(TrainingDataSerializer(built.preview()).data)

    @extend_schema(responses=TrainingRunSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="training-runs", url_name="training-runs", pagination_class=None)
    def training_runs(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        runs = TrainingRun.objects.filter(project=project).select_related("serving_model")[:100]
        return Response(TrainingRunSerializer(runs, many=True).data)

    @extend_schema(request=TrainingRunCreateSerializer, responses={201: TrainingRunSerializer})
    @training_runs.mapping.post
    def start_training_run(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        data = validated(TrainingRunCreateSerializer, request.data).validated_data
        run = services.start_training_run(
            organization=self.tenant.organization,
            project=project,
            actor=self.actor,
            api_key=self.tenant.api_key,
            config=data.get("config"),
        )
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=BrandModelSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="brand-models", url_name="brand-models", pagination_class=None)
    def brand_models(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        adapters = BrandAdapter.objects.filter(project=project).select_related("serving_model")
        return Response(BrandModelSerializer(adapters, many=True).data)

    @extend_schema(request=ActivateSerializer, responses=BrandModelSerializer)
    @action(detail=True, methods=["post"], url_path="brand-models/rollback", url_name="brand-models-rollback")
    def rollback(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Activate the newest version older than the active one (insist: even if it did not beat the base)."""
        project = self.get_object()
        insist = validated(ActivateSerializer, request.data).validated_data["insist"]
        adapter = services.rollback_adapter(
            organization=self.tenant.organization, project=project, actor=self.actor, insist=insist
        )
        return Response(BrandModelSerializer(adapter).data)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["post"], url_path="brand-models/deactivate", url_name="brand-models-deactivate")
    def deactivate(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """New jobs of the project run on the base model (submitted jobs keep their adapter)."""
        project = self.get_object()
        services.deactivate_adapter(organization=self.tenant.organization, project=project, actor=self.actor)
        return no_content()


class TrainingRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Training runs: status, progress (the loss curve's points), the adapter made."""

    queryset = TrainingRun.objects.select_related("serving_model")
    serializer_class = TrainingRunSerializer
    project_field = "project"

    @extend_schema(request=None, responses=TrainingRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = services.cancel_training_run(
            organization=self.tenant.organization, run=self.get_object(), actor=self.actor
        )
        return Response(TrainingRunSerializer(run).data)


class BrandModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantViewSet):
    """Brand models (LoRA adapters): their evaluation against the base model; activate, export, delete."""

    queryset = BrandAdapter.objects.select_related("serving_model", "project")
    serializer_class = BrandModelSerializer
    project_field = "project"

    def perform_destroy(self, instance: BrandAdapter) -> None:
        services.delete_adapter(organization=self.tenant.organization, adapter=instance, actor=self.actor)

    @extend_schema(request=ActivateSerializer, responses=BrandModelSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """409 if it did not beat the base model on the held-out copy, unless ``insist``."""
        adapter = self.get_object()
        insist = validated(ActivateSerializer, request.data).validated_data["insist"]
        adapter = services.activate_adapter(
            organization=self.tenant.organization, adapter=adapter, actor=self.actor, insist=insist
        )
        return Response(BrandModelSerializer(adapter).data)

    @extend_schema(
        operation_id="brand_models_export",
        responses={(200, ZIP): OpenApiResponse(OpenApiTypes.BINARY, description="safetensors, config, README.")},
    )
    @action(detail=True, methods=["get"], content_negotiation_class=download_negotiation(ZIP))
    def export(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        filename, data = services.export_adapter(organization=self.tenant.organization, adapter=self.get_object())
        response = HttpResponse(data, content_type=ZIP)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        return response
