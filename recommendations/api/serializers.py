"""Shapes of the recommendations API. Validation of meaning (mappings, segments, limits) lives in the services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.fields import JSON_OBJECT, JSONObjectField, NonEmptyFileField, StorableJSONField
from core.schema import NOT_BLANK
from experiments import limits as experiment_limits
from generation import limits as generation_limits
from recommendations import limits, results
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
from recommendations.services import SEGMENT_KEYS

# --- JSON shapes ---------------------------------------------------------------------------------
# What these JSON values hold, for the schema: the services check them and answer with their own codes.
# A key is typed only where the service refuses another type (see generation.api.serializers).

#: Customer and item attributes as stored: names to text (numbers and booleans are stored as text).
ATTRIBUTES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "description": 'Names to values, e.g. {"country": "France", "name": "Ada"}.',
}
_SENT_ATTRIBUTES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]},
    "maxProperties": limits.MAX_SENT_ATTRIBUTES,
    "description": "Names to text or numbers; a customer's country is the one campaign segments filter on.",
}
_NAME = {"type": "string", "maxLength": limits.MAX_SEGMENT_NAME_LENGTH, "pattern": NOT_BLANK}


def _record(title: str, what: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A record of a batch: the documented object, or any other value, which is reported, not refused."""
    return {
        "anyOf": [
            {"title": title, "type": "object", "properties": properties, "required": required,
             "additionalProperties": False},
            {},
        ],
        "description": f"{what} Any other value is reported by its index in the answer's errors (the rest "
        "of the batch is stored), so a batch never fails for one bad record.",
    }


INGEST_EVENT = _record(
    "IngestEvent",
    "An event. Without event_id, one is derived from its content, so a retried batch stores nothing twice.",
    {
        "event_id": {"type": "string", "maxLength": limits.MAX_EVENT_ID_LENGTH},
        "customer": {
            "type": "string",
            "maxLength": limits.MAX_EXTERNAL_ID_LENGTH,
            "description": "The customer's external id.",
        },
        "sku": {"type": "string", "maxLength": limits.MAX_SKU_LENGTH},
        "type": {"type": "string", "enum": list(EventType.values), "default": EventType.PURCHASE.value},
        "value": {"type": "number", "default": 1, "description": "A quantity or a rating."},
        "timestamp": {
            "anyOf": [{"type": "string"}, {"type": "number", "minimum": 0}],
            "description": "ISO 8601 text or Unix seconds; not in the future.",
        },
    },
    ["customer", "sku", "timestamp"],
)
INGEST_ITEM = _record(
    "IngestItem",
    "A catalog item, upserted by SKU before the events.",
    {
        "sku": {"type": "string", "maxLength": limits.MAX_SKU_LENGTH},
        "title": {"type": "string", "maxLength": limits.MAX_TITLE_LENGTH},
        "description": {"type": "string", "maxLength": limits.MAX_DESCRIPTION_LENGTH},
        "price": {"anyOf": [{"type": "string"}, {"type": "number"}], "description": "A number or a decimal string."},
        "attributes": _SENT_ATTRIBUTES,
    },
    ["sku"],
)
INGEST_CUSTOMER = _record(
    "IngestCustomer",
    "A customer, upserted by external id before the events.",
    {"external_id": {"type": "string", "maxLength": limits.MAX_EXTERNAL_ID_LENGTH}, "attributes": _SENT_ATTRIBUTES},
    ["external_id"],
)

