"""What the recommendation worker does with a job: claim it, train, store, evaluate, bill. No Celery here.

Safe to run twice: a final job is skipped, and so is one whose lease a live worker holds
(``recommendations.lifecycle``, the lifecycle every job shares); a job whose lease expired
lost its worker and is run again from the start; its results replace any earlier partial
ones and the compute charge is written in the same transaction that marks the job
succeeded, keyed by the job, so it exists exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.jobs import with_db_retry
from generation.scoring import embed
from recommendations import engine, lifecycle, metering
from recommendations.models import (
    CatalogItem,
    Event,
    EventType,
    Recommendation,
    RecommendationJob,
    RecommendationJobStatus,
    SimilarItem,
    display_title,
)

logger = logging.getLogger(__name__)

#: Texts per embedding forward pass (all-MiniLM-L6-v2, titles of ~10 tokens: ~100 MB of activations).
#: The 3,175 Online Retail titles took 139 s on 2 busy CPU cores; embeddings are cached per item.
EMBED_BATCH = 256
#: Rows per INSERT of results; 5,000 recommendations are ~0.5 MB of parameters.
INSERT_BATCH = 5000
#: When purchased items are excluded but the model also learns from views, the model is asked for
#: this many more candidates per customer, and purchased ones are dropped from them.
EXTRA_CANDIDATES = 100


class TrainingError(Exception):
    """A job that cannot run on its data; the message is shown to the user as the failure reason."""


@dataclass
class Outcome:
    recommendations: list[Recommendation] = field(default_factory=list)
    similar: list[SimilarItem] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def claim(job_id: Any, worker: str | None = None) -> RecommendationJob | None:
    """Move a queued job (or one whose worker died) to running; None when there is nothing to do."""
    return lifecycle.jobs.claim(job_id, worker)


def run_job(job_id: Any) -> RecommendationJob | None:
    """Claim, compute and store one job; returns it in its final state, or None if there was nothing to do."""
    job = with_db_retry(claim, job_id)
    if job is None:
        return None
    started = time.monotonic()
    try:
        # Training has no loop of its own to renew the lease from: a side thread does.
        with lifecycle.jobs.keep_alive(job.pk):
            outcome = compute(job)
            return store(job, outcome, seconds=time.monotonic() - started)
    except TrainingError as exc:
        reason = str(exc)
    except SoftTimeLimitExceeded:
        reason = f"Stopped at the time limit ({settings.CELERY_TASK_TIME_LIMIT_S} s) before it finished."
    except Exception as exc:  # storing or billing too: whatever happens, the job ends with a reason
        logger.exception("recommendation job %s failed", job.pk)
        reason = f"Training failed: {type(exc).__name__}: {exc}"
    return with_db_retry(lifecycle.jobs.fail_unless_final, job.pk, reason)


# --- the work ------------------------------------------------------------------------------------


def load_interactions(job: RecommendationJob) -> tuple[engine.Interactions, dict[str, set[str]], dict[str, int]]:
    """The project's events as engine interactions, and per customer the items they bought."""
    rows = Event.objects.filter(project_id=job.project_id).values_list(
        "customer_id", "item_id", "type", "value", "occurred_at"
    )
    records = []
    purchased: dict[str, set[str]] = defaultdict(set)
    kinds: dict[str, int] = defaultdict(int)
    for customer_id, item_id, kind, value, occurred_at in rows.iterator(chunk_size=INSERT_BATCH):
        kinds[kind] += 1
        weight = engine.event_weight(kind, value)
        if weight <= 0:
            continue
        customer, item = str(customer_id), str(item_id)
        records.append((customer, item, weight, int(occurred_at.timestamp())))
        if kind == EventType.PURCHASE:
            purchased[customer].add(item)
    if not records:
        raise TrainingError(
            "The project has no events to learn from (purchases, carts, views or ratings above 3); import data first."
        )
    return engine.Interactions.from_records(records), purchased, kinds


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def item_text(item: CatalogItem) -> str:
    return ". ".join(part for part in (item.title or item.sku, item.description) if part)


def item_embeddings(job: RecommendationJob) -> dict[str, np.ndarray]:
    """Every catalog item's title/description embedding; only new or changed texts are computed."""
    fields = ("pk", "sku", "title", "description", "embedding", "embedding_text_hash")
    items = list(CatalogItem.objects.filter(project_id=job.project_id).only(*fields))
    stale = [item for item in items if item.embedding_text_hash != text_hash(item_text(item)) or not item.embedding]
    for start in range(0, len(stale), EMBED_BATCH):
        chunk = stale[start : start + EMBED_BATCH]
        vectors = embed([item_text(item) for item in chunk]).numpy().astype(np.float32)
        for item, vector in zip(chunk, vectors, strict=True):
            item.embedding = vector.tobytes()
            item.embedding_text_hash = text_hash(item_text(item))
        # A cache, not a result: kept even if the job fails later, so a retry need not embed again.
        CatalogItem.objects.bulk_update(chunk, ["embedding", "embedding_text_hash"])
    return {str(item.pk): np.frombuffer(bytes(item.embedding), dtype=np.float32) for item in items if item.embedding}


