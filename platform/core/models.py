"""Abstract models the apps build on; core itself stores nothing."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class LeasedJob(models.Model):
    """The lifecycle fields of a background job run by ``core.jobs.Lifecycle``.

    Each job model adds its own ``status`` (its choices differ: generation jobs can be canceled)
    and what the job is about. A running job holds a lease that its worker renews; a lease that
    expired means the worker is gone, and the reconciler hands the job to another one.
    """

    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class Upload(models.Model):
    """A file a person (or an API client) uploaded for the platform to work through row by row:
    a bulk generation batch, a recommendation data import. Each adds where it belongs (organization,
    project, API key) and what it reports per row."""

    filename = models.CharField(max_length=255, blank=True)
    total_rows = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        abstract = True
        ordering = ["-created_at"]
