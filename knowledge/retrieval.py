"""The chunks of a project's knowledge that a brief needs: filters, then vectors, then keywords.

1. **Filters** (SQL): the project's chunks whose metadata the job allows (kind, SKU, language, tags) and
   that are valid today. A SKU filter keeps chunks tied to no product (documents, brand examples): it is
   there to keep *other* products' facts out of the copy.
2. **Vector similarity**: the brief's MiniLM embedding against the chunks' (cosine; embeddings are
   normalised). With pgvector, in SQL (``knowledge.vectors``); otherwise numpy over a float32 matrix
   of the project's chunks, kept per process until the project's chunks change.
3. **BM25 rerank** (``bm25s``) of the nearest ``VECTOR_CANDIDATES``: exact words (a SKU, "Gore-Tex", a
   size) count, which embeddings blur.

Then the best chunks that fit the token budget. A process without torch (a worker streaming from an
OpenAI-compatible server) ranks the filtered chunks by BM25 alone.
"""

from __future__ import annotations

import datetime
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import bm25s
import numpy as np
from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from knowledge import vectors
from knowledge.models import Chunk, KnowledgeSource, RetrievalScope
from projects.models import Project
from workers import embeddings

#: Nearest chunks by vector that the BM25 rerank sees: ~50 chunks of ~200 tokens rerank in ~2 ms.
VECTOR_CANDIDATES = 50
#: Chunks ranked by BM25 alone when the process cannot embed (newest first, as a bound on the work).
KEYWORD_ONLY_CANDIDATES = 2000
#: Weight of the keyword score (BM25 scaled to 0..1 by the best candidate's) against the cosine similarity.
KEYWORD_WEIGHT = 0.3
#: Below this combined score a chunk is not about the brief: better no fact than an unrelated one.
MIN_SCORE = 0.2


@dataclass(frozen=True)
class RetrievedChunk:
    id: str
    source_id: str
    source: str
    text: str
    score: float
    similarity: float
    keyword: float
    tokens: int
    kind: str
    sku: str

    def grounding(self, label: str) -> dict[str, Any]:
        """As ``GenerationJob.grounding`` keeps it, with the label the prompt gave it (``K1``)."""
        return {"id": self.id, "source": self.source, "text": self.text, "score": round(self.score, 4), "label": label}


def filters_for(reference: Any) -> dict[str, Any]:
    """The filters kept for a piece of work (``knowledge.services.remember_filters``); empty when none."""
    scope = RetrievalScope.objects.filter(reference=reference).values_list("filters", flat=True).first()
    return dict(scope or {})


def candidates(
    project: Project, filters: dict[str, Any] | None = None, on: datetime.date | None = None
) -> QuerySet[Chunk]:
    filters = filters or {}
    on = on or timezone.localdate()
    queryset = Chunk.objects.filter(project=project).filter(
        Q(valid_from__isnull=True) | Q(valid_from__lte=on), Q(valid_until__isnull=True) | Q(valid_until__gte=on)
    )
    if filters.get("kind"):
        queryset = queryset.filter(kind__in=filters["kind"])
    if filters.get("sku"):
        queryset = queryset.filter(Q(sku__in=filters["sku"]) | Q(sku=""))
    if filters.get("language"):
        queryset = queryset.filter(Q(language=filters["language"]) | Q(language=""))
    if filters.get("tags"):
        any_tag = Q()
        for tag in filters["tags"]:
            any_tag |= Q(tags__contains=[tag])
        queryset = queryset.filter(any_tag)
    return queryset


def retrieve(
    project: Project,
    query: str,
    *,
    filters: dict[str, Any] | None = None,
    k: int | None = None,
    token_budget: int | None = None,
    on: datetime.date | None = None,
) -> list[RetrievedChunk]:
    """The best chunks of the project for ``query``, at most ``k``, their tokens within ``token_budget``."""
    k = settings.KNOWLEDGE_TOP_K if k is None else k
    budget = settings.KNOWLEDGE_TOKEN_BUDGET if token_budget is None else token_budget
    if k <= 0 or budget <= 0 or not query.strip():
        return []
    filters, on = filters or {}, on or timezone.localdate()
    if not Chunk.objects.filter(project=project).exists():
        return []  # most projects have no knowledge: no need to load the embedding model for them
    if embeddings.available():
        query_vector = embeddings.embed([query])[0].numpy().astype(np.float32)
        nearest = _nearest(project, filters, on, query_vector, VECTOR_CANDIDATES)
    else:
        newest = candidates(project, filters, on).order_by("-created_at")
        ids = newest.values_list("id", flat=True)[:KEYWORD_ONLY_CANDIDATES]
        nearest = [(str(pk), 0.0) for pk in ids]
    if not nearest:
        return []
    rows = {
        str(row["id"]): row
        for row in Chunk.objects.filter(pk__in=[pk for pk, _ in nearest]).values(
            "id", "source_id", "source__title", "text", "token_count", "kind", "sku"
        )
    }
    nearest = [(pk, sim) for pk, sim in nearest if pk in rows]
    keyword = _bm25(query, [rows[pk]["text"] for pk, _ in nearest])
    ranked = sorted(
        (
            _chunk(rows[pk], similarity, kw, (1 - KEYWORD_WEIGHT) * similarity + KEYWORD_WEIGHT * kw)
            for (pk, similarity), kw in zip(nearest, keyword, strict=True)
        ),
        key=lambda c: (-c.score, c.id),
    )
    chosen: list[RetrievedChunk] = []
    spent = 0
    for chunk in ranked:
        if len(chosen) == k or chunk.score < MIN_SCORE:
            break
        if spent + chunk.tokens > budget:
            continue  # a shorter one further down may still fit
        chosen.append(chunk)
        spent += chunk.tokens
    return chosen