def compute(job: RecommendationJob) -> Outcome:
    clock = time.monotonic()
    interactions, purchased, kinds = load_interactions(job)
    timings = {"load_s": time.monotonic() - clock}
    clock = time.monotonic()
    embeddings = item_embeddings(job)
    timings["embed_s"] = time.monotonic() - clock
    titles = {
        str(pk): display_title(title or sku)
        for pk, title, sku in CatalogItem.objects.filter(project_id=job.project_id).values_list("pk", "title", "sku")
    }

    # The model is chosen on the project's earlier windows, measured on the held-out one, then retrained
    # on everything: the recommendations stored come from all the data.
    clock = time.monotonic()
    params, metrics = _choose(job, interactions, embeddings)
    timings["select_evaluate_s"] = time.monotonic() - clock

    clock = time.monotonic()
    model = engine.train(interactions, item_embeddings=embeddings or None, seed=job.seed, **params)
    timings["train_s"] = time.monotonic() - clock

    clock = time.monotonic()
    outcome = Outcome(metrics=metrics)
    outcome.recommendations = _top_k(job, model, purchased, titles, only_purchases=set(kinds) <= {"purchase", "return"})
    timings["recommend_s"] = time.monotonic() - clock
    clock = time.monotonic()
    outcome.similar = _similar(job, model, interactions)
    timings["similar_s"] = time.monotonic() - clock

    outcome.stats = {
        "events": len(interactions),
        "events_by_type": dict(kinds),
        "customers": interactions.n_users,
        "items": interactions.n_items,
        "catalog_items": len(titles),
        "embedded_items": len(embeddings),
        "customers_with_recommendations": len({r.customer_id for r in outcome.recommendations}),
        "timings": {name: round(seconds, 3) for name, seconds in timings.items()},
    }
    return outcome


def _choose(
    job: RecommendationJob, interactions: engine.Interactions, embeddings: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameters of the chosen model, metrics with the selection report); with no budget, the default
    blend, still measured against popularity and ALS."""
    budget = float(settings.RECOMMENDATION_SELECTION_BUDGET_S)
    return engine.choose_and_evaluate(
        interactions,
        holdout_days=job.holdout_days,
        k=job.k,
        new_items_only=job.exclude_purchased,
        item_embeddings=embeddings or None,
        seed=job.seed,
        budget_s=budget,
        folds=engine.FOLDS if budget > 0 else 0,
    )


def _top_k(
    job: RecommendationJob, model: Any, purchased: dict[str, set[str]], titles: dict[str, str], *, only_purchases: bool
) -> list[Recommendation]:
    """Each training customer's top K. "Exclude purchased" is the engine's "exclude seen" when every
    event is a purchase; otherwise viewed items stay candidates and bought ones are filtered here."""
    exact = not job.exclude_purchased or only_purchases
    extra = 0 if exact else min(max((len(items) for items in purchased.values()), default=0), EXTRA_CANDIDATES)
    rows = []
    for customer_id, recommendations in model.recommend_all(
        job.k + extra, exclude_seen=job.exclude_purchased and only_purchases, item_titles=titles
    ):
        bought = purchased.get(customer_id, set()) if job.exclude_purchased else set()
        kept = [r for r in recommendations if r.item_id not in bought][: job.k]
        rows.extend(
            Recommendation(
                job=job, customer_id=customer_id, item_id=r.item_id, rank=rank, score=r.score, reason=r.reason[:300]
            )
            for rank, r in enumerate(kept, start=1)
        )
    return rows


def _similar(job: RecommendationJob, model: Any, interactions: Any) -> list[SimilarItem]:
    """Similar items for the whole catalog, scored in batches (one call per item was ~5 ms each)."""
    rows = []
    for item_id, similar in model.similar_all(job.k):
        rows.extend(
            SimilarItem(job=job, item_id=item_id, similar_id=other, rank=rank, score=score)
            for rank, (other, score) in enumerate(similar, start=1)
        )
    return rows


def store(job: RecommendationJob, outcome: Outcome, *, seconds: float) -> RecommendationJob:
    """Results, metrics, the final state and the compute charge: one transaction, so all or nothing."""
    with transaction.atomic():
        locked = RecommendationJob.objects.select_for_update().select_related("organization", "project").get(pk=job.pk)
        if locked.is_final:
            return locked  # another attempt finished first
        Recommendation.objects.filter(job=locked).delete()
        SimilarItem.objects.filter(job=locked).delete()
        Recommendation.objects.bulk_create(outcome.recommendations, batch_size=INSERT_BATCH)
        SimilarItem.objects.bulk_create(outcome.similar, batch_size=INSERT_BATCH)
        locked.compute_seconds = Decimal(str(round(seconds, 3)))
        locked.metrics = outcome.metrics
        locked.stats = outcome.stats
        locked.status = RecommendationJobStatus.SUCCEEDED
        locked.failure_reason = ""
        locked.finished_at = timezone.now()
        locked.lease_expires_at = None
        locked.save(
            update_fields=[
                "compute_seconds", "metrics", "stats", "status", "failure_reason", "finished_at", "lease_expires_at"
            ]
        )
        metering.charge_job(locked, events=outcome.stats.get("events", 0), seconds=seconds)
    return locked


def reconcile(stale_after: timedelta | None = None) -> list[str]:
    """Re-enqueue jobs whose worker vanished (expired lease) or that sat queued without a task
    (``core.jobs.Lifecycle.reconcile``); returns the ids sent. A job that lost its worker
    RECOMMENDATION_MAX_ATTEMPTS times is failed with the reason when it is claimed again."""
    return lifecycle.jobs.reconcile(stale_after)
