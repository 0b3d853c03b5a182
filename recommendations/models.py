"""Catalog, customers and their events per project; recommendation jobs and their results; campaigns.

Every row belongs to a project, and so to an organization: tenant-owned rows carry
both foreign keys (the organization one is what every query filters on), and the
results of a job reach their organization through the job.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.models import LeasedJob, Upload
from experiments import limits as experiment_limits
from recommendations import limits


class CatalogItem(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="catalog_items"
    )
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="catalog_items")
    sku = models.CharField("SKU", max_length=limits.MAX_SKU_LENGTH)
    title = models.CharField(max_length=limits.MAX_TITLE_LENGTH, blank=True)
    description = models.TextField(blank=True, max_length=limits.MAX_DESCRIPTION_LENGTH)
    price = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    # The item's text embedding (float32 bytes) and a hash of the text it was computed from, so a
    # recommendation job embeds only items that are new or whose title/description changed.
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_text_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sku"]
        constraints = [models.UniqueConstraint(fields=["project", "sku"], name="catalog_item_sku_unique_in_project")]

    def __str__(self) -> str:
        return f"{self.sku} {self.title}".strip()

    @property
    def display_title(self) -> str:
        """The title as copy should show it: catalogs exported in capitals read better in title case."""
        return display_title(self.title or self.sku)


def display_title(title: str) -> str:
    """Catalog exports write "WHITE METAL LANTERN" and "LUNCH BAG BLACK SKULL.": title case, no stray period."""
    title = title.strip().rstrip(".,; ")
    return title.title() if title.isupper() else title


class Customer(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE, related_name="customers")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="customers")
    external_id = models.CharField(
        max_length=limits.MAX_EXTERNAL_ID_LENGTH, help_text="The customer's id in the shop's own system."
    )
    attributes = models.JSONField(default=dict, blank=True, help_text='e.g. {"country": "France", "name": "Ada"}')
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="customer_external_id_unique_in_project")
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def name(self) -> str:
        return str(self.attributes.get("name") or "")

    @property
    def country(self) -> str:
        return str(self.attributes.get("country") or "")


class EventType(models.TextChoices):
    VIEW = "view", _("View")
    CART = "cart", _("Added to cart")
    PURCHASE = "purchase", _("Purchase")
    RATING = "rating", _("Rating")
    RETURN = "return", _("Return (canceled purchase)")


class Event(models.Model):
    """One thing a customer did with an item. ``event_id`` makes ingest idempotent: unique per project."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="events")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="events")
    item = models.ForeignKey(CatalogItem, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=16, choices=EventType.choices, default=EventType.PURCHASE)
    value = models.FloatField(default=1.0, help_text="Quantity for purchases and returns, the score for ratings.")
    occurred_at = models.DateTimeField(db_index=True)
    event_id = models.CharField(max_length=limits.MAX_EVENT_ID_LENGTH, blank=True)
    source = models.ForeignKey(
        "recommendations.DataImport", null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "event_id"], condition=~Q(event_id=""), name="event_id_unique_in_project"
            )
        ]
        indexes = [
            models.Index(fields=["project", "occurred_at"]),
            models.Index(fields=["customer", "-occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.item_id} by {self.customer_id}"


class RecommendationSettings(models.Model):
    """A project's recommendation preferences; missing means the defaults."""

    project = models.OneToOneField(
        "projects.Project", primary_key=True, on_delete=models.CASCADE, related_name="recommendation_settings"
    )
    exclude_purchased = models.BooleanField(
        default=True, help_text="Never recommend an item the customer already bought."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "recommendation settings"

    def __str__(self) -> str:
        return f"Recommendation settings of {self.project}"


class DataImport(Upload):
    """One uploaded CSV file and its row report (``report``, see ``recommendations.importing``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="data_imports")
    size_bytes = models.PositiveBigIntegerField(default=0)
    mapping = models.JSONField(default=dict, blank=True)
    events_created = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    duration_s = models.FloatField(default=0.0)
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta(Upload.Meta):
        pass

    def __str__(self) -> str:
        return f"Import {self.filename or self.pk}"

    @property
    def outcomes(self) -> dict[str, int]:
        return dict(self.report.get("outcomes", {}))


class RecommendationJobStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


FINAL_JOB_STATUSES = (RecommendationJobStatus.SUCCEEDED, RecommendationJobStatus.FAILED)


class RecommendationJob(LeasedJob):
    """Training a project's model from its events, storing top-K per customer and similar items, and
    evaluating it against a popularity baseline on the most recent ``holdout_days``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="recommendation_jobs"
    )
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="recommendation_jobs")
    # parameters
    k = models.PositiveSmallIntegerField(default=10)
    holdout_days = models.PositiveSmallIntegerField(default=28)
    exclude_purchased = models.BooleanField(default=True)
    seed = models.BigIntegerField(default=0)
    # who asked
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # lifecycle (and core.models.LeasedJob's fields: attempts, worker, lease, times, failure reason)
    status = models.CharField(
        max_length=16, choices=RecommendationJobStatus.choices, default=RecommendationJobStatus.QUEUED, db_index=True
    )
    # results
    compute_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)
    stats = models.JSONField(default=dict, blank=True, help_text="Events, customers and items trained on; timings.")
    metrics = models.JSONField(
        default=dict, blank=True, help_text='{"model": {...}, "popularity": {...}, ...} from the time-split evaluation.'
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "status", "-finished_at"])]

    def __str__(self) -> str:
        return f"Recommendation job {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_JOB_STATUSES

    @property
    def ndcg_ratio(self) -> float | None:
        """The model's NDCG@K over the popularity baseline's, when both were measured."""
        model = (self.metrics.get("model") or {}).get("ndcg")
        baseline = (self.metrics.get("popularity") or {}).get("ndcg")
        if model is None or not baseline:
            return None
        return float(model) / float(baseline)


