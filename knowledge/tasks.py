"""Thin Celery tasks: take ids, call ``knowledge.embedding``. Sent by name from ``knowledge.dispatch``."""

from __future__ import annotations

from celery import shared_task

from knowledge import embedding


@shared_task(name="knowledge.embed_sources", queue="default")
def embed_sources(source_ids: list[str]) -> int:
    """Chunk and embed each source; how many were embedded (0 on a redelivery: each is done once)."""
    return sum(1 for source_id in source_ids if embedding.embed_source(source_id) is not None)
