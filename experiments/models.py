"""Experiments, their arms, the units assigned to an arm (exposures) and what those units then did (outcomes).

Tenant-owned like everything else: an experiment carries its organization and project; arms,
assignments and outcomes reach the organization through it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from experiments import limits


class Policy(models.TextChoices):
    FIXED = "fixed", _("Fixed (even split)")
    ADAPTIVE = "adaptive", _("Adaptive (Thompson sampling)")


class Status(models.TextChoices):
    DRAFT = "draft", _("Draft")
    RUNNING = "running", _("Running")
    STOPPED = "stopped", _("Stopped")
    CONCLUDED = "concluded", _("Concluded")


#: Goal events with a meaning of their own; any other name is a custom event sent to the outcomes API.
STANDARD_GOALS = ("click", "open", "cart", "purchase")


class Experiment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE, related_name="experiments")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=limits.MAX_NAME_LENGTH)
    goal_event = models.CharField(
        max_length=limits.MAX_EVENT_NAME_LENGTH, default="click",
        help_text="What counts as a conversion: click, open, cart, purchase or a custom event name.",
    )
    policy = models.CharField(max_length=16, choices=Policy.choices, default=Policy.FIXED)
    min_share = models.FloatField(
        default=0.1, help_text="Adaptive: the least share of traffic an arm gets until it has the minimum exposures."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True)
    stop_probability = models.FloatField(
        default=0.95, help_text="Conclude once an arm's probability to be best reaches this."
    )
    min_exposures = models.PositiveIntegerField(
        default=100, help_text="Exposures every arm needs before the experiment may conclude on probability."
    )
    max_exposures = models.PositiveIntegerField(
        null=True, blank=True, help_text="Conclude after this many exposures in all (empty: no maximum)."
    )
    attribution_window_hours = models.PositiveIntegerField(
        default=72, help_text="An outcome counts if it happens this long after the exposure at most."
    )
    target_url = models.URLField(
        max_length=limits.MAX_URL_LENGTH, blank=True, help_text="Where tracking links lead by default."
    )
    allowed_hosts = models.JSONField(
        default=list, blank=True, help_text="Hosts tracking links may lead to, besides the target URL's."
    )
    winner = models.ForeignKey("experiments.Arm", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    concluded_reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    #: When the adaptive weights were last recomputed (arms' ``weight``).
    reweighted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "status"])]

    def __str__(self) -> str:
        return self.name

    @property
    def attribution_window(self) -> timedelta:
        return timedelta(hours=self.attribution_window_hours)

    @property
    def is_draft(self) -> bool:
        return self.status == Status.DRAFT

    @property
    def is_running(self) -> bool:
        return self.status == Status.RUNNING


class Arm(models.Model):
    """One copy under test: an approved variant's text (snapshotted when added) or the marketer's control text."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    label = models.CharField(max_length=limits.MAX_LABEL_LENGTH)
    # SET_NULL: the text served is the arm's own copy; deleting the job that wrote it keeps the experiment.
    variant = models.ForeignKey(
        "generation.Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="experiment_arms"
    )
    text = models.TextField(max_length=limits.MAX_ARM_TEXT_LENGTH)
    position = models.PositiveSmallIntegerField(default=0)
    #: The arm's current share of new units (even for fixed; recomputed periodically for adaptive).
    weight = models.FloatField(default=0.0)

    class Meta:
        ordering = ["experiment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "label"], name="arm_label_unique_in_experiment"),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def is_control(self) -> bool:
        return self.variant_id is None


class Assignment(models.Model):
    """A unit's exposure to one arm: made once per unit and experiment, its id is the assignment id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="assignments")
    arm = models.ForeignKey(Arm, on_delete=models.CASCADE, related_name="assignments")
    unit = models.CharField(max_length=limits.MAX_UNIT_LENGTH)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["experiment", "created_at"]
        constraints = [
            # Sticky: concurrent first calls for one unit make one row (assignment.assign inserts ON CONFLICT).
            models.UniqueConstraint(fields=["experiment", "unit"], name="assignment_unit_once"),
        ]
        indexes = [models.Index(fields=["experiment", "arm"])]

    def __str__(self) -> str:
        return f"{self.unit} -> {self.arm_id}"


class Outcome(models.Model):
    """Something an assigned unit did: a click, an open, an ingested event. Idempotent by ``event_id``."""

    id = models.BigAutoField(primary_key=True)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="outcomes")
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="outcomes")
    event = models.CharField(max_length=limits.MAX_EVENT_NAME_LENGTH)
    event_id = models.CharField(max_length=limits.MAX_EVENT_ID_LENGTH)
    value = models.FloatField(default=1.0)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["experiment", "occurred_at"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "event_id"], name="outcome_event_once"),
        ]
        indexes = [models.Index(fields=["experiment", "event", "assignment"])]

    def __str__(self) -> str:
        return f"{self.event} of {self.assignment_id}"