class Recommendation(models.Model):
    """One of a customer's top-K items from one job; rank 1 is the best."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(RecommendationJob, on_delete=models.CASCADE, related_name="recommendations")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="recommendations")
    item = models.ForeignKey(CatalogItem, on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveSmallIntegerField()
    score = models.FloatField()
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["job", "customer", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["job", "customer", "rank"], name="recommendation_rank_unique"),
        ]

    def __str__(self) -> str:
        return f"#{self.rank} for {self.customer_id}"


class SimilarItem(models.Model):
    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(RecommendationJob, on_delete=models.CASCADE, related_name="similar_items")
    item = models.ForeignKey(CatalogItem, on_delete=models.CASCADE, related_name="similar_items")
    similar = models.ForeignKey(CatalogItem, on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveSmallIntegerField()
    score = models.FloatField()

    class Meta:
        ordering = ["job", "item", "rank"]
        constraints = [models.UniqueConstraint(fields=["job", "item", "rank"], name="similar_item_rank_unique")]

    def __str__(self) -> str:
        return f"#{self.rank} like {self.item_id}"


class Campaign(models.Model):
    """Personalized copy: one generation job per customer of a segment, about their recommended items."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE, related_name="campaigns")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=limits.MAX_CAMPAIGN_NAME_LENGTH)
    # RESTRICT, not PROTECT: the version and the job stay while a campaign needs them, yet deleting the
    # project or organization (which deletes the campaign too) is allowed.
    template_version = models.ForeignKey("generation.TemplateVersion", on_delete=models.RESTRICT, related_name="+")
    recommendation_job = models.ForeignKey(RecommendationJob, on_delete=models.RESTRICT, related_name="campaigns")
    segment = models.JSONField(default=dict, blank=True)
    items_per_customer = models.PositiveSmallIntegerField(default=3)
    extra_inputs = models.JSONField(default=dict, blank=True, help_text="Template inputs shared by every customer.")
    params = models.JSONField(default=dict, blank=True, help_text="Generation parameters of every job.")
    skipped = models.JSONField(default=list, blank=True, help_text="Customers of the segment that got no job, and why.")
    # SET_NULL: each recipient keeps its arm's label and text, so deleting a stopped experiment leaves
    # the campaign's record of what every customer was sent.
    experiment = models.ForeignKey(
        "experiments.Experiment", null=True, blank=True, on_delete=models.SET_NULL, related_name="campaigns",
        help_text="Run as this experiment: each customer's copy is the text of the arm they are assigned.",
    )
    landing_url = models.URLField(
        max_length=experiment_limits.MAX_URL_LENGTH, blank=True,
        help_text="Where each customer's tracking link leads (an experiment campaign).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_experiment(self) -> bool:
        return self.experiment_id is not None


class CampaignRecipient(models.Model):
    """One customer of a campaign: the items their copy is about and the generation job writing it."""

    id = models.BigAutoField(primary_key=True)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    items = models.JSONField(default=list, help_text='[{"sku", "title", "score", "reason"}], best first.')
    job = models.OneToOneField(
        "generation.GenerationJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="campaign_recipient"
    )
    error = models.TextField(blank=True, help_text="Why no job was queued for this customer.")
    regenerations = models.PositiveSmallIntegerField(
        default=0, help_text="Times the copy was regenerated because it named none of the items."
    )
    regenerated_at = models.DateTimeField(null=True, blank=True)
    # An experiment campaign's customer: their exposure (one per customer and experiment, shared by
    # every campaign of the experiment that reaches them) and the arm it chose. The label and text are
    # kept here too: they are what the customer was sent, even once the experiment is deleted.
    assignment = models.ForeignKey(
        "experiments.Assignment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    arm_label = models.CharField(max_length=experiment_limits.MAX_LABEL_LENGTH, blank=True)
    arm_text = models.TextField(max_length=experiment_limits.MAX_ARM_TEXT_LENGTH, blank=True)

    class Meta:
        ordering = ["campaign", "customer__external_id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "customer"], name="campaign_recipient_once"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} in {self.campaign_id}"

    def item_titles(self) -> list[str]:
        return [str(item.get("title") or item.get("sku") or "") for item in self.items]

    def mentioned(self, text: str) -> list[str]:
        """The recommended items the text names (case-insensitive)."""
        lowered = text.casefold()
        return [title for title in self.item_titles() if title and title.casefold() in lowered]
