"""A brand model's training run: a project's LoRA fine-tune, run on the ``training`` queue.

The adapter it produces is a ``generation.models.BrandAdapter`` (generation serves it; this app trains,
evaluates, versions and exports it).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from core.models import LeasedJob
from generation.models import FINAL_STATUSES, JobStatus


class TrainingRun(LeasedJob):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="training_runs"
    )
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="training_runs")
    #: The base model trained on (the project's default model when the run was started).
    serving_model = models.ForeignKey(
        "generation.ServingModel", on_delete=models.RESTRICT, related_name="training_runs"
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    #: ``finetune.training.TrainConfig.to_dict()``: the defaults with the expert's knobs applied.
    config = models.JSONField(default=dict, blank=True)
    #: ``finetune.dataset.Dataset.summary()`` when the run started: counts per source, split sizes.
    dataset = models.JSONField(default=dict, blank=True)
    #: ``{"step", "total_steps", "epoch", "loss", "seconds", "points": [[step, loss], ...]}``.
    progress = models.JSONField(default=dict, blank=True)
    #: Accelerator (or CPU) seconds billed for the run: its training and evaluation, all attempts.
    compute_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    adapter = models.ForeignKey(
        "generation.BrandAdapter", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "status"])]

    def __str__(self) -> str:
        return f"Training run {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def percent(self) -> int:
        total = (self.progress or {}).get("total_steps") or 0
        return int(100 * (self.progress or {}).get("step", 0) / total) if total else 0

    @property
    def loss_points(self) -> list[list[float]]:
        return list((self.progress or {}).get("points") or [])