_NAMES = {
    "anyOf": [
        {"type": "array", "items": _NAME, "maxItems": limits.MAX_SEGMENT_NAMES},
        {**_NAME, "pattern": f"^$|{NOT_BLANK}"},
    ],
    "nullable": True,
    "description": f"At most {limits.MAX_SEGMENT_NAMES} names (one name alone may be sent as text).",
}
_COUNT = {"type": "integer", "minimum": 1, "nullable": True}
CAMPAIGN_SEGMENT: dict[str, Any] = {
    "type": "object",
    "description": "Which customers the campaign reaches; every filter is optional, an empty segment is everyone.",
    "properties": {
        "countries": {**_NAMES, "description": "Customers whose country attribute is one of these."},
        "customers": {**_NAMES, "description": "These customers only (external ids)."},
        "attributes": {
            "type": "object",
            "nullable": True,
            "maxProperties": limits.MAX_SEGMENT_ATTRIBUTES,
            "additionalProperties": {"type": "string", "maxLength": limits.MAX_ATTRIBUTE_VALUE_LENGTH},
            "description": "Exact matches on other attributes "
            f"(names of at most {limits.MAX_ATTRIBUTE_NAME_LENGTH} characters).",
        },
        "purchased_within_days": {
            **_COUNT,
            "maximum": limits.MAX_PURCHASED_WITHIN_DAYS,
            "description": "Bought something in the N days before the project's latest event.",
        },
        "min_purchases": {**_COUNT, "maximum": limits.MAX_MIN_PURCHASES, "description": "At least N purchase events."},
        "limit": {
            **_COUNT,
            "maximum": limits.MAX_SEGMENT_LIMIT,
            "description": "At most this many customers, recent buyers first.",
        },
    },
    "additionalProperties": False,
}
CAMPAIGN_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "description": "Generation parameters of every job; each optional.",
    "properties": {
        "max_new_tokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": generation_limits.max_new_tokens(),
            "nullable": True,
            "description": "Default: the template's.",
        },
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.2},
        "top_p": {"type": "number", "minimum": 0.01, "maximum": 1},
        "seed": {"type": "integer", "minimum": 0, "maximum": generation_limits.MAX_SEED, "nullable": True},
    },
    "additionalProperties": False,
}
#: As stored on a campaign: what was asked, with the defaults it got and one variant per job.
_CAMPAIGN_PARAMETERS_STORED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "num_variants": {"type": "integer"},
        "max_new_tokens": {"type": "integer", "nullable": True},
        "temperature": {"type": "number"},
        "top_p": {"type": "number"},
        "seed": {"type": "integer", "nullable": True},
    },
    "additionalProperties": True,
}
RECOMMENDED_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sku": {"type": "string"},
        "title": {"type": "string"},
        "score": {"type": "number"},
        "reason": {"type": "string"},
    },
    "required": ["sku", "title", "score", "reason"],
}


_RANKING = {
    "type": "object",
    "properties": {name: {"type": "number"} for name in ("precision", "recall", "ndcg", "coverage")},
    "additionalProperties": True,
}
_CANDIDATE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "params": {"type": "object", "additionalProperties": True},
        "ndcg": {"type": "number", "description": "Mean over the validation windows."},
        "recall": {"type": "number"},
        "coverage": {"type": "number", "description": "Share of the catalog in the validation customers' top K."},
        "ndcg_by_window": {"type": "array", "items": {"type": "number"}},
    },
    "additionalProperties": True,
}
#: A job's evaluation, as ``recommendations.engine.choose_and_evaluate`` stores it.
JOB_METRICS: dict[str, Any] = {
    "type": "object",
    "description": "The held-out window's figures for the chosen model (model), the popularity baseline, "
    "plain ALS (als) and tuned ALS (als_tuned); the cold start on its own; and how the model was chosen "
    "(selection: every candidate's validation NDCG/recall/coverage on earlier windows, the chosen one and why). "
    "Only skipped (and selection) when there was too little history for an evaluation.",
    "properties": {
        "model": _RANKING,
        "popularity": _RANKING,
        "als": _RANKING,
        "als_tuned": _RANKING,
        "als_tuned_params": {"type": "object", "additionalProperties": True},
        "test_users": {"type": "integer"},
        "train_events": {"type": "integer"},
        "k": {"type": "integer"},
        "holdout_start": {"type": "string"},
        "skipped": {"type": "string"},
        "cold_start": {"type": "object", "additionalProperties": True},
        "selection": {
            "type": "object",
            "properties": {
                "chosen": {"type": "string"},
                "chosen_params": {"type": "object", "additionalProperties": True},
                "why": {"type": "string"},
                "candidates": {"type": "array", "items": _CANDIDATE},
                "windows": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                "skipped": {"type": "array", "items": {"type": "string"}, "description": "Not tried: time budget."},
                "budget_s": {"type": "number"},
                "elapsed_s": {"type": "number"},
            },
            "additionalProperties": True,
        },
    },
    "additionalProperties": True,
}


@extend_schema_field(JOB_METRICS)
class JobMetricsField(serializers.JSONField):
    pass


@extend_schema_field(ATTRIBUTES)
class AttributesField(serializers.JSONField):
    pass


@extend_schema_field(INGEST_EVENT)
class IngestEventField(serializers.JSONField):
    pass


@extend_schema_field(INGEST_ITEM)
class IngestItemField(serializers.JSONField):
    pass


@extend_schema_field(INGEST_CUSTOMER)
class IngestCustomerField(serializers.JSONField):
    pass


@extend_schema_field(CAMPAIGN_SEGMENT)
class SegmentField(StorableJSONField):
    pass


