"""Chunk and embed one source, as the queue's ``knowledge.embed_sources`` task does for each. No Celery here.

Safe to run twice and in any order: it embeds the text the source has when it starts, and stores the
chunks only if the source still has that text (a newer change has its own task queued), replacing its
old chunks in the same transaction.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from knowledge import ingest, vectors
from knowledge.models import Chunk, KnowledgeSource, SourceStatus
from workers import embeddings

logger = logging.getLogger(__name__)

#: Chunks per forward pass of MiniLM: 32 chunks of ~200 tokens took ~1.5 s on 2 CPU cores, ~150 MB.
EMBED_BATCH = 32


def count_tokens(text: str) -> int:
    """Word pieces of MiniLM's own tokenizer, without the [CLS]/[SEP] markers."""
    return len(embeddings.tokenizer()(text, add_special_tokens=False)["input_ids"])


def embed_texts(texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, embeddings.DIMENSIONS), dtype=np.float32)
    parts = [embeddings.embed(texts[i : i + EMBED_BATCH]).numpy() for i in range(0, len(texts), EMBED_BATCH)]
    return np.concatenate(parts).astype(np.float32)


def embed_source(source_id: Any) -> KnowledgeSource | None:
    """Chunk and embed the source's current text; None when there is nothing (left) to do."""
    source = KnowledgeSource.objects.filter(pk=source_id).first()
    if source is None:
        return None  # deleted before its turn
    if source.status == SourceStatus.EMBEDDED and source.embedded_hash == source.content_hash:
        return None  # a redelivery, or a change that came back to the embedded text
    text_hash = source.content_hash
    try:
        chunks = ingest.chunk_text(source.text, count_tokens)
        vectors_ = embed_texts([_embedded_text(source, text) for text, _ in chunks])
    except Exception as exc:  # the model failing on this text: the source says so, the worker goes on
        logger.exception("embedding knowledge source %s failed", source_id)
        KnowledgeSource.objects.filter(pk=source_id, content_hash=text_hash).update(
            status=SourceStatus.FAILED, failure_reason=f"{type(exc).__name__}: {exc}"[:1000], updated_at=timezone.now()
        )
        return None
    with transaction.atomic():
        locked = KnowledgeSource.objects.select_for_update().filter(pk=source_id, content_hash=text_hash).first()
        if locked is None:
            return None  # deleted or changed meanwhile: the change's own task embeds it
        use_pgvector = vectors.enabled()
        if use_pgvector:
            vectors.ensure_table()
            vectors.delete_for_sources([locked.pk])
        locked.chunks.all().delete()
        rows = Chunk.objects.bulk_create(
            Chunk(
                source=locked,
                organization_id=locked.organization_id,
                project_id=locked.project_id,
                position=position,
                text=text,
                token_count=tokens,
                embedding=vector.tobytes(),
                **metadata_of(locked),
            )
            for position, ((text, tokens), vector) in enumerate(zip(chunks, vectors_, strict=True))
        )
        if use_pgvector:
            vectors.store((row.pk, row.project_id, vector) for row, vector in zip(rows, vectors_, strict=True))
        locked.status, locked.failure_reason = SourceStatus.EMBEDDED, ""
        locked.embedded_hash, locked.embedded_at = text_hash, timezone.now()
        locked.save(update_fields=["status", "failure_reason", "embedded_hash", "embedded_at"])
    return locked


def _embedded_text(source: KnowledgeSource, text: str) -> str:
    """What is embedded for a chunk: its source's title first, so "waterproof to 10,000 mm" in a product's
    chunk is found by a brief that names the product."""
    return f"{source.title}\n{text}" if source.title and source.title not in text[:200] else text


def metadata_of(source: KnowledgeSource) -> dict[str, Any]:
    """The source's metadata as its chunks keep it for filtering."""
    return {
        "kind": source.kind,
        "sku": source.sku,
        "language": source.language,
        "tags": list(source.tags),
        "valid_from": source.valid_from,
        "valid_until": source.valid_until,
    }
