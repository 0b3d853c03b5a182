"""Templates (versioned), brand voices, generation jobs and their variants."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.models import LeasedJob, Upload
from generation import credentials, limits
from workers.contract import Backend


class BackendKind(models.TextChoices):
    INPROCESS = "inprocess", _("In process (transformers on the worker)")
    OPENAI = "openai", _("OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, TGI)")
    STUB = "stub", _("Stub (echoes the prompt; tests and development)")


class ServingModel(models.Model):
    """A model jobs can run on: where it is served, its defaults and its price. Managed by operators.

    Global (``organization`` null) or private to one organization (its own fine-tune); a global one may
    be limited to some plans (``plans``, empty: every plan). API clients name it by ``slug``. One row is
    the default, used by jobs whose template, project and request name none (``generation.registry``).

    ``model``: for ``inprocess`` a model source (``bundled:...``, a hub id in the local cache, a folder),
    where empty means the worker's own ``LOOM_MODEL`` (what the zero-configuration default row says, so
    it follows the settings of each worker instead of copying them once); for ``openai`` the served
    model name the server expects. ``base_url`` is the server's, up to and including ``/v1``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=limits.MAX_SLUG_LENGTH, unique=True, help_text="What API clients name.")
    name = models.CharField(max_length=limits.MAX_TEMPLATE_NAME_LENGTH)
    backend_kind = models.CharField(max_length=16, choices=BackendKind.choices, default=BackendKind.INPROCESS)
    model = models.CharField(
        max_length=500,
        blank=True,
        help_text="In process: a model source (empty: the worker's LOOM_MODEL). OpenAI: the served model name.",
    )
    base_url = models.URLField(max_length=500, blank=True, help_text="OpenAI: the server's URL up to /v1.")
    #: Write-only: encrypted (generation.credentials), never shown; ``set_api_key`` changes it.
    encrypted_api_key = models.TextField(blank=True, editable=False)
    context_length = models.PositiveIntegerField(default=0, help_text="Tokens (0: unknown).")
    # Default sampling of jobs that do not say; empty: the template's or the platform's.
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    max_new_tokens = models.PositiveIntegerField(null=True, blank=True)
    price_per_1k_tokens = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Overage price per 1,000 tokens on this model, in the billing currency; empty: the plan's.",
    )
    organization = models.ForeignKey(
        "organizations.Organization",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="serving_models",
        help_text="Private to this organization; empty: global.",
    )
    plans = models.ManyToManyField(
        "billing.Plan", blank=True, related_name="+", help_text="Global models only: these plans (none: all)."
    )
    is_active = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="serving_model_one_default"
            ),
            models.CheckConstraint(
                condition=~Q(is_default=True) | Q(is_active=True, organization__isnull=True),
                name="serving_model_default_active_global",
                violation_error_message="The default model must be active and global.",
            ),
            models.CheckConstraint(
                condition=~Q(backend_kind="openai") | (~Q(base_url="") & ~Q(model="")),
                name="serving_model_openai_has_server",
                violation_error_message="An OpenAI-compatible model needs a base URL and a served model name.",
            ),
            models.CheckConstraint(
                condition=Q(price_per_1k_tokens__isnull=True) | Q(price_per_1k_tokens__gte=Decimal("0")),
                name="serving_model_price_not_negative",
                violation_error_message="A price cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def has_api_key(self) -> bool:
        return bool(self.encrypted_api_key)

    def set_api_key(self, api_key: str) -> None:
        """Store ``api_key`` encrypted (empty: none); the caller saves."""
        self.encrypted_api_key = credentials.encrypt(api_key)

    @property
    def follows_settings(self) -> bool:
        """An in-process row without a model source (the zero-configuration default): the process's own
        settings say where it is served, ``LOOM_OPENAI_BASE_URL`` when set, else ``LOOM_MODEL``."""
        return self.backend_kind == BackendKind.INPROCESS and not self.model

    @property
    def served_by(self) -> str:
        """The backend kind jobs on this model actually use (a settings-following row's resolved one)."""
        return self.backend().kind

    def backend(self) -> Backend:
        """Where a worker finds this model. Resolved in the calling process: a row that follows the
        settings is the worker's own ``LOOM_OPENAI_BASE_URL`` server or ``LOOM_MODEL`` (``stub`` included),
        so its engine is the one the worker loaded at start (``workers.engines.engine_for``)."""
        if self.follows_settings:
            if settings.LOOM_OPENAI_BASE_URL:
                return Backend(
                    kind=BackendKind.OPENAI.value,
                    model=settings.LOOM_OPENAI_MODEL,
                    base_url=settings.LOOM_OPENAI_BASE_URL.rstrip("/"),
                    api_key=settings.LOOM_OPENAI_API_KEY,
                    context_length=self.context_length,
                )
            return Backend(kind=str(self.backend_kind), model=settings.LOOM_MODEL, context_length=self.context_length)
        return Backend(
            kind=str(self.backend_kind),
            model=self.model,
            base_url=self.base_url.rstrip("/"),
            api_key=credentials.decrypt(self.encrypted_api_key),
            context_length=self.context_length,
        )


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
    #: The model its jobs run on unless the job names one (generation.registry.model_for_job).
    default_model = models.ForeignKey(
        ServingModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
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
        # What every choice list and admin row shows: a built-in template in the reader's language.
        return self.display_name

    @property
    def is_builtin(self) -> bool:
        return self.organization_id is None

    @property
    def display_name(self) -> str:
        """The name in the reader's language: the built-in library's names are in the catalogue
        (generation/library.py marks them), an organization's own are shown as written."""
        return gettext(self.name) if self.is_builtin else self.name

    @property
    def display_description(self) -> str:
        return gettext(self.description) if self.is_builtin and self.description else self.description

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
    knowledge_token_budget = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Tokens of project knowledge in each prompt (empty: KNOWLEDGE_TOKEN_BUDGET; 0: none).",
    )
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


class ProjectGenerationSettings(models.Model):
    """A project's generation preferences; missing means the defaults. Here, not on ``Project``:
    projects sit below generation in the layers and know nothing of its models."""

    project = models.OneToOneField(
        "projects.Project", primary_key=True, on_delete=models.CASCADE, related_name="generation_settings"
    )
    #: The model the project's jobs run on unless the job or its template names one.
    default_model = models.ForeignKey(
        ServingModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "project generation settings"

    def __str__(self) -> str:
        return f"Generation settings of {self.project}"


class BrandAdapter(models.Model):
    """A LoRA adapter fine-tuned on one project's own copy (``finetune``), on top of a base model.

    Versioned per project; at most one is active, and new jobs of the project run on it (a job pins
    the version it was submitted with, so activating a newer one or rolling back never changes a job
    in flight). The weights live in a folder (``adapter_model.safetensors`` + ``adapter_config.json``,
    as ``peft`` saves them) under ``settings.BRAND_ADAPTER_ROOT``; ``path`` is relative to it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="brand_adapters"
    )
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="brand_adapters")
    version = models.PositiveIntegerField()
    #: The base model it was trained on (a ``ServingModel``): an adapter only runs on that model.
    serving_model = models.ForeignKey(ServingModel, on_delete=models.RESTRICT, related_name="adapters")
    #: Folder of the adapter's files, relative to ``settings.BRAND_ADAPTER_ROOT``.
    path = models.CharField(max_length=300)
    #: Training settings (rank, alpha, target modules, epochs, learning rate, examples, seconds).
    config = models.JSONField(default=dict, blank=True)
    #: Evaluation against the base model on the held-out split (perplexity, constraint pass rate,
    #: brand fit, side-by-side samples); ``beats_base`` is its verdict.
    evaluation = models.JSONField(default=dict, blank=True)
    beats_base = models.BooleanField(default=False)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="brand_adapter_version_unique"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_active=True), name="brand_adapter_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} brand adapter v{self.version}"

    @property
    def name(self) -> str:
        """The name a serving engine knows it by (vLLM's ``--lora-modules`` / dynamic loading): unique
        per version, so a retrained adapter is never served from a stale cache."""
        return f"brand-{self.id.hex[:12]}-v{self.version}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    CANCELED = "canceled", _("Canceled")


FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class GenerationJob(LeasedJob):
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
    #: The language the copy is written in (``settings.CONTENT_LANGUAGES``): the prompt asks for it and the
    #: constraint report's "language" check holds the output to it. Default: the project's.
    language = models.CharField(max_length=16, choices=settings.CONTENT_LANGUAGES, default="en")
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
    # lifecycle (and core.models.LeasedJob's fields: attempts, worker, lease, times, failure reason)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # usage
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    compute_seconds = models.FloatField(default=0.0)
    model_name = models.CharField(max_length=200, blank=True)
    #: The registry's model the job runs on (None: submitted before the registry existed).
    serving_model = models.ForeignKey(
        ServingModel, null=True, blank=True, on_delete=models.RESTRICT, related_name="jobs"
    )
    #: The project's brand adapter the job runs with, pinned at submission (None: the base model).
    adapter = models.ForeignKey(
        BrandAdapter, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    #: The pinned adapter's version, kept when the adapter is deleted: a job whose adapter went away fails
    #: with a reason instead of running on the base model while its history says otherwise.
    adapter_version = models.PositiveIntegerField(null=True, blank=True)
    #: Milliseconds from submission to the first generated token of any variant (None: none yet).
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    few_shot_variant_ids = models.JSONField(default=list, blank=True)
    #: The knowledge chunks retrieved into the prompt, as the fact check reads them:
    #: ``[{"id": chunk id, "source": title, "text": chunk text, "score": float}]`` (empty: none retrieved).
    grounding = models.JSONField(default=list, blank=True)

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
    #: What ``brand_fit`` is made of (``generation.outcomes.breakdown``): the voice's part, and once the
    #: project has enough concluded experiments the outcome component, its weight and how many experiments.
    brand_fit_breakdown = models.JSONField(default=dict, blank=True)
    moderation = models.JSONField(default=dict, blank=True)
    #: The claims of the model's text and what supports each (generation.factcheck); empty when withheld.
    fact_check = models.JSONField(default=dict, blank=True)
    # feedback
    rating = models.SmallIntegerField(null=True, blank=True)
    edited_text = models.TextField(blank=True)
    approved = models.BooleanField(default=False)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    #: What the variant measured as an experiment's winner (``record_outcome_lift``): the experiment,
    #: the lift over its baseline arm, conversions and exposures; empty until it wins one.
    outcome = models.JSONField(default=dict, blank=True)
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


class BulkBatch(Upload):
    """A CSV of inputs, one generation job per valid row (``generation.bulk``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="bulk_batches"
    )
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="bulk_batches")
    template_version = models.ForeignKey(TemplateVersion, on_delete=models.PROTECT, related_name="+")
    row_errors = models.JSONField(default=list, blank=True)  # [{"line": n, "errors": [...]}]
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta(Upload.Meta):
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
