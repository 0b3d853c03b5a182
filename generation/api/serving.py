"""The model registry in the API: the models an organization may run jobs on (read-only; operators
manage them in the admin), and a project's default model (``/projects/{id}/generation-settings/``)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import validated
from generation import limits, registry
from generation.models import ProjectGenerationSettings, ServingModel
from organizations.api.tenancy import TenantViewSet
from projects.models import Project


class SamplingDefaultsSerializer(serializers.Serializer[Any]):
    temperature = serializers.FloatField(allow_null=True, help_text="Null: the platform's default.")
    top_p = serializers.FloatField(allow_null=True, help_text="Null: the platform's default.")
    max_new_tokens = serializers.IntegerField(allow_null=True, help_text="Null: the template's default.")


class ServingModelSerializer(serializers.ModelSerializer[ServingModel]):
    """A model as customers see it: never where it is served or with which key."""

    backend = serializers.CharField(source="served_by", read_only=True, help_text="inprocess, openai or stub.")
    private = serializers.SerializerMethodField(help_text="Only this organization may use it.")
    defaults = serializers.SerializerMethodField(help_text="Sampling of jobs that do not set it.")
    price_per_1k_tokens = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        allow_null=True,
        read_only=True,
        help_text="Price per 1,000 tokens beyond the plan's included tokens; null: the plan's price.",
    )
    reachable = serializers.SerializerMethodField(help_text="Its server answered the last probe (a few seconds old).")

    class Meta:
        model = ServingModel
        fields = [
            "slug",
            "name",
            "backend",
            "context_length",
            "defaults",
            "price_per_1k_tokens",
            "is_default",
            "private",
            "reachable",
        ]
        read_only_fields = fields

    def get_private(self, model: ServingModel) -> bool:
        return model.organization_id is not None

    @extend_schema_field(SamplingDefaultsSerializer)
    def get_defaults(self, model: ServingModel) -> dict[str, Any]:
        return {"temperature": model.temperature, "top_p": model.top_p, "max_new_tokens": model.max_new_tokens}

    def get_reachable(self, model: ServingModel) -> bool:
        found = self.context.get("reachability", {}).get(model.slug)
        return bool(found and found.reachable)


#: ``/models/{id}/``: API clients name a model by its slug; its id works too.
MODEL_ID_OR_SLUG = OpenApiParameter(
    "id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    pattern=r"^[-a-zA-Z0-9_]+$",
    description="The model's slug (or id).",
)


@extend_schema_view(retrieve=extend_schema(parameters=[MODEL_ID_OR_SLUG]))
class ServingModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """The models the organization may run jobs on: the global ones open to its plan, and its own.

    A job names one with ``model`` (its slug); without, it runs on its template's, its project's or
    the global default model.
    """

    queryset = ServingModel.objects.all()
    shared_rows = {"organization__isnull": True}
    slug_lookup_field = "slug"
    serializer_class = ServingModelSerializer

    def get_base_queryset(self) -> QuerySet[ServingModel]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return ServingModel.objects.none()
        registry.default_model()  # a fresh or flushed database lists its default too
        return registry.usable_models(self.tenant.organization)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        models = list(page) if page is not None else list(self.filter_queryset(self.get_queryset()))
        data = self._serialize(models, many=True)
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self._serialize([self.get_object()], many=False))

    def _serialize(self, models: list[ServingModel], *, many: bool) -> Any:
        context = {**self.get_serializer_context(), "reachability": registry.reachability(models)}
        return ServingModelSerializer(models if many else models[0], many=many, context=context).data


class ProjectGenerationSettingsSerializer(serializers.Serializer[Any]):
    default_model = serializers.CharField(
        max_length=limits.MAX_SLUG_LENGTH,
        allow_null=True,
        allow_blank=True,
        required=False,
        help_text="The slug of the model the project's jobs run on unless the job or its template names one; "
        "null: the global default.",
    )

    def to_representation(self, instance: ProjectGenerationSettings) -> dict[str, Any]:
        return {"default_model": instance.default_model.slug if instance.default_model_id else None}


class ProjectGenerationSettingsViewSet(TenantViewSet):
    """A project's generation settings: /projects/{id}/generation-settings/."""

    queryset = Project.objects.all()
    serializer_class = ProjectGenerationSettingsSerializer
    project_field = "pk"

    @extend_schema(responses=ProjectGenerationSettingsSerializer)
    @action(detail=True, methods=["get"], url_path="generation-settings", url_name="generation-settings")
    def generation_settings(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(ProjectGenerationSettingsSerializer(registry.settings_for(self.get_object())).data)

    @extend_schema(request=ProjectGenerationSettingsSerializer, responses=ProjectGenerationSettingsSerializer)
    @generation_settings.mapping.put
    def replace_generation_settings(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._save(request, partial=False)

    @extend_schema(request=ProjectGenerationSettingsSerializer, responses=ProjectGenerationSettingsSerializer)
    @generation_settings.mapping.patch
    def update_generation_settings(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._save(request, partial=True)

    def _save(self, request: Request, *, partial: bool) -> Response:
        project = self.get_object()
        data = validated(ProjectGenerationSettingsSerializer, request.data, partial=partial).validated_data
        if "default_model" in data:
            wanted = data["default_model"]
        else:
            current = registry.settings_for(project)
            wanted = current.default_model.slug if current.default_model_id else None
        saved = registry.save_project_settings(actor=self.actor, project=project, default_model=wanted)
        return Response(ProjectGenerationSettingsSerializer(saved).data)
