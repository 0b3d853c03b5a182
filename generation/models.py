"""Templates (versioned), brand voices, generation jobs and their variants."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from generation import limits


class Template(models.Model):
    """A kind of content. ``organization`` is null for the built-in library, shared by everyone."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="templates"
    )
    slug = models.SlugField(max_length=limits.MAX_SLUG_LENGTH)
    name = models.CharField(max_length=limits.MAX_TEMPLATE_NAME_LENGTH)
    category = models.CharField(max_length=limits.MAX_CATEGORY_LENGTH, default="general")
    description = models.TextField(blank=True, max_length=limits.MAX_DESCRIPTION_LENGTH)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["category", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="template_slug_unique_in_org"),
            models.UniqueConstraint(
                fields=["slug"], condition=Q(organization__isnull=True), name="template_builtin_slug_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_builtin(self) -> bool:
        return self.organization_id is None

    def latest_version(self) -> TemplateVersion | None:
        return self.versions.order_by("-version").first()


class TemplateVersion(models.Model):
    """An immutable version of a template; a job pins the version it used.

    ``variables``: ``[{"name", "label", "type": "text"|"textarea"|"choice"|"number", "required",
    "max_length", "choices", "default", "help"}]``.
    ``constraints``: ``{"min_chars", "max_chars", "min_words", "max_words", "required_phrases",
    "banned_phrases", "fields"}``, each optional; phrases may reference variables as ``{name}``;
    ``fields`` (``[{"label": "Headline", "max_chars": 30}]``) are lines the output must have
    ("Headline: ..."), each with its own limits (generation.constraints).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    variables = models.JSONField(default=list)
    system_prompt = models.TextField(max_length=limits.MAX_SYSTEM_PROMPT_LENGTH)
    prompt = models.TextField(
        max_length=limits.MAX_PROMPT_LENGTH, help_text="User prompt; {variable} placeholders are filled in."
    )
    constraints = models.JSONField(default=dict, blank=True)
    default_max_new_tokens = models.PositiveIntegerField(default=limits.DEFAULT_TEMPLATE_MAX_NEW_TOKENS)
    changelog = models.CharField(max_length=limits.MAX_CHANGELOG_LENGTH, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["template", "-version"]
        constraints = [models.UniqueConstraint(fields=["template", "version"], name="template_version_unique")]

    def __str__(self) -> str:
        return f"{self.template.name} v{self.version}"

    def variable(self, name: str) -> dict[str, Any] | None:
        return next((v for v in self.variables if v["name"] == name), None)


class BrandVoice(models.Model):
    """How a project's copy should sound; shapes every prompt of the project."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.OneToOneField("projects.Project", on_delete=models.CASCADE, related_name="brand_voice")
    tone = models.CharField(max_length=limits.MAX_TONE_LENGTH, blank=True)
    audience = models.CharField(max_length=limits.MAX_AUDIENCE_LENGTH, blank=True)
    words_to_use = models.JSONField(default=list, blank=True)
    words_to_avoid = models.JSONField(default=list, blank=True)
    example_texts = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Brand voice of {self.project}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class GenerationJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="generation_jobs"
    )
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="generation_jobs")
    template_version = models.ForeignKey(TemplateVersion, on_delete=models.PROTECT, related_name="jobs")
    inputs = models.JSONField(default=dict)
    # parameters
    num_variants = models.PositiveSmallIntegerField(default=1)
    max_new_tokens = models.PositiveIntegerField(default=200)
    temperature = models.FloatField(default=0.7)
    top_p = models.FloatField(default=0.95)
    seed = models.BigIntegerField()
    # who asked
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    idempotency_key = models.CharField(max_length=limits.MAX_IDEMPOTENCY_KEY_LENGTH, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    batch = models.ForeignKey(
        "generation.BulkBatch", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    batch_line = models.PositiveIntegerField(null=True, blank=True)
    # lifecycle
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # usage
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    compute_seconds = models.FloatField(default=0.0)
    model_name = models.CharField(max_length=200, blank=True)
    few_shot_variant_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="job_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "-created_at"]),
            models.Index(fields=["status", "created_at"]),
            # The API's job list (newest first, one organization): without it every page sorts all the
            # organization's jobs (measured 1.5 ms at 600 jobs, growing with each one).
            models.Index(fields=["organization", "-created_at"], name="job_org_newest_first"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


#: The finish reason of a variant whose text was withheld (moderation or the prompt-leak filter).
WITHHELD = "blocked"


class Variant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="variants")
    index = models.PositiveSmallIntegerField()
    revision = models.PositiveSmallIntegerField(default=0)
    is_current = models.BooleanField(default=True)
    text = models.TextField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=16)
    seed = models.BigIntegerField(default=0)
    #: The checks of the text shown (``final_text``): of the marketer's edit once there is one.
    constraint_report = models.JSONField(default=list)
    constraints_passed = models.BooleanField(default=True)
    #: The checks of the model's output, kept through edits. A withheld variant has neither report.
    original_constraint_report = models.JSONField(default=list)
    brand_fit = models.FloatField(null=True, blank=True)
    moderation = models.JSONField(default=dict, blank=True)
    # feedback
    rating = models.SmallIntegerField(null=True, blank=True)
    edited_text = models.TextField(blank=True)
    approved = models.BooleanField(default=False)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["job", "index", "-revision"]
        constraints = [
            # Exactly-once: a redelivered task cannot store a variant twice.
            models.UniqueConstraint(fields=["job", "index", "revision"], name="variant_unique_revision"),
            models.UniqueConstraint(fields=["job", "index"], condition=Q(is_current=True), name="variant_one_current"),
        ]

    def __str__(self) -> str:
        return f"Variant {self.index} of {self.job_id}"

    @property
    def final_text(self) -> str:
        return self.edited_text or self.text

    @property
    def is_withheld(self) -> bool:
        """Withheld by output moderation or the prompt-leak filter: its text was not delivered."""
        return self.finish_reason == WITHHELD

    @property
    def withheld_reason(self) -> str:
        """Why a withheld variant's text was not delivered, for the requester; empty otherwise."""
        if not self.is_withheld:
            return ""
        category = (self.moderation or {}).get("category") or "policy"
        match = (self.moderation or {}).get("match") or ""
        if category == "prompt_leak":
            # The filter's match names the kind of leak, never the leaked text (generation.leakage).
            return f"It repeated hidden prompt material ({match})." if match else "It repeated hidden prompt material."
        return f"It was blocked by moderation ({category})."


class BulkBatch(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="bulk_batches"
    )
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="bulk_batches")
    template_version = models.ForeignKey(TemplateVersion, on_delete=models.PROTECT, related_name="+")
    filename = models.CharField(max_length=255, blank=True)
    total_rows = models.PositiveIntegerField(default=0)
    row_errors = models.JSONField(default=list, blank=True)  # [{"line": n, "errors": [...]}]
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "bulk batches"

    def __str__(self) -> str:
        return f"Bulk batch {self.filename or self.pk}"


class Webhook(models.Model):
    """A URL that receives each job's final state, signed with HMAC-SHA256.

    The signing secret must be readable to sign, so it is stored encrypted
    (Fernet, key derived from SECRET_KEY), never in plain text.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    encrypted_secret = models.TextField(editable=False)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    attempts = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, default="pending")  # pending, delivered, failed
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["webhook", "job", "event"], name="webhook_delivery_once_per_event"),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.webhook_id} ({self.status})"
