"""Brand model API shapes: the training data preview, training runs, adapters (brand models)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from finetune.models import TrainingRun
from finetune.training import FLOAT_KNOBS, INT_KNOBS, KNOWN_TARGET_MODULES, OPTIONAL_INT_KNOBS
from generation.models import BrandAdapter


class ExampleSerializer(serializers.Serializer):  # type: ignore[type-arg]
    system = serializers.CharField()
    user = serializers.CharField()
    assistant = serializers.CharField()


class TrainingDataSerializer(serializers.Serializer):  # type: ignore[type-arg]
    by_source = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Examples per source (approved_variants, brand_examples, experiment_winners), before duplicates.",
    )
    total = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="Examples dropped as duplicates (or empty).")
    train = serializers.IntegerField(help_text="Examples trained on.")
    heldout = serializers.IntegerField(help_text="The newest examples (>= 10%), kept out for the evaluation.")
    minimum_train = serializers.IntegerField()
    enough = serializers.BooleanField()
    needed = serializers.IntegerField(help_text="Distinct examples still needed before a run is accepted.")
    examples = ExampleSerializer(many=True, help_text="A few training examples, as the model sees them.")


def _config_schema() -> dict[str, Any]:
    """The knobs ``TrainConfig.from_dict`` accepts, with its bounds: the schema states what the API refuses."""
    properties: dict[str, Any] = {
        name: {"type": "integer", "minimum": low, "maximum": high} for name, (low, high) in INT_KNOBS.items()
    }
    properties.update(
        {name: {"type": "number", "minimum": low, "maximum": high} for name, (low, high) in FLOAT_KNOBS.items()}
    )
    properties.update({
        name: {"type": "integer", "minimum": low, "maximum": high, "nullable": True}
        for name, (low, high) in OPTIONAL_INT_KNOBS.items()
    })
    properties["target_modules"] = {
        "type": "array", "minItems": 1, "items": {"type": "string", "enum": sorted(KNOWN_TARGET_MODULES)},
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


@extend_schema_field(_config_schema())
class TrainConfigField(serializers.DictField):
    """A dict checked by ``TrainConfig.from_dict`` in the service (400 ``invalid_config`` naming each bad knob)."""


class TrainingRunCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    config = TrainConfigField(
        required=False,
        help_text="Expert knobs over the defaults (each optional): rank, alpha, dropout, target_modules, epochs, "
        "learning_rate, batch_size, max_length, seed, checkpoint_every_steps, warmup_ratio, weight_decay, "
        "top_layers (adapt only the top N blocks; null: all), max_steps (null: all epochs).",
    )


class TrainingRunSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    project = serializers.UUIDField(source="project_id", read_only=True)
    model = serializers.SlugRelatedField(source="serving_model", slug_field="slug", read_only=True)
    adapter = serializers.UUIDField(source="adapter_id", read_only=True, allow_null=True)
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "project",
            "model",
            "status",
            "config",
            "dataset",
            "progress",
            "percent",
            "compute_seconds",
            "failure_reason",
            "attempts",
            "cancel_requested_at",
            "adapter",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class BrandModelSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    project = serializers.UUIDField(source="project_id", read_only=True)
    model = serializers.SlugRelatedField(source="serving_model", slug_field="slug", read_only=True)
    name = serializers.SerializerMethodField()

    class Meta:
        model = BrandAdapter
        fields = [
            "id",
            "project",
            "version",
            "name",
            "model",
            "config",
            "evaluation",
            "beats_base",
            "is_active",
            "activated_at",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_name(self, adapter: BrandAdapter) -> str:
        return adapter.name


class ActivateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    insist = serializers.BooleanField(
        required=False, default=False, help_text="Activate although it did not beat the base model."
    )

    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(data if data is not None else {})
