"""Shapes of the recommendations API. Validation of meaning (mappings, segments, limits) lives in the services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from generation.api.serializers import StorableJSONField
from recommendations import results
from recommendations.importing import FIELDS, INGEST_MAX_ROWS
from recommendations.models import (
    Campaign,
    CatalogItem,
    Customer,
    DataImport,
    Event,
    EventType,
    RecommendationJob,
    RecommendationJobStatus,
)
from recommendations.services import MAX_HOLDOUT_DAYS, MAX_ITEMS_PER_CUSTOMER, MAX_K, SEGMENT_KEYS

# --- catalog, customers, events ------------------------------------------------------------------


class CatalogItemSerializer(serializers.ModelSerializer[CatalogItem]):
    project = serializers.UUIDField(source="project_id", read_only=True)

    class Meta:
        model = CatalogItem
        fields = ["id", "project", "sku", "title", "description", "price", "attributes", "created_at", "updated_at"]
        read_only_fields = fields


class CustomerSerializer(serializers.ModelSerializer[Customer]):
    project = serializers.UUIDField(source="project_id", read_only=True)

    class Meta:
        model = Customer
        fields = ["id", "project", "external_id", "attributes", "created_at", "updated_at"]
        read_only_fields = fields


class EventSerializer(serializers.ModelSerializer[Event]):
    project = serializers.UUIDField(source="project_id", read_only=True)
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    customer_external_id = serializers.CharField(source="customer.external_id", read_only=True)
    item = serializers.UUIDField(source="item_id", read_only=True)
    sku = serializers.CharField(source="item.sku", read_only=True)
    source = serializers.UUIDField(source="source_id", read_only=True, allow_null=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "project",
            "customer",
            "customer_external_id",
            "item",
            "sku",
            "type",
            "value",
            "occurred_at",
            "event_id",
            "source",
            "created_at",
        ]
        read_only_fields = fields


class ProjectFilterSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField(required=False, help_text="Only this project's rows.")
    search = serializers.CharField(required=False, max_length=100, help_text="Text in the SKU/title or external id.")


class EventFilterSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField(required=False)
    customer = serializers.UUIDField(required=False, help_text="A customer id.")
    type = serializers.ChoiceField(choices=EventType.choices, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class IngestSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField()
    events = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        default=list,
        max_length=INGEST_MAX_ROWS,
        help_text='[{"event_id", "customer", "sku", "type": view|cart|purchase|rating|return, "value", '
        '"timestamp": ISO 8601 or Unix seconds}]; event_id is optional (derived from the content when absent).',
    )
    items = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        default=list,
        max_length=INGEST_MAX_ROWS,
        help_text='[{"sku", "title", "description", "price", "attributes"}]: upserted before the events.',
    )
    customers = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        default=list,
        max_length=INGEST_MAX_ROWS,
        help_text='[{"external_id", "attributes": {"country": ..., "name": ...}}]: upserted before the events.',
    )


class IngestErrorSerializer(serializers.Serializer[Any]):
    list = serializers.ChoiceField(choices=["events", "items", "customers"])
    index = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.CharField())


class IngestResultSerializer(serializers.Serializer[Any]):
    events = serializers.IntegerField(help_text="Events received.")
    outcomes = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Events per outcome: imported, returns_imported, already_imported, duplicate_in_request, "
        "missing_customer, unknown_item, negative_quantity, rejected; they add up to events.",
    )
    items_created = serializers.IntegerField()
    items_updated = serializers.IntegerField()
    customers_created = serializers.IntegerField()
    customers_updated = serializers.IntegerField()
    errors = IngestErrorSerializer(many=True)
    unknown_items = serializers.ListField(child=serializers.CharField(), help_text="SKUs not in the catalog.")


# --- imports ---------------------------------------------------------------------------------------


class DataImportSerializer(serializers.ModelSerializer[DataImport]):
    project = serializers.UUIDField(source="project_id", read_only=True)

    class Meta:
        model = DataImport
        fields = [
            "id",
            "project",
            "filename",
            "size_bytes",
            "mapping",
            "total_rows",
            "events_created",
            "report",
            "duration_s",
            "created_at",
        ]
        read_only_fields = fields


class DataImportCreateSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField()
    file = serializers.FileField(help_text="CSV, UTF-8, comma-separated, with a header row.")
    mapping = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=5000,
        help_text="JSON object of field -> column name. Fields: "
        + ", ".join(FIELDS)
        + ", customer.<attribute>, item.<attribute>. Default: recognised from the header (Online Retail, or "
        "customer_id, sku, timestamp, ...).",
    )
    exclude_skus = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=5000,
        help_text="Comma-separated SKUs that are no products (counted as non_product). "
        "Default for the Online Retail format: its postage, fee and discount codes.",
    )


# --- jobs ------------------------------------------------------------------------------------------


class RecommendationJobSerializer(serializers.ModelSerializer[RecommendationJob]):
    project = serializers.UUIDField(source="project_id", read_only=True)
    ndcg_ratio = serializers.FloatField(
        read_only=True, allow_null=True, help_text="The model's NDCG@K over the popularity baseline's."
    )
    compute_seconds = serializers.DecimalField(max_digits=12, decimal_places=3, read_only=True)

    class Meta:
        model = RecommendationJob
        fields = [
            "id",
            "project",
            "status",
            "failure_reason",
            "k",
            "holdout_days",
            "exclude_purchased",
            "seed",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "compute_seconds",
            "metrics",
            "ndcg_ratio",
            "stats",
        ]
        read_only_fields = fields


class RecommendationJobCreateSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField()
    k = serializers.IntegerField(default=10, help_text=f"Recommendations stored per customer, 1..{MAX_K}.")
    holdout_days = serializers.IntegerField(
        default=28, help_text=f"Most recent days held out for the evaluation, 1..{MAX_HOLDOUT_DAYS}."
    )
    exclude_purchased = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Default: the project's setting."
    )
    seed = serializers.IntegerField(required=False, allow_null=True, default=None)


class RecommendationJobFilterSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField(required=False)
    status = serializers.ChoiceField(choices=RecommendationJobStatus.choices, required=False)


class RecommendedItemSerializer(serializers.Serializer[Any]):
    rank = serializers.IntegerField()
    item = serializers.UUIDField(source="item_id")
    sku = serializers.CharField(source="item.sku")
    title = serializers.CharField(source="item.title")
    score = serializers.FloatField()
    reason = serializers.CharField()


class CustomerRecommendationsSerializer(serializers.Serializer[Any]):
    customer = serializers.UUIDField()
    job = serializers.UUIDField(allow_null=True, help_text="The job they come from: the project's latest succeeded.")
    recommendations = RecommendedItemSerializer(many=True)


class SimilarItemSerializer(serializers.Serializer[Any]):
    rank = serializers.IntegerField()
    item = serializers.UUIDField(source="similar_id")
    sku = serializers.CharField(source="similar.sku")
    title = serializers.CharField(source="similar.title")
    score = serializers.FloatField()


class SimilarItemsSerializer(serializers.Serializer[Any]):
    item = serializers.UUIDField()
    job = serializers.UUIDField(allow_null=True)
    similar = SimilarItemSerializer(many=True)


class RecommendationSettingsSerializer(serializers.Serializer[Any]):
    exclude_purchased = serializers.BooleanField(help_text="Never recommend an item the customer already bought.")


# --- campaigns ---------------------------------------------------------------------------------------


class CampaignProgressSerializer(serializers.Serializer[Any]):
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    canceled = serializers.IntegerField()
    not_queued = serializers.IntegerField(help_text="Customers whose job was refused; see their error.")
    regenerating = serializers.IntegerField(
        help_text="Customers whose copy named none of their items and is being written again."
    )


class CampaignSerializer(serializers.ModelSerializer[Campaign]):
    project = serializers.UUIDField(source="project_id", read_only=True)
    template = serializers.CharField(source="template_version.template.slug", read_only=True)
    template_version = serializers.IntegerField(source="template_version.version", read_only=True)
    recommendation_job = serializers.UUIDField(source="recommendation_job_id", read_only=True)
    inputs = serializers.JSONField(source="extra_inputs", read_only=True)
    progress = serializers.SerializerMethodField()
    done = serializers.SerializerMethodField(help_text="Every customer's job has finished.")

    class Meta:
        model = Campaign
        fields = [
            "id",
            "project",
            "name",
            "template",
            "template_version",
            "recommendation_job",
            "segment",
            "items_per_customer",
            "inputs",
            "params",
            "skipped",
            "progress",
            "done",
            "created_at",
        ]
        read_only_fields = fields

    def _progress(self, campaign: Campaign) -> results.Progress:
        if not hasattr(campaign, "_progress"):
            campaign._progress = results.progress(campaign)  # type: ignore[attr-defined]
        return campaign._progress  # type: ignore[attr-defined, no-any-return]

    @extend_schema_field(CampaignProgressSerializer)
    def get_progress(self, campaign: Campaign) -> dict[str, int]:
        return self._progress(campaign).counts

    def get_done(self, campaign: Campaign) -> bool:
        return self._progress(campaign).finished


class CampaignCreateSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField()
    name = serializers.CharField(max_length=120)
    template = serializers.CharField(
        max_length=200,
        default="personalized-recommendation",
        help_text="A template id or slug with a product or products variable.",
    )
    template_version = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**31 - 1)
    segment = StorableJSONField(
        default=dict, help_text="Filters: " + ", ".join(sorted(SEGMENT_KEYS)) + " (see the campaign docs)."
    )
    items_per_customer = serializers.IntegerField(default=3, help_text=f"1..{MAX_ITEMS_PER_CUSTOMER}")
    inputs = StorableJSONField(default=dict, help_text="Template inputs shared by every customer.")
    params = StorableJSONField(
        default=dict, help_text="max_new_tokens, temperature (default 0.2: small models follow the template best), "
        "top_p, seed."
    )


class CampaignRecipientSerializer(serializers.Serializer[Any]):
    customer = serializers.UUIDField(source="recipient.customer_id")
    external_id = serializers.CharField(source="recipient.customer.external_id")
    country = serializers.CharField(source="recipient.customer.country")
    items = serializers.JSONField(source="recipient.items", help_text="The recommended items the copy is about.")
    job = serializers.UUIDField(source="recipient.job_id", allow_null=True)
    status = serializers.CharField()
    error = serializers.CharField(source="recipient.error")
    text = serializers.CharField(help_text="The generated copy (an edit, when one was made).")
    mentioned = serializers.ListField(child=serializers.CharField(), help_text="Recommended items the copy names.")
