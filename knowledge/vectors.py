"""pgvector, where the operator's Postgres has it: chunk embeddings in a ``vector(384)`` column, searched in SQL.

Optional, so it is found at run time rather than declared: the ``vector`` extension is created by the first
migration when the server offers it (and the migration may), or by the operator later; its table here is
created on first use. Without it (``KNOWLEDGE_VECTOR_SEARCH=numpy``, or no extension), retrieval ranks
``Chunk.embedding`` bytes with numpy (``knowledge.retrieval``), which needs nothing of the database.

The table has no foreign key to ``knowledge_chunk``: Django's test flush truncates the tables it knows, and
Postgres refuses to truncate a table that an unknown one references. Rows are deleted with their chunks in
the same transaction (``delete_for_sources``), and every search joins ``knowledge_chunk``, so a row whose
chunk went another way (a project deleted by the ORM's cascade) is never found, and ``backfill`` removes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from knowledge.models import Chunk
from workers.embeddings import DIMENSIONS

logger = logging.getLogger(__name__)

TABLE = "knowledge_chunk_vector"  # named as such in the SQL below
_NEAREST = (
    "SELECT v.chunk_id, 1 - (v.embedding <=> %s::vector) AS similarity FROM knowledge_chunk_vector v "
    "WHERE v.project_id = %s AND v.chunk_id IN ({candidates}) ORDER BY v.embedding <=> %s::vector LIMIT %s"
)
MODES = ("auto", "numpy", "pgvector")


def extension_installed() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        return cursor.fetchone() is not None


def extension_available() -> bool:
    """Whether the server could create the extension (its files are installed)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        return cursor.fetchone() is not None


def enabled() -> bool:
    """Whether chunks are searched with pgvector: ``auto`` uses it when installed, ``numpy`` never does."""
    mode = settings.KNOWLEDGE_VECTOR_SEARCH
    if mode == "numpy":
        return False
    installed = extension_installed()
    if mode == "pgvector" and not installed:
        logger.warning("KNOWLEDGE_VECTOR_SEARCH=pgvector but the database has no 'vector' extension: using numpy")
    return installed


def ensure_table() -> None:
    """The vector table, created and filled from the stored embeddings the first time pgvector is used.

    Looked up every time (one catalog query) rather than remembered: DDL is transactional in Postgres, so
    a table created in a transaction that rolled back is gone again.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [TABLE])
        if cursor.fetchone()[0] is not None:
            return
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("
            "chunk_id uuid PRIMARY KEY, project_id uuid NOT NULL, "
            f"embedding vector({DIMENSIONS}) NOT NULL)"
        )
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_project ON {TABLE} (project_id)")
    backfill()


def literal(vector: Any) -> str:
    """pgvector's text form of a vector, ``[0.1,0.2,...]``; psycopg sends it as a parameter cast to ``vector``."""
    return "[" + ",".join(f"{float(v):.7g}" for v in np.asarray(vector, dtype=np.float32)) + "]"


def store(rows: Iterable[tuple[Any, Any, Any]]) -> None:
    """``(chunk_id, project_id, vector)`` rows, written or replaced."""
    rows = [(str(c), str(p), literal(v)) for c, p, v in rows]
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO knowledge_chunk_vector (chunk_id, project_id, embedding) VALUES (%s, %s, %s::vector) "
            "ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding, project_id = EXCLUDED.project_id",
            rows,
        )


def delete_for_sources(source_ids: Sequence[Any]) -> None:
    """Remove the vectors of these sources' chunks; call before the chunks go, in the same transaction."""
    if not source_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM knowledge_chunk_vector v USING knowledge_chunk c "
            "WHERE v.chunk_id = c.id AND c.source_id = ANY(%s)",
            [[str(s) for s in source_ids]],
        )


#: Chunks whose vectors one backfill statement writes: 1,000 x 384 floats is ~3 MB of SQL text.
BACKFILL_BATCH = 1000


def backfill() -> int:
    """Write the vectors of chunks that have none (and drop vectors whose chunk is gone); how many written."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM knowledge_chunk_vector v "
            "WHERE NOT EXISTS (SELECT 1 FROM knowledge_chunk c WHERE c.id = v.chunk_id)"
        )
        cursor.execute(
            "SELECT c.id FROM knowledge_chunk c LEFT JOIN knowledge_chunk_vector v ON v.chunk_id = c.id "
            "WHERE v.chunk_id IS NULL"
        )
        missing = [row[0] for row in cursor.fetchall()]
    for start in range(0, len(missing), BACKFILL_BATCH):
        batch = Chunk.objects.filter(pk__in=missing[start : start + BACKFILL_BATCH]).values_list(
            "id", "project_id", "embedding"
        )
        with transaction.atomic():
            store((c, p, np.frombuffer(bytes(e), dtype=np.float32)) for c, p, e in batch)
    return len(missing)


def nearest(
    candidates_sql: str, params: Sequence[Any], project_id: Any, query: Any, limit: int
) -> list[tuple[str, float]]:
    """``(chunk id, cosine similarity)`` of the ``limit`` candidates closest to ``query``, closest first.

    ``candidates_sql`` selects the ids of the chunks the filters allow (a Django queryset's SQL). Exact
    search (no approximate index): with filters applied first, an HNSW index would have to be
    over-fetched to keep its recall, and an exact scan of 100k chunks is already within a prompt's budget
    (bench/retrieval.py).
    """
    with connection.cursor() as cursor:
        # candidates_sql is the SQL Django compiled for a queryset, its values still parameters.
        cursor.execute(
            _NEAREST.format(candidates=candidates_sql),
            [literal(query), str(project_id), *params, literal(query), limit],
        )
        return [(str(chunk_id), float(similarity)) for chunk_id, similarity in cursor.fetchall()]
