"""Shapes of the generation API. Validation of meaning (limits, variables) lives in the services."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.errors import InvalidInput
from core.fields import JSON_OBJECT, JSONObjectField, NonEmptyFileField, StorableJSONField
from generation import limits
from generation.bulk import status_counts
from generation.library import COPYWRITER
from generation.models import (
    BrandVoice,
    BulkBatch,
    GenerationJob,
    JobStatus,
    Template,
    TemplateVersion,
    Variant,
    Webhook,
    WebhookDelivery,
)
from generation.services import VARIABLE_TYPES

#: The generation parameters of a job or a bulk batch; omitted ones take the service's defaults.
PARAMETER_NAMES = ("num_variants", "max_new_tokens", "temperature", "top_p", "seed", "model", "language", "adapter")



TEMPLATE_VARIABLE: dict[str, Any] = {
    "type": "object",
    "description": "A variable of the template: a form field, filled in by a job's inputs.",
    "properties": {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": limits.MAX_VARIABLE_NAME_LENGTH,
            "description": "A Python identifier.",
        },
        "type": {"type": "string", "enum": sorted(VARIABLE_TYPES), "default": "text"},
        "max_length": {
            "type": "integer",
            "minimum": 1,
            "maximum": limits.MAX_VARIABLE_MAX_LENGTH,
            "default": limits.DEFAULT_VARIABLE_MAX_LENGTH,
        },
        "label": {"description": "The form's label (text)."},
        "required": {"description": "Whether a job must give it (true or false)."},
        "choices": {"description": "The options of a choice variable (a list of text)."},
        "default": {"description": "The value a job that leaves it out gets."},
        "help": {"description": "A hint under the form field (text)."},
    },
    "required": ["name"],
    "additionalProperties": True,
}


@extend_schema_field({"type": "array", "items": TEMPLATE_VARIABLE, "minItems": 1})
class TemplateVariablesField(StorableJSONField):
    pass


@extend_schema_field(
    {
        **JSON_OBJECT,
        "description": 'Checks of every output: {"min_chars", "max_chars", "min_words", "max_words", '
        '"required_phrases", "banned_phrases", ...}, each optional.',
    }
)
class ConstraintsField(StorableJSONField):
    pass


@extend_schema_field({"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string"}], "nullable": True})
class AdapterField(serializers.CharField):
    """A brand model version (``3`` or ``"v3"``), ``"base"`` or null: a JSON number is taken as its text."""

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, int) and not isinstance(data, bool):
            data = str(data)
        return super().to_internal_value(data)


class GenerationParameters(serializers.Serializer[Any]):
    """The generation parameters of a job or a bulk batch, with their ranges (documented and checked).

    An out-of-range parameter is a 400 ``invalid_parameters`` naming it, as the service
    answers for the limits it checks itself (a plan's variant limit).
    """

    num_variants = serializers.IntegerField(
        required=False, min_value=1, max_value=limits.max_variants(),
        help_text=f"1..{limits.max_variants()}; plans may allow fewer.",
    )
    max_new_tokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=limits.max_new_tokens(),
        help_text="Default (omitted or null): the template's.",
    )
    temperature = serializers.FloatField(
        required=False, min_value=limits.MIN_TEMPERATURE, max_value=limits.MAX_TEMPERATURE
    )
    top_p = serializers.FloatField(required=False, min_value=limits.MIN_TOP_P, max_value=limits.MAX_TOP_P)
    seed = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=limits.MAX_SEED, help_text="Default (null): random."
    )
    model = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=limits.MAX_SLUG_LENGTH,
        help_text="A model's slug (GET /api/v1/models/). Default: the template's, the project's or the global default.",
    )
    language = serializers.ChoiceField(
        choices=settings.CONTENT_LANGUAGES, required=False,
        help_text="The language the copy is written in (checked on every output). Default: the project's.",
    )
    adapter = AdapterField(
        required=False, allow_null=True, allow_blank=True, max_length=64,
        help_text="The project's brand model (fine-tuned adapter) to run with: a version number, or \"base\" "
        "(or null) for the base model alone. Default: the project's active brand model, if trained on the job's model.",
    )

    def to_internal_value(self, data: Any) -> Any:
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = exc.detail if isinstance(exc.detail, dict) else {}
            if errors and set(errors) <= set(PARAMETER_NAMES):
                fields = {name: [str(m) for m in messages] for name, messages in errors.items()}
                name, messages = next(iter(fields.items()))
                raise InvalidInput(f"{name}: {messages[0]}", code="invalid_parameters", fields=fields) from None
            raise

    def parameters(self) -> dict[str, Any]:
        """Only the parameters the caller sent: the idempotency fingerprint covers what was asked."""
        return {name: self.validated_data[name] for name in PARAMETER_NAMES if name in self.validated_data}


# --- templates ---------------------------------------------------------------------------------


class TemplateVersionSerializer(serializers.ModelSerializer[TemplateVersion]):
    variables = TemplateVariablesField(read_only=True)
    constraints = ConstraintsField(read_only=True)

    class Meta:
        model = TemplateVersion
        fields = [
            "id",
            "version",
            "variables",
            "system_prompt",
            "prompt",
            "constraints",
            "default_max_new_tokens",
            "knowledge_token_budget",
            "changelog",
            "created_at",
        ]
        read_only_fields = fields


class TemplateSerializer(serializers.ModelSerializer[Template]):
    is_builtin = serializers.BooleanField(read_only=True)
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Template
        fields = ["id", "slug", "name", "category", "description", "is_builtin", "latest_version", "created_at"]
        read_only_fields = fields

    def get_latest_version(self, template: Template) -> int | None:
        versions = [v.version for v in template.versions.all()]  # prefetched by the view
        return max(versions, default=None)


class TemplateDetailSerializer(TemplateSerializer):
    versions = TemplateVersionSerializer(many=True, read_only=True)

    class Meta(TemplateSerializer.Meta):
        fields = [*TemplateSerializer.Meta.fields, "versions"]
        read_only_fields = fields


class TemplateFilterSerializer(serializers.Serializer[Any]):
    category = serializers.CharField(
        max_length=limits.MAX_CATEGORY_LENGTH,
        required=False,
        allow_blank=True,
        help_text="Only this category (empty: every category).",
    )


class TemplateVersionCreateSerializer(serializers.Serializer[Any]):
    variables = TemplateVariablesField(
        help_text='[{"name", "label", "type": "text"|"textarea"|"choice"|"number", "required", "max_length", '
        '"choices", "default", "help"}]'
    )
    system_prompt = serializers.CharField(
        max_length=limits.MAX_SYSTEM_PROMPT_LENGTH, default=COPYWRITER, trim_whitespace=False
    )
    prompt = serializers.CharField(
        max_length=limits.MAX_PROMPT_LENGTH, trim_whitespace=False, help_text="{variable} placeholders."
    )
    constraints = ConstraintsField(
        default=dict,
        help_text='{"min_chars", "max_chars", "min_words", "max_words", "required_phrases", "banned_phrases"}',
    )
    default_max_new_tokens = serializers.IntegerField(
        default=limits.DEFAULT_TEMPLATE_MAX_NEW_TOKENS, help_text=f"1..{limits.max_new_tokens()}"
    )
    knowledge_token_budget = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=limits.MAX_KNOWLEDGE_TOKEN_BUDGET,
        help_text="Tokens of project knowledge retrieved into each prompt (null: the installation's "
        "KNOWLEDGE_TOKEN_BUDGET; 0: none).",
    )
    changelog = serializers.CharField(
        max_length=limits.MAX_CHANGELOG_LENGTH, required=False, allow_blank=True, default=""
    )


class TemplateCreateSerializer(TemplateVersionCreateSerializer):
    name = serializers.CharField(max_length=limits.MAX_TEMPLATE_NAME_LENGTH)
    slug = serializers.SlugField(max_length=limits.MAX_SLUG_LENGTH, required=False, allow_blank=True, default="")
    category = serializers.CharField(max_length=limits.MAX_CATEGORY_LENGTH, required=False, default="custom")
    description = serializers.CharField(
        max_length=limits.MAX_DESCRIPTION_LENGTH, required=False, allow_blank=True, default=""
    )
    changelog = None  # type: ignore[assignment]  # the first version needs none


# --- brand voice -------------------------------------------------------------------------------


class BrandVoiceSerializer(serializers.ModelSerializer[BrandVoice]):
    """PUT replaces the voice (omitted fields become empty); PATCH changes the fields sent."""

    # The limits generation.services.save_brand_voice enforces, declared so the schema states them.
    tone = serializers.CharField(required=False, allow_blank=True, default="", max_length=limits.MAX_TONE_LENGTH)
    audience = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=limits.MAX_AUDIENCE_LENGTH
    )
    words_to_use = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=limits.MAX_WORD_LENGTH),
        required=False,
        default=list,
        max_length=limits.MAX_WORDS,
    )
    words_to_avoid = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=limits.MAX_WORD_LENGTH),
        required=False,
        default=list,
        max_length=limits.MAX_WORDS,
    )
    example_texts = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=limits.MAX_EXAMPLE_LENGTH),
        required=False,
        default=list,
        max_length=limits.MAX_EXAMPLES,
    )
    project = serializers.UUIDField(source="project_id", read_only=True)
    # An unsaved voice (a project that never set one) has no update time.
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = BrandVoice
        fields = ["project", "tone", "audience", "words_to_use", "words_to_avoid", "example_texts", "updated_at"]
        read_only_fields = ["project", "updated_at"]


# --- jobs and variants -------------------------------------------------------------------------


CONSTRAINT_CHECK: dict[str, Any] = {
    "type": "object",
    "description": "One check of a text (generation.constraints).",
    "properties": {
        "constraint": {
            "type": "string",
            "description": "min_chars, max_chars, min_words, max_words, required_phrase, banned_phrase; "
            "truncated (the model stopped at the token limit or the deadline: always failed); for a "
            'template\'s fields, field_present and field_<limit> of one labelled line ("Headline: ..."), '
            "and only_fields (no other lines); facts (prices, numbers and specs the brief and knowledge do not "
            "support; a hard check) and unsupported_statements (names and statements they do not support; "
            "soft: it flags, never fails).",
        },
        "expected": {"description": "The rule's value: a limit, a phrase, the field labels."},
        "actual": {"description": "What the text had: a length, whether a phrase is present, other lines."},
        "passed": {"type": "boolean"},
        "field": {"type": "string", "description": "The field's label, for a field's checks."},
        "finish_reason": {"type": "string", "description": "Why the model stopped, for truncated."},
        "soft": {"type": "boolean", "description": "A flag that never fails the text (constraints_passed ignores it)."},
        "claims": {
            "type": "array", "items": {"type": "string"},
            "description": "The unsupported claims, for facts and unsupported_statements.",
        },
    },
    "required": ["constraint", "expected", "actual", "passed"],
    "additionalProperties": True,
}


@extend_schema_field({"type": "array", "items": CONSTRAINT_CHECK})
class ConstraintReportField(serializers.JSONField):
    pass


FACT_CHECK: dict[str, Any] = {
    "type": "object",
    "description": "The claims of the model's text (generation.factcheck) and what supports each: the brief "
    "(the job's inputs) or a retrieved knowledge chunk. Empty for a withheld variant.",
    "properties": {
        "claims": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "The claim as the text words it."},
                    "kind": {
                        "type": "string",
                        "enum": ["price", "percentage", "measurement", "number", "date", "product", "feature"],
                    },
                    "value": {
                        "type": "string", "nullable": True,
                        "description": "Normalized value (\"25 USD\", \"30%\", \"2025-03-03\"); null for a statement.",
                    },
                    "supported": {"type": "boolean"},
                    "source": {
                        "type": "string", "nullable": True,
                        "description": "\"brief\", or the id of the knowledge chunk that supports it; null "
                        "when none does.",
                    },
                    "evidence": {"type": "string", "description": "The supporting sentence of the source."},
                    "hard": {
                        "type": "boolean",
                        "description": "Prices, numbers, specs and dates: unsupported, they fail the facts check.",
                    },
                },
                "required": ["text", "kind", "value", "supported", "source", "hard"],
            },
        },
        "supported": {"type": "integer"},
        "unsupported_hard": {"type": "integer", "description": "Unsupported numeric claims (the facts check fails)."},
        "unsupported_soft": {"type": "integer", "description": "Unsupported names and statements (flagged)."},
    },
}


@extend_schema_field(FACT_CHECK)
class FactCheckField(serializers.JSONField):
    pass


class BrandFitBreakdownSerializer(serializers.Serializer[Any]):
    voice = serializers.FloatField(
        required=False, help_text="Closeness to the brand voice (its texts, approved copy, words to use and avoid)."
    )
    outcome = serializers.FloatField(
        required=False, help_text="What the project's concluded experiments predict for this text: 0.5 converts "
        "like their average arm, higher better. Present once the project has enough concluded experiments.",
    )
    outcome_weight = serializers.FloatField(required=False, help_text="The outcome component's share of brand_fit.")
    outcome_experiments = serializers.IntegerField(required=False, help_text="Concluded experiments it learned from.")
    outcome_arms = serializers.IntegerField(required=False, help_text="Their arms (the data points of the fit).")


class VariantSerializer(serializers.ModelSerializer[Variant]):
    job = serializers.UUIDField(source="job_id", read_only=True)
    final_text = serializers.CharField(read_only=True, help_text="edited_text when there is one, else text.")
    constraint_report = ConstraintReportField(
        read_only=True,
        help_text="The checks of final_text: of the edit once there is one. Empty for a withheld variant.",
    )
    constraints_passed = serializers.BooleanField(
        read_only=True, help_text="Whether final_text passes every check; false for a withheld variant."
    )
    original_constraint_report = ConstraintReportField(
        read_only=True, help_text="The checks of the model's output (text), kept through edits."
    )
    withheld = serializers.BooleanField(
        source="is_withheld",
        read_only=True,
        help_text="The text was withheld (moderation or the prompt-leak filter) and is not delivered.",
    )
    withheld_reason = serializers.CharField(read_only=True, help_text="Why it was withheld; empty otherwise.")
    moderation = JSONObjectField(read_only=True, help_text="The output moderation's verdict; empty when none ran.")
    fact_check = FactCheckField(read_only=True)
    brand_fit_breakdown = BrandFitBreakdownSerializer(
        read_only=True, help_text="What brand_fit is made of; empty until scored (and for withheld text)."
    )

    class Meta:
        model = Variant
        fields = [
            "id",
            "job",
            "index",
            "revision",
            "text",
            "edited_text",
            "final_text",
            "finish_reason",
            "prompt_tokens",
            "tokens",
            "seed",
            "constraint_report",
            "constraints_passed",
            "original_constraint_report",
            "withheld",
            "withheld_reason",
            "brand_fit",
            "brand_fit_breakdown",
            "moderation",
            "fact_check",
            "rating",
            "approved",
            "approved_at",
            "created_at",
        ]
        read_only_fields = fields


class VariantFilterSerializer(serializers.Serializer[Any]):
    job = serializers.UUIDField(required=False, help_text="Only this job's variants (a job id).")


class VariantFeedbackSerializer(serializers.Serializer[Any]):
    rating = serializers.IntegerField(required=False, min_value=limits.MIN_RATING, max_value=limits.MAX_RATING)
    edited_text = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=limits.MAX_EDITED_TEXT_LENGTH
    )
    approved = serializers.BooleanField(required=False)


class JobSerializer(serializers.ModelSerializer[GenerationJob]):
    project = serializers.UUIDField(source="project_id", read_only=True)
    inputs = JSONObjectField(read_only=True, help_text="Variable name -> value, as the job was asked.")
    template = serializers.CharField(source="template_version.template.slug", read_only=True)
    template_id = serializers.UUIDField(source="template_version.template_id", read_only=True)
    template_version = serializers.IntegerField(source="template_version.version", read_only=True)
    batch = serializers.UUIDField(source="batch_id", read_only=True, allow_null=True)
    model = serializers.SlugRelatedField(
        source="serving_model", slug_field="slug", read_only=True, allow_null=True,
        help_text="The slug of the model the job runs on (null: submitted before the model registry).",
    )
    adapter = serializers.SerializerMethodField(
        help_text="The project's brand model the job runs with, pinned at submission (null: the base model)."
    )
    variants = serializers.SerializerMethodField()

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "project",
            "template",
            "template_id",
            "template_version",
            "status",
            "failure_reason",
            "inputs",
            "num_variants",
            "max_new_tokens",
            "temperature",
            "top_p",
            "seed",
            "language",
            "batch",
            "batch_line",
            "prompt_tokens",
            "completion_tokens",
            "model",
            "model_name",
            "adapter",
            "created_at",
            "started_at",
            "finished_at",
            "cancel_requested_at",
            "first_token_ms",
            "variants",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "first_token_ms": {
                "help_text": "Milliseconds from submission to the first generated token (null: none yet)."
            }
        }

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {"id": {"type": "string", "format": "uuid"}, "version": {"type": "integer"}},
        }
    )
    def get_adapter(self, job: GenerationJob) -> dict[str, Any] | None:
        if job.adapter_id is None:
            return None
        return {"id": str(job.adapter_id), "version": job.adapter.version}

    @extend_schema_field(VariantSerializer(many=True))
    def get_variants(self, job: GenerationJob) -> list[dict[str, Any]]:
        """The current revision of each variant, by index."""
        current = getattr(job, "current_variants", None)  # prefetched by the views
        if current is None:
            current = list(job.variants.filter(is_current=True).order_by("index"))
        return [self._variant_serializer.to_representation(variant) for variant in current]

    @cached_property
    def _variant_serializer(self) -> VariantSerializer:
        # One for the whole page: building a serializer copies its fields, and a new one per job
        # was a third of the job list's time (GET /api/v1/jobs/, measured with bench.load).
        return VariantSerializer(context=self.context)


class JobCreateSerializer(GenerationParameters):
    project = serializers.UUIDField()
    template = serializers.CharField(max_length=limits.MAX_TEMPLATE_REF_LENGTH, help_text="A template id or slug.")
    template_version = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2**31 - 1, help_text="Default: the latest."
    )
    inputs = JSONObjectField(default=dict, help_text="Variable name -> value, as the template declares them.")
    knowledge_filters = JSONObjectField(
        required=False,
        help_text='Which project knowledge the prompt may draw on: {"kind": [...], "sku": [...], "language": "en", '
        '"tags": [...]}, each optional (a SKU filter keeps knowledge tied to no product).',
    )


class JobFilterSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    project = serializers.UUIDField(required=False)
    # Empty text filters filter nothing, as an empty search box would.
    template = serializers.CharField(
        max_length=limits.MAX_TEMPLATE_REF_LENGTH, required=False, allow_blank=True, help_text="A template id or slug."
    )
    batch = serializers.UUIDField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    search = serializers.CharField(
        max_length=limits.MAX_SEARCH_LENGTH, required=False, allow_blank=True, help_text="Text in the job's inputs."
    )


# --- webhooks ----------------------------------------------------------------------------------


class WebhookSerializer(serializers.ModelSerializer[Webhook]):
    url = serializers.URLField(max_length=500)
    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)

    class Meta:
        model = Webhook
        fields = ["id", "url", "is_active", "created_by", "created_at"]
        read_only_fields = ["id", "is_active", "created_by", "created_at"]


class CreatedWebhookSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="The signing secret (HMAC-SHA256). Shown once; store it now."
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class WebhookDeliverySerializer(serializers.ModelSerializer[WebhookDelivery]):
    job = serializers.UUIDField(source="job_id", read_only=True)
    payload = JSONObjectField(read_only=True, help_text="The body sent: the event and the job's final state.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "job",
            "event",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "next_attempt_at",
            "delivered_at",
            "created_at",
            "payload",
        ]
        read_only_fields = fields


# --- bulk --------------------------------------------------------------------------------------


class BulkCreateSerializer(GenerationParameters):
    file = NonEmptyFileField(help_text="CSV, UTF-8, comma-separated; a header row names the variables.")
    project = serializers.UUIDField()
    template = serializers.CharField(max_length=limits.MAX_TEMPLATE_REF_LENGTH, help_text="A template id or slug.")
    # A form field has no null: leave a field out for its default.
    template_version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    max_new_tokens = serializers.IntegerField(
        required=False, min_value=1, max_value=limits.max_new_tokens(), help_text="Default: the template's."
    )
    seed = serializers.IntegerField(
        required=False, min_value=0, max_value=limits.MAX_SEED, help_text="Default: random."
    )
    model = serializers.CharField(
        required=False, allow_blank=True, max_length=limits.MAX_SLUG_LENGTH,
        help_text="A model's slug (GET /api/v1/models/). Default: the template's, the project's or the global default.",
    )


class RowErrorSerializer(serializers.Serializer[Any]):
    line = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.CharField())


class StatusCountsSerializer(serializers.Serializer[Any]):
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    canceled = serializers.IntegerField()


class BulkBatchSerializer(serializers.ModelSerializer[BulkBatch]):
    project = serializers.UUIDField(source="project_id", read_only=True)
    template = serializers.CharField(source="template_version.template.slug", read_only=True)
    template_version = serializers.IntegerField(source="template_version.version", read_only=True)
    accepted = serializers.SerializerMethodField(help_text="Rows that became jobs.")
    rejected = serializers.SerializerMethodField(help_text="Rows refused; see row_errors.")
    row_errors = RowErrorSerializer(many=True, read_only=True)
    status_counts = serializers.SerializerMethodField(help_text="Jobs of the batch per status.")
    done = serializers.SerializerMethodField(help_text="Every job of the batch has finished.")

    class Meta:
        model = BulkBatch
        fields = [
            "id",
            "project",
            "template",
            "template_version",
            "filename",
            "total_rows",
            "accepted",
            "rejected",
            "row_errors",
            "status_counts",
            "done",
            "created_at",
        ]
        read_only_fields = fields

    def _counts(self, batch: BulkBatch) -> dict[str, int]:
        if not hasattr(batch, "_status_counts"):
            batch._status_counts = status_counts(batch)  # type: ignore[attr-defined]
        return batch._status_counts  # type: ignore[attr-defined, no-any-return]

    def get_accepted(self, batch: BulkBatch) -> int:
        return sum(self._counts(batch).values())

    def get_rejected(self, batch: BulkBatch) -> int:
        return len(batch.row_errors)

    @extend_schema_field(StatusCountsSerializer)
    def get_status_counts(self, batch: BulkBatch) -> dict[str, int]:
        return self._counts(batch)

    def get_done(self, batch: BulkBatch) -> bool:
        counts = self._counts(batch)
        return counts[JobStatus.QUEUED] + counts[JobStatus.RUNNING] == 0
