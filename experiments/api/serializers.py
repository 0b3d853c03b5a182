"""Shapes of the experiments API. Validation of meaning (approved variants, floors, hosts) lives in the services."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from experiments import limits
from experiments.models import Arm, Experiment, Policy, Status


class ArmSerializer(serializers.ModelSerializer[Arm]):
    variant = serializers.UUIDField(source="variant_id", read_only=True, allow_null=True)
    is_control = serializers.BooleanField(read_only=True, help_text="The marketer's own text, not a variant.")

    class Meta:
        model = Arm
        fields = ["id", "label", "variant", "is_control", "text", "position", "weight"]
        read_only_fields = fields


class ExperimentSerializer(serializers.ModelSerializer[Experiment]):
    project = serializers.UUIDField(source="project_id", read_only=True)
    winner = serializers.CharField(source="winner.label", read_only=True, allow_null=True, default=None)
    allowed_hosts = serializers.ListField(child=serializers.CharField(), read_only=True)
    arms = ArmSerializer(many=True, read_only=True)

    class Meta:
        model = Experiment
        fields = [
            "id", "project", "name", "goal_event", "policy", "min_share", "status", "stop_probability",
            "min_exposures", "max_exposures", "attribution_window_hours", "target_url", "allowed_hosts",
            "winner", "concluded_reason", "arms", "created_at", "updated_at", "started_at", "ended_at",
        ]
        read_only_fields = fields


class ArmInputSerializer(serializers.Serializer[Any]):
    label = serializers.CharField(
        required=False, max_length=limits.MAX_LABEL_LENGTH, help_text="Default: A, B, C ... by position."
    )
    variant = serializers.UUIDField(required=False, allow_null=True, help_text="An approved variant of the project.")
    text = serializers.CharField(
        required=False, allow_blank=True, max_length=limits.MAX_ARM_TEXT_LENGTH,
        help_text="The control's copy, for an arm without a variant.",
    )


class ExperimentSettingsSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=limits.MAX_NAME_LENGTH)
    goal_event = serializers.CharField(
        max_length=limits.MAX_EVENT_NAME_LENGTH, default="click",
        help_text="click, open, cart, purchase, or a custom event name sent to /outcomes "
        "(letters, digits and _ - . : only).",
    )
    policy = serializers.ChoiceField(choices=Policy.choices, default=Policy.FIXED)
    min_share = serializers.FloatField(min_value=0, max_value=limits.MAX_MIN_SHARE, default=0.1)
    stop_probability = serializers.FloatField(
        min_value=limits.MIN_STOP_PROBABILITY, max_value=limits.MAX_STOP_PROBABILITY, default=0.95
    )
    min_exposures = serializers.IntegerField(min_value=0, max_value=limits.MAX_EXPOSURES, default=100)
    max_exposures = serializers.IntegerField(
        min_value=1, max_value=limits.MAX_EXPOSURES, allow_null=True, default=None
    )
    attribution_window_hours = serializers.IntegerField(
        min_value=limits.MIN_ATTRIBUTION_HOURS, max_value=limits.MAX_ATTRIBUTION_HOURS, default=72
    )
    target_url = serializers.CharField(
        max_length=limits.MAX_URL_LENGTH, required=False, allow_blank=True, default="",
        help_text="Where tracking links lead unless assign names a target (an http or https URL).",
    )
    allowed_hosts = serializers.ListField(
        child=serializers.CharField(max_length=253), max_length=limits.MAX_ALLOWED_HOSTS, default=list,
        help_text="Hosts assign's target may name besides the target URL's.",
    )
    arms = serializers.ListField(
        child=ArmInputSerializer(), min_length=limits.MIN_ARMS, max_length=limits.MAX_ARMS,
        help_text="Each arm is an approved variant or a control text.",
    )


class ExperimentCreateSerializer(ExperimentSettingsSerializer):
    project = serializers.UUIDField()


class ExperimentFilterSerializer(serializers.Serializer[Any]):
    project = serializers.UUIDField(required=False, help_text="Only this project's experiments.")
    status = serializers.ChoiceField(choices=Status.choices, required=False)


class AssignQuerySerializer(serializers.Serializer[Any]):
    unit = serializers.CharField(
        max_length=limits.MAX_UNIT_LENGTH, help_text="A customer's external id or a visitor id."
    )
    target = serializers.CharField(
        required=False, max_length=limits.MAX_URL_LENGTH,
        help_text="Where the click URL leads: an http(s) URL on the target URL's host or an allowed host.",
    )


class UnitField(serializers.CharField):
    """A unit id as JSON text: a number is refused (``12`` and ``"12"`` must not silently be one unit).
    Blank and control characters are the view's ``invalid_unit``, as for ``assign``'s ``unit``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=limits.MAX_UNIT_LENGTH, allow_blank=True, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class BulkAssignInputSerializer(serializers.Serializer[Any]):
    units = serializers.ListField(
        child=UnitField(), min_length=1, max_length=limits.MAX_BULK_UNITS,
        help_text=f"1 to {limits.MAX_BULK_UNITS:,} customer or visitor ids (a repeated id is answered once per "
        "mention, with the same arm); more recipients: several requests.",
    )
    target = serializers.CharField(
        required=False, max_length=limits.MAX_URL_LENGTH,
        help_text="Where the click URLs lead: an http(s) URL on the target URL's host or an allowed host.",
    )
    links = serializers.BooleanField(
        default=True, help_text="false: no click or pixel URLs, for a caller that reports outcomes as events "
        "(signing the links is most of a large request's time).",
    )


class ServedArmSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    label = serializers.CharField()
    text = serializers.CharField(help_text="The copy to show the units assigned to this arm.")


class UnitAssignmentSerializer(serializers.Serializer[Any]):
    unit = serializers.CharField()
    assignment = serializers.UUIDField(
        allow_null=True, help_text="The exposure's id; null once concluded (the winner is served, nothing recorded)."
    )
    arm = serializers.CharField(help_text="The arm's label; its text is in ``arms``.")
    arm_id = serializers.UUIDField()
    new = serializers.BooleanField(help_text="This call made the exposure (false: the unit's earlier arm).")
    click_url = serializers.URLField(allow_null=True, help_text="A tracking link to the target, recording a click.")
    pixel_url = serializers.URLField(allow_null=True, help_text="A 1x1 GIF recording an open (for emails).")


class BulkAssignmentSerializer(serializers.Serializer[Any]):
    experiment = serializers.UUIDField()
    arms = ServedArmSerializer(
        many=True, help_text="The arms the units were assigned to, each text once (an arm's text may be 10,000 "
        "characters: repeated per unit it would make a 1,000-unit answer 10 MB)."
    )
    assignments = UnitAssignmentSerializer(many=True, help_text="One per unit sent, in the order sent.")


class AssignmentSerializer(serializers.Serializer[Any]):
    experiment = serializers.UUIDField()
    assignment = serializers.UUIDField(
        allow_null=True, help_text="The exposure's id; null once concluded (the winner is served, nothing recorded)."
    )
    arm = serializers.CharField(help_text="The arm's label.")
    arm_id = serializers.UUIDField()
    text = serializers.CharField(help_text="The copy to show.")
    new = serializers.BooleanField(help_text="This call made the exposure (false: the unit's earlier arm).")
    click_url = serializers.URLField(allow_null=True, help_text="A tracking link to the target, recording a click.")
    pixel_url = serializers.URLField(allow_null=True, help_text="A 1x1 GIF recording an open (for emails).")


class OutcomeInputSerializer(serializers.Serializer[Any]):
    unit = serializers.CharField(required=False, max_length=limits.MAX_UNIT_LENGTH)
    assignment = serializers.UUIDField(required=False)
    event = serializers.CharField(
        max_length=limits.MAX_EVENT_NAME_LENGTH, help_text="The goal's name (letters, digits and _ - . : only)."
    )
    event_id = serializers.CharField(
        max_length=limits.MAX_EVENT_ID_LENGTH, help_text="Your id of the event: a retry with it counts once."
    )
    occurred_at = serializers.DateTimeField(required=False, help_text="Default: now.")
    value = serializers.FloatField(required=False, default=1.0, min_value=-1e9, max_value=1e9)


class OutcomeResultSerializer(serializers.Serializer[Any]):
    recorded = serializers.BooleanField(
        help_text="False when it was already recorded, is not the goal, or falls outside the attribution window."
    )


class ArmResultSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    label = serializers.CharField()
    exposures = serializers.IntegerField()
    conversions = serializers.IntegerField()
    rate = serializers.FloatField()
    ci_low = serializers.FloatField(help_text="95% credible interval of the rate, lower end.")
    ci_high = serializers.FloatField()
    prob_best = serializers.FloatField(help_text="Probability that this arm has the highest rate.")
    expected_loss = serializers.FloatField(help_text="Rate given up on average by choosing this arm.")
    lift = serializers.FloatField(allow_null=True, help_text="Relative to the first arm's rate.")
    weight = serializers.FloatField(help_text="Share of new units this arm gets now.")


class ResultsSerializer(serializers.Serializer[Any]):
    experiment = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Status.choices)
    goal_event = serializers.CharField()
    exposures = serializers.IntegerField()
    conversions = serializers.IntegerField()
    leader = serializers.CharField(allow_null=True)
    winner = serializers.CharField(allow_null=True)
    concluded_reason = serializers.CharField()
    recommendation = serializers.CharField()
    arms = ArmResultSerializer(many=True)