@extend_schema_field(CAMPAIGN_PARAMETERS)
class CampaignParametersField(StorableJSONField):
    pass


@extend_schema_field(_CAMPAIGN_PARAMETERS_STORED)
class StoredCampaignParametersField(serializers.JSONField):
    pass


@extend_schema_field({**JSON_OBJECT, "description": "Template inputs shared by every customer."})
class SharedInputsField(StorableJSONField):
    pass


@extend_schema_field(
    {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"customer": {"type": "string"}, "reason": {"type": "string"}},
            "required": ["customer", "reason"],
        },
    }
)
class SkippedField(serializers.JSONField):
    pass


@extend_schema_field({"type": "array", "items": RECOMMENDED_ITEM})
class RecommendedItemsField(serializers.JSONField):
    pass


# --- catalog, customers, events ------------------------------------------------------------------


class CatalogItemSerializer(serializers.ModelSerializer[CatalogItem]):
    project = serializers.UUIDField(source="project_id", read_only=True)
    attributes = AttributesField(read_only=True)

    class Meta:
        model = CatalogItem
        fields = ["id", "project", "sku", "title", "description", "price", "attributes", "created_at", "updated_at"]
        read_only_fields = fields


class CustomerSerializer(serializers.ModelSerializer[Customer]):
    project = serializers.UUIDField(source="project_id", read_only=True)
    attributes = AttributesField(read_only=True)

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
    search = serializers.CharField(
        required=False, max_length=limits.MAX_SKU_LENGTH, help_text="Text in the SKU/title or external id."
    )


class EventFilterSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField(required=False)
    customer = serializers.UUIDField(required=False, help_text="A customer id.")
    type = serializers.ChoiceField(choices=EventType.choices, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class IngestSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField()
    events = serializers.ListField(
        child=IngestEventField(allow_null=True),  # a null record is reported by its index, as any other bad one
        required=False,
        default=list,
        max_length=INGEST_MAX_ROWS,
        help_text='[{"event_id", "customer", "sku", "type": view|cart|purchase|rating|return, "value", '
        '"timestamp": ISO 8601 or Unix seconds}]; event_id is optional (derived from the content when absent).',
    )
    items = serializers.ListField(
        child=IngestItemField(allow_null=True),  # a null record is reported by its index, as any other bad one
        required=False,
        default=list,
        max_length=INGEST_MAX_ROWS,
        help_text='[{"sku", "title", "description", "price", "attributes"}]: upserted before the events.',
    )
    customers = serializers.ListField(
        child=IngestCustomerField(allow_null=True),  # a null record is reported by its index, as any other bad one
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
    mapping = JSONObjectField(read_only=True, help_text="Field -> the file's column it was read from.")
    report = JSONObjectField(read_only=True, help_text="Rows per outcome, errors by line, what was created.")

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
    file = NonEmptyFileField(help_text="CSV, UTF-8, comma-separated, with a header row.")
    mapping = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=limits.MAX_FORM_TEXT_LENGTH,
        help_text="JSON object of field -> column name. Fields: "
        + ", ".join(FIELDS)
        + ", customer.<attribute>, item.<attribute>. Default: recognised from the header (Online Retail, or "
        "customer_id, sku, timestamp, ...).",
    )
    exclude_skus = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=limits.MAX_FORM_TEXT_LENGTH,
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
    metrics = JobMetricsField(read_only=True)
    chosen_model = serializers.SerializerMethodField(help_text="The candidate the job chose on earlier windows.")
    ndcg_vs_als = serializers.SerializerMethodField(help_text="The model's NDCG@K over tuned ALS's (held out).")
    stats = JSONObjectField(read_only=True, help_text="Events, customers and items trained on; timings.")

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
            "chosen_model",
            "ndcg_vs_als",
            "stats",
        ]
        read_only_fields = fields

    def get_chosen_model(self, job: RecommendationJob) -> str | None:
        return ((job.metrics or {}).get("selection") or {}).get("chosen")

    def get_ndcg_vs_als(self, job: RecommendationJob) -> float | None:
        metrics = job.metrics or {}
        model = (metrics.get("model") or {}).get("ndcg")
        als = (metrics.get("als_tuned") or {}).get("ndcg")
        return float(model) / float(als) if model is not None and als else None


class RecommendationJobCreateSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField()
    k = serializers.IntegerField(default=10, help_text=f"Recommendations stored per customer, 1..{limits.MAX_K}.")
    holdout_days = serializers.IntegerField(
        default=28, help_text=f"Most recent days held out for the evaluation, 1..{limits.MAX_HOLDOUT_DAYS}."
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
    assigned = serializers.IntegerField(
        help_text="Customers of an experiment campaign: assigned an arm, whose text is their copy (no job)."
    )
    regenerating = serializers.IntegerField(
        help_text="Customers whose copy named none of their items and is being written again."
    )


class CampaignSerializer(serializers.ModelSerializer[Campaign]):
    project = serializers.UUIDField(source="project_id", read_only=True)
    template = serializers.CharField(source="template_version.template.slug", read_only=True)
    template_version = serializers.IntegerField(source="template_version.version", read_only=True)
    recommendation_job = serializers.UUIDField(source="recommendation_job_id", read_only=True)
    segment = SegmentField(read_only=True)
    inputs = JSONObjectField(
        source="extra_inputs", read_only=True, help_text="Template inputs shared by every customer."
    )
    params = StoredCampaignParametersField(read_only=True)
    skipped = SkippedField(read_only=True, help_text="Customers of the segment that got no job, and why.")
    experiment = serializers.UUIDField(
        source="experiment_id", read_only=True, allow_null=True,
        help_text="The experiment the campaign runs as: each customer's copy is their arm's text.",
    )
    landing_url = serializers.CharField(read_only=True, help_text="Where an experiment campaign's click links lead.")
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
            "experiment",
            "landing_url",
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
    name = serializers.CharField(max_length=limits.MAX_CAMPAIGN_NAME_LENGTH)
    template = serializers.CharField(
        max_length=generation_limits.MAX_TEMPLATE_REF_LENGTH,
        default="personalized-recommendation",
        help_text="A template id or slug with a product or products variable.",
    )
    template_version = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**31 - 1)
    segment = SegmentField(
        default=dict, help_text="Filters: " + ", ".join(sorted(SEGMENT_KEYS)) + " (see the campaign docs)."
    )
    items_per_customer = serializers.IntegerField(default=3, help_text=f"1..{limits.MAX_ITEMS_PER_CUSTOMER}")
    inputs = SharedInputsField(default=dict)
    params = CampaignParametersField(
        default=dict, help_text="max_new_tokens, temperature (default 0.2: small models follow the template best), "
        "top_p, seed."
    )
    experiment = serializers.UUIDField(
        required=False, allow_null=True,
        help_text="Run as this running experiment of the project: each customer is assigned an arm and its text "
        "is their copy (no generation job, nothing charged).",
    )
    # Checked by the service (experiments.serving.click_target: an http(s) URL on a host the experiment allows),
    # which answers with its own codes rather than a generic "invalid".
    landing_url = serializers.CharField(
        required=False, allow_blank=True, max_length=experiment_limits.MAX_URL_LENGTH,
        help_text="Where each customer's tracking link leads (default: the experiment's target URL); its host "
        "must be one the experiment allows.",
    )


class CampaignRecipientSerializer(serializers.Serializer[Any]):
    customer = serializers.UUIDField(source="recipient.customer_id")
    external_id = serializers.CharField(source="recipient.customer.external_id")
    country = serializers.CharField(source="recipient.customer.country")
    items = RecommendedItemsField(source="recipient.items", help_text="The recommended items the copy is about.")
    job = serializers.UUIDField(source="recipient.job_id", allow_null=True)
    status = serializers.CharField()
    error = serializers.CharField(source="recipient.error")
    text = serializers.CharField(
        help_text="The generated copy (an edit, when one was made), or the arm's text in an experiment campaign."
    )
    mentioned = serializers.ListField(child=serializers.CharField(), help_text="Recommended items the copy names.")
    facts_supported = serializers.IntegerField(
        allow_null=True,
        help_text="Claims of the generated copy the brief or knowledge supports; null before it is written.",
    )
    facts_unsupported = serializers.IntegerField(
        allow_null=True, help_text="Prices, numbers and specs nothing supports (the copy fails its facts check)."
    )
    facts_flagged = serializers.IntegerField(
        allow_null=True, help_text="Names and statements nothing supports (flagged, not failed)."
    )
    arm = serializers.CharField(help_text="The experiment arm the customer was assigned (empty: no experiment).")
    assignment = serializers.UUIDField(
        source="recipient.assignment_id", allow_null=True, help_text="The customer's assignment (exposure) id."
    )
    click_url = serializers.CharField(
        help_text="Tracking link to the landing URL: records the click, then redirects (empty: none)."
    )
    pixel_url = serializers.CharField(help_text="1x1 tracking pixel recording an open (empty: no experiment).")
