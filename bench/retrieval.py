"""Knowledge retrieval latency at 10k and 100k chunks, with numpy and (where the database has it) pgvector.

    python -m bench.retrieval [--chunks 10000,100000] [--queries 50]

One project is filled with ``chunks`` synthetic chunks: random unit float32 embeddings (what MiniLM's
are, statistically, for this purpose: running MiniLM over 100k texts would take an hour of CPU and
change nothing in a search's cost) and ~40-word texts for the BM25 rerank. Then ``queries`` briefs go
through ``knowledge.retrieval.retrieve`` as a job's prompt does: filters in SQL, vector search, BM25
rerank, token budget. The query's own MiniLM embedding is included (~10-20 ms on CPU) and also
reported apart (``embed``), as is the vector stage alone (``vector``, a random unit query).

numpy keeps each project's matrix per process (``retrieval._project_matrix``): ``cold`` is the first
search of a process, which reads the matrix from Postgres; p50/p95 are warm. pgvector runs an exact
``<=>`` scan in SQL. The project and its rows are deleted at the end. Lines::

    retrieval_p50_ms_10000_numpy: 21.3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from typing import Any

import srcroot  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from knowledge import retrieval, vectors  # noqa: E402
from knowledge.models import Chunk, KnowledgeSource  # noqa: E402
from organizations.models import Organization  # noqa: E402
from projects.models import Project  # noqa: E402
from workers import embeddings  # noqa: E402

#: Words the synthetic chunks and briefs are made of: enough overlap that BM25 has something to rank.
WORDS = (
    "jacket tent stove boots backpack sleeping bag lantern waterproof lightweight breathable insulated "
    "merino down synthetic zipper hood pocket seam membrane grams litre minutes warranty return shipping "
    "summer winter trail camping hiking climbing alpine coastal forest river night rain snow wind sun "
    "price discount sale size colour fit comfort durable recycled nylon polyester cotton wool"
).split()
BRIEFS = [
    "waterproof jacket for alpine hiking in rain",
    "lightweight tent for summer camping",
    "warm sleeping bag for winter nights",
    "durable boots for coastal trails",
    "stove that boils a litre in minutes",
]
#: Chunks per source and per bulk insert.
CHUNKS_PER_SOURCE = 10
INSERT_BATCH = 5000


def _text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, 40)).capitalize() + "."


def fill(project: Project, count: int, seed: int = 0) -> np.ndarray:
    """``count`` chunks with random unit embeddings; their vectors also in pgvector's table where it exists."""
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((count, embeddings.DIMENSIONS)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    sources = KnowledgeSource.objects.bulk_create(
        KnowledgeSource(organization=project.organization, project=project, title=f"Sheet {i}", text="synthetic",
                        content_hash=f"{i:064x}", status="embedded")
        for i in range((count + CHUNKS_PER_SOURCE - 1) // CHUNKS_PER_SOURCE)
    )
    use_pgvector = vectors.extension_installed()
    if use_pgvector:
        vectors.ensure_table()
    for start in range(0, count, INSERT_BATCH):
        rows = [
            Chunk(source=sources[i // CHUNKS_PER_SOURCE], organization_id=project.organization_id, project=project,
                  position=i % CHUNKS_PER_SOURCE, text=_text(rng), token_count=55, embedding=matrix[i].tobytes(),
                  kind="document", sku=f"SKU-{i % 100}")
            for i in range(start, min(start + INSERT_BATCH, count))
        ]
        with transaction.atomic():
            Chunk.objects.bulk_create(rows)
            if use_pgvector:
                _copy_vectors(rows, matrix[start : start + len(rows)])
    with connection.cursor() as cursor:  # as autovacuum leaves tables after an import: statistics, visibility map
        cursor.execute("VACUUM ANALYZE knowledge_chunk")
        if use_pgvector:
            cursor.execute(f"VACUUM ANALYZE {vectors.TABLE}")
    return matrix


def _copy_vectors(rows: list[Chunk], matrix: np.ndarray) -> None:
    """COPY rather than ``vectors.store``: 100k INSERTs of 384 floats as text would take minutes."""
    with connection.cursor() as cursor:
        raw: Any = cursor.cursor
        with raw.copy(f"COPY {vectors.TABLE} (chunk_id, project_id, embedding) FROM STDIN") as copy:
            for row, vector in zip(rows, matrix, strict=True):
                copy.write_row((str(row.pk), str(row.project_id), vectors.literal(vector)))


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def measure(project: Project, mode: str, queries: int) -> dict[str, float]:
    settings.KNOWLEDGE_VECTOR_SEARCH = mode
    retrieval._matrices.clear()  # a new process: the first numpy search reads the matrix
    today = timezone.localdate()
    rng = np.random.default_rng(1)
    result: dict[str, float] = {}
    started = time.perf_counter()
    retrieval.retrieve(project, BRIEFS[0])
    result["cold"] = (time.perf_counter() - started) * 1000
    full, vector = [], []
    for i in range(queries):
        started = time.perf_counter()
        chunks = retrieval.retrieve(project, BRIEFS[i % len(BRIEFS)])
        full.append(time.perf_counter() - started)
        assert chunks, "retrieval found nothing"
        query = rng.standard_normal(embeddings.DIMENSIONS).astype(np.float32)
        query /= np.linalg.norm(query)
        started = time.perf_counter()
        retrieval._nearest(project, {}, today, query, retrieval.VECTOR_CANDIDATES)
        vector.append(time.perf_counter() - started)
    result["p50"], result["p95"] = _ms(full)
    result["vector_p50"], result["vector_p95"] = _ms(vector)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", default="10000,100000", help="Comma-separated project sizes, in chunks.")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.chunks.split(",") if size.strip()]
    call_command("migrate", verbosity=0)
    # MIN_SCORE would drop random vectors' matches; the benchmark measures the work, not the relevance.
    retrieval.MIN_SCORE = -1.0
    embed_times = []
    for brief in BRIEFS * 4:
        started = time.perf_counter()
        embeddings.embed([brief])
        embed_times.append(time.perf_counter() - started)
    embed_p50, embed_p95 = _ms(embed_times[len(BRIEFS):])  # the first call loads the model
    print(f"retrieval_embed_query_p50_ms: {embed_p50:.1f}")
    print(f"retrieval_embed_query_p95_ms: {embed_p95:.1f}")
    modes = ["numpy"] + (["pgvector"] if vectors.extension_installed() else [])
    if "pgvector" not in modes:
        print("retrieval_pgvector: unavailable (no 'vector' extension in this database)")
    organization = Organization.objects.create(name="Benchmark", slug=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        for size in sizes:
            project = Project.objects.create(organization=organization, name=f"Bench {size}", slug=f"bench-{size}")
            started = time.perf_counter()
            fill(project, size)
            print(f"retrieval_fill_s_{size}: {time.perf_counter() - started:.1f}")
            for mode in modes:
                result = measure(project, mode, args.queries)
                print(f"retrieval_cold_ms_{size}_{mode}: {result['cold']:.1f}")
                print(f"retrieval_vector_p50_ms_{size}_{mode}: {result['vector_p50']:.1f}")
                print(f"retrieval_vector_p95_ms_{size}_{mode}: {result['vector_p95']:.1f}")
                print(f"retrieval_p50_ms_{size}_{mode}: {result['p50']:.1f}")
                print(f"retrieval_p95_ms_{size}_{mode}: {result['p95']:.1f}")
    finally:
        if vectors.extension_installed() and connection.introspection.table_names().count(vectors.TABLE):
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {vectors.TABLE} WHERE project_id IN (SELECT id FROM projects_project "  # noqa: S608
                    "WHERE organization_id = %s)",
                    [str(organization.pk)],
                )
        organization.delete()


if __name__ == "__main__":
    main()
