"""A project's knowledge: sources (documents, catalog products, brand voice examples) cut into embedded chunks.

A chunk copies its source's metadata (kind, SKU, language, tags, validity), so retrieval filters chunks
without a join. A chunk's embedding is kept as float32 bytes here (the vector search every Postgres can
run, with numpy); where the database has the ``vector`` extension it is also kept in a pgvector column
of its own table (``knowledge.vectors``), which the migrations cannot declare because the extension
is optional.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from knowledge import limits


class SourceKind(models.TextChoices):
    DOCUMENT = "document", _("Document")
    PRODUCT = "product", _("Product (catalog)")
    BRAND_EXAMPLE = "brand_example", _("Brand voice example")


class SourceStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be embedded")
    EMBEDDED = "embedded", _("Embedded")
    FAILED = "failed", _("Failed")


class KnowledgeSource(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="knowledge_sources"
    )
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="knowledge_sources")
    kind = models.CharField(max_length=16, choices=SourceKind.choices, default=SourceKind.DOCUMENT)
    title = models.CharField(max_length=limits.MAX_TITLE_LENGTH)
    #: What a synced source stands for in its origin (``product:<SKU>``, ``brand_example:<hash>``), so a
    #: sync updates it instead of adding another; blank for uploads.
    external_key = models.CharField(max_length=300, blank=True)
    filename = models.CharField(max_length=limits.MAX_FILENAME_LENGTH, blank=True)
    mime = models.CharField(max_length=100, blank=True)
    #: The uploaded file as it came (None for text given as text), for the operator and a later re-extraction.
    original = models.BinaryField(null=True, blank=True, editable=False)
    #: The plain text extracted from the file (or given), which is chunked.
    text = models.TextField()
    sku = models.CharField("SKU", max_length=limits.MAX_SKU_LENGTH, blank=True)
    language = models.CharField(max_length=limits.MAX_LANGUAGE_LENGTH, blank=True)
    tags = models.JSONField(default=list, blank=True)
    valid_from = models.DateField(null=True, blank=True)
    valid_until = models.DateField(null=True, blank=True)
    #: SHA-256 of the text; ``embedded_hash`` is the one the current chunks were made from.
    content_hash = models.CharField(max_length=64)
    embedded_hash = models.CharField(max_length=64, blank=True, editable=False)
    status = models.CharField(
        max_length=16, choices=SourceStatus.choices, default=SourceStatus.PENDING, db_index=True
    )
    failure_reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    embedded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_key"],
                condition=~Q(external_key=""),
                name="knowledge_source_external_key_unique",
            ),
        ]
        indexes = [models.Index(fields=["project", "kind"])]

    def __str__(self) -> str:
        return self.title


class Chunk(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source = models.ForeignKey(KnowledgeSource, on_delete=models.CASCADE, related_name="chunks")
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    #: all-MiniLM-L6-v2, L2-normalised, 384 float32 values.
    embedding = models.BinaryField()
    # The source's metadata, copied for filtering (knowledge.retrieval).
    kind = models.CharField(max_length=16, choices=SourceKind.choices)
    sku = models.CharField(max_length=limits.MAX_SKU_LENGTH, blank=True)
    language = models.CharField(max_length=limits.MAX_LANGUAGE_LENGTH, blank=True)
    tags = models.JSONField(default=list, blank=True)
    valid_from = models.DateField(null=True, blank=True)
    valid_until = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["source", "position"]
        constraints = [models.UniqueConstraint(fields=["source", "position"], name="knowledge_chunk_position_unique")]
        indexes = [
            models.Index(fields=["project", "kind"]),
            models.Index(fields=["project", "sku"]),
            # What the filters read, so pgvector's search finds a project's allowed chunk ids from the index
            # alone: without it every search read the whole chunk table (its texts and embeddings), 200 MB
            # at 100k chunks (bench/retrieval.py).
            models.Index(
                fields=["project"], include=["id", "valid_from", "valid_until", "kind", "sku", "language"],
                name="knowledge_chunk_filters",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_id} #{self.position}"


class RetrievalScope(models.Model):
    """The knowledge filters a caller gave for one piece of work (a generation job), by reference.

    Knowledge does not know generation jobs (it sits below them), as billing's ledger does not: the job's
    id is the reference. Filters are kept apart from the job so that the job's table needs no column for an
    optional feature; at most one row per reference.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+")
    reference = models.UUIDField(unique=True)
    filters = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"Knowledge filters of {self.reference}"
