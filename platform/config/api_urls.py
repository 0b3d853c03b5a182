"""``/api/v1/``: every resource of the public API."""

from __future__ import annotations

from django.urls import include, re_path
from rest_framework.routers import DefaultRouter

from apikeys.api.views import ApiKeyViewSet
from billing.api.invoices import InvoiceViewSet
from billing.api.usage import SubscriptionViewSet, UsageViewSet
from config.api_views import MeView
from experiments.api.views import ExperimentViewSet
from finetune.api.views import BrandModelViewSet, ProjectBrandModelViewSet, TrainingRunViewSet
from generation.api.serving import ProjectGenerationSettingsViewSet, ServingModelViewSet
from generation.api.views import (
    BulkBatchViewSet,
    JobStreamViewSet,
    JobViewSet,
    ProjectContentViewSet,
    TemplateViewSet,
    VariantViewSet,
    WebhookViewSet,
)
from knowledge.api.views import KnowledgeSourceViewSet, ProjectKnowledgeViewSet
from organizations.api.views import AcceptInvitationView, InvitationViewSet, MemberViewSet, OrganizationViewSet
from projects.api.views import ProjectViewSet
from recommendations.api.views import (
    CampaignViewSet,
    CatalogItemViewSet,
    CustomerViewSet,
    DataImportViewSet,
    EventViewSet,
    ProjectRecommendationSettingsViewSet,
    RecommendationJobViewSet,
)


class OptionalSlashRouter(DefaultRouter):
    """Every route answers with and without its trailing slash.

    ``DefaultRouter(trailing_slash="/?")`` does not do this: DRF turns any truthy
    ``trailing_slash`` into ``"/"``, so ``/api/v1/projects`` fell through to
    CommonMiddleware's APPEND_SLASH redirect, which turns a POST into a GET.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.include_root_view = False
router.register("organizations", OrganizationViewSet, basename="organization")
router.register("members", MemberViewSet, basename="member")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("projects", ProjectViewSet, basename="project")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
# A project's brand voice and exports: /projects/{id}/brand-voice/, /projects/{id}/export.csv, ...
router.register("projects", ProjectContentViewSet, basename="project-content")
router.register("templates", TemplateViewSet, basename="template")
router.register("jobs", JobViewSet, basename="job")
# A job's event stream: /jobs/{id}/stream (Server-Sent Events).
router.register("jobs", JobStreamViewSet, basename="job-events")
router.register("variants", VariantViewSet, basename="variant")
router.register("webhooks", WebhookViewSet, basename="webhook")
router.register("bulk", BulkBatchViewSet, basename="bulk-batch")
# The model registry (read-only; operators manage it in the admin) and /projects/{id}/generation-settings/.
router.register("models", ServingModelViewSet, basename="model")
router.register("projects", ProjectGenerationSettingsViewSet, basename="project-generation")
# Recommendations: catalog, customers, events, imports, jobs, campaigns; /projects/{id}/recommendation-settings/
router.register("catalog-items", CatalogItemViewSet, basename="catalog-item")
router.register("customers", CustomerViewSet, basename="customer")
router.register("events", EventViewSet, basename="event")
router.register("data-imports", DataImportViewSet, basename="data-import")
router.register("recommendation-jobs", RecommendationJobViewSet, basename="recommendation-job")
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("projects", ProjectRecommendationSettingsViewSet, basename="project-recommendations")
# Copy experiments: /experiments/{id}/assign?unit=..., /results, /outcomes, /start, /stop, /conclude.
router.register("experiments", ExperimentViewSet, basename="experiment")
# Project knowledge: /projects/{id}/knowledge/ (list, add), /projects/{id}/knowledge/search/, /knowledge/{id}/.
router.register("projects", ProjectKnowledgeViewSet, basename="project-knowledge")
router.register("knowledge", KnowledgeSourceViewSet, basename="knowledge-source")
# Brand models: /projects/{id}/training-data/, /training-runs/, /brand-models/ (rollback, deactivate);
# /training-runs/{id}/ (cancel), /brand-models/{id}/ (activate, export, delete).
router.register("projects", ProjectBrandModelViewSet, basename="project-brand-model")
router.register("training-runs", TrainingRunViewSet, basename="training-run")
router.register("brand-models", BrandModelViewSet, basename="brand-model")
router.register("invoices", InvoiceViewSet, basename="invoice")
# Singletons of the caller's organization: GET /usage?group_by=...; GET and POST (plan change) /subscription.
router.register("usage", UsageViewSet, basename="usage")
router.register("subscription", SubscriptionViewSet, basename="subscription")

app_name = "api"
urlpatterns = [
    re_path(r"^me/?$", MeView.as_view(), name="me"),
    # Before the router, whose invitation-detail route would read "accept" as an id.
    re_path(r"^invitations/accept/?$", AcceptInvitationView.as_view(), name="invitation-accept"),
    re_path(r"", include(router.urls)),
]