def _chunk(row: dict[str, Any], similarity: float, keyword: float, score: float) -> RetrievedChunk:
    return RetrievedChunk(
        id=str(row["id"]), source_id=str(row["source_id"]), source=row["source__title"], text=row["text"],
        score=score, similarity=similarity, keyword=keyword, tokens=row["token_count"], kind=row["kind"],
        sku=row["sku"],
    )


def _bm25(query: str, texts: list[str]) -> list[float]:
    """BM25 of each text for the query, scaled so the best is 1 (all 0 when no word matches)."""
    if not texts:
        return []
    corpus = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
    query_tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
    if not query_tokens:
        return [0.0] * len(texts)
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)
    scores = index.get_scores(query_tokens)
    best = float(scores.max()) if len(scores) else 0.0
    return [float(s) / best if best > 0 else 0.0 for s in scores]


def _nearest(
    project: Project, filters: dict[str, Any], on: datetime.date, query: np.ndarray, limit: int
) -> list[tuple[str, float]]:
    if vectors.enabled():
        vectors.ensure_table()
        # No ordering: Chunk's default one would join and sort every candidate's source for nothing.
        sql, params = candidates(project, filters, on).order_by().values("id").query.sql_with_params()
        return vectors.nearest(sql, params, project.pk, query, limit)
    return _nearest_numpy(project, filters, on, query, limit)


# --- numpy: the project's chunks, kept per process ----------------------------------------------------

#: Projects whose chunks (embeddings and filter metadata) a process keeps: 100k chunks are ~150 MB of
#: float32, a typical project's few hundred well under a megabyte. Reading them from Postgres is what
#: a search would otherwise spend its time on (~1 s at 100k chunks; bench/retrieval.py).
MATRIX_CACHE_SIZE = 8


@dataclass(frozen=True)
class _ProjectChunks:
    stamp: tuple[Any, ...]
    ids: list[str]
    matrix: np.ndarray
    kinds: np.ndarray
    skus: np.ndarray
    languages: np.ndarray
    tags: list[frozenset[str]]
    valid_from: np.ndarray  # datetime64[D], NaT where open
    valid_until: np.ndarray

    def allowed(self, filters: dict[str, Any], on: datetime.date) -> np.ndarray:
        """The rows ``candidates`` would select, as a mask: the same rules, kept equal by the tests that run
        every filter on both paths (tests/knowledge/test_retrieval.py)."""
        day = np.datetime64(on, "D")
        mask = (np.isnat(self.valid_from) | (self.valid_from <= day)) & (
            np.isnat(self.valid_until) | (self.valid_until >= day)
        )
        if filters.get("kind"):
            mask &= np.isin(self.kinds, filters["kind"])
        if filters.get("sku"):
            mask &= np.isin(self.skus, filters["sku"]) | (self.skus == "")
        if filters.get("language"):
            mask &= (self.languages == filters["language"]) | (self.languages == "")
        if filters.get("tags"):
            wanted = frozenset(filters["tags"])
            mask &= np.fromiter((bool(tags & wanted) for tags in self.tags), dtype=bool, count=len(self.tags))
        return mask


_chunks_lock = threading.Lock()
_matrices: OrderedDict[Any, _ProjectChunks] = OrderedDict()


def _stamp(project: Project) -> tuple[Any, ...]:
    """Changes whenever the project's chunks do: every change goes through a source, which is added,
    deleted, or saved with a new ``updated_at`` (text, metadata) or ``embedded_at`` (new chunks)."""
    stamp = KnowledgeSource.objects.filter(project=project).aggregate(
        n=Count("id"), updated=Max("updated_at"), embedded=Max("embedded_at")
    )
    return tuple(stamp.values())


def _project_chunks(project: Project) -> _ProjectChunks:
    stamp = _stamp(project)
    with _chunks_lock:
        cached = _matrices.get(project.pk)
        if cached is not None and cached.stamp == stamp:
            _matrices.move_to_end(project.pk)
            return cached
    rows = list(
        Chunk.objects.filter(project=project).values_list(
            "id", "embedding", "kind", "sku", "language", "tags", "valid_from", "valid_until"
        )
    )
    matrix = np.frombuffer(b"".join(bytes(row[1]) for row in rows), dtype=np.float32)
    loaded = _ProjectChunks(
        stamp=stamp,
        ids=[str(row[0]) for row in rows],
        matrix=matrix.reshape(len(rows), embeddings.DIMENSIONS),
        kinds=np.array([row[2] for row in rows], dtype=object),
        skus=np.array([row[3] for row in rows], dtype=object),
        languages=np.array([row[4] for row in rows], dtype=object),
        tags=[frozenset(row[5] or ()) for row in rows],
        valid_from=np.array([row[6] or "NaT" for row in rows], dtype="datetime64[D]"),
        valid_until=np.array([row[7] or "NaT" for row in rows], dtype="datetime64[D]"),
    )
    with _chunks_lock:
        _matrices[project.pk] = loaded
        while len(_matrices) > MATRIX_CACHE_SIZE:
            _matrices.popitem(last=False)
    return loaded


def _nearest_numpy(
    project: Project, filters: dict[str, Any], on: datetime.date, query: np.ndarray, limit: int
) -> list[tuple[str, float]]:
    chunks = _project_chunks(project)
    rows = np.flatnonzero(chunks.allowed(filters, on))
    if not len(rows):
        return []
    similarities = chunks.matrix[rows] @ query
    top = np.argpartition(-similarities, limit)[:limit] if len(rows) > limit else np.arange(len(rows))
    top = top[np.argsort(-similarities[top], kind="stable")]
    return [(chunks.ids[rows[i]], float(similarities[i])) for i in top]
