"""What a worker does with a job: claim it, generate, check, store. Plain functions, no Celery.

Safe to run twice: a final job is skipped, a job another live worker holds is
skipped, and variants are stored in one transaction guarded by a unique
(job, index, revision) constraint, so a redelivered task never duplicates
variants or usage.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, wait
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from generation import constraints as constraint_checks
from generation.models import BrandVoice, GenerationJob, JobStatus, Variant
from generation.moderation import moderate
from generation.prompts import approved_examples, build_messages
from generation.services import cancel_key
from workers.engine import FinishReason, GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)


def lease() -> timedelta:
    """A running job's lease; renewed while it runs, so a job whose worker died is visibly stale."""
    return timedelta(seconds=settings.GENERATION_LEASE_S)


_CANCEL_POLL_S = 0.5


def worker_name() -> str:
    return f"{socket.gethostname()}:{threading.get_native_id()}"


def claim(job_id: Any, worker: str) -> GenerationJob | None:
    """Move a queued (or abandoned) job to running for this worker; None if there is nothing to do."""
    now = timezone.now()
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_final:
            return None
        if job.status == JobStatus.RUNNING and job.lease_expires_at and job.lease_expires_at > now:
            return None  # a live worker has it
        if job.attempts >= settings.GENERATION_MAX_ATTEMPTS:
            _finalize_failed(job, f"Stopped after {job.attempts} attempts: the worker was lost each time.")
            return None
        if job.cancel_requested_at:
            job.status, job.finished_at = JobStatus.CANCELED, now
            job.failure_reason = job.failure_reason or "Canceled."
            job.save(update_fields=["status", "finished_at", "failure_reason"])
            _on_final(job)
            return None
        job.status = JobStatus.RUNNING
        job.attempts += 1
        job.worker = worker
        job.started_at = job.started_at or now
        job.deadline_at = now + timedelta(seconds=settings.GENERATION_JOB_DEADLINE_S)
        job.lease_expires_at = now + lease()
        job.save(update_fields=["status", "attempts", "worker", "started_at", "deadline_at", "lease_expires_at"])
        return job


def _finalize_failed(job: GenerationJob, reason: str) -> None:
    job.status, job.failure_reason, job.finished_at = JobStatus.FAILED, reason, timezone.now()
    job.lease_expires_at = None
    job.save(update_fields=["status", "failure_reason", "finished_at", "lease_expires_at"])
    _on_final(job)


def _on_final(job: GenerationJob) -> None:
    from generation.services import _job_finished

    transaction.on_commit(lambda: _job_finished(job.pk))


class StopCheck:
    """Polled by the engine between decode steps: cancellation (Redis) and the job's deadline."""

    def __init__(self, job_id: Any, deadline: float) -> None:
        self.key = cancel_key(job_id)
        self.deadline = deadline
        self._next_poll = 0.0
        self._canceled = False

    def __call__(self) -> str | None:
        now = time.time()
        if now >= self.deadline:
            return FinishReason.DEADLINE
        if not self._canceled and now >= self._next_poll:
            self._next_poll = now + _CANCEL_POLL_S
            self._canceled = bool(cache.get(self.key))
        return FinishReason.CANCELED if self._canceled else None


@dataclass(frozen=True)
class PromptContext:
    """What shapes a job's prompt and scores its outputs: loaded once per run, used by both."""

    voice: BrandVoice | None
    examples: list[Variant]

    @classmethod
    def load(cls, job: GenerationJob) -> PromptContext:
        return cls(
            voice=BrandVoice.objects.filter(project_id=job.project_id).first(),
            examples=approved_examples(job.project_id, job.template_version.template_id),
        )


def requests_for(
    job: GenerationJob, context: PromptContext, indexes: list[int], revision: int = 0
) -> tuple[list[GenerationRequest], list[int]]:
    if not job.few_shot_variant_ids:
        job.few_shot_variant_ids = [str(v.pk) for v in context.examples]
        GenerationJob.objects.filter(pk=job.pk).update(few_shot_variant_ids=job.few_shot_variant_ids)
    messages = build_messages(job.template_version, job.inputs, context.voice, context.examples)
    stop = StopCheck(job.pk, job.deadline_at.timestamp() if job.deadline_at else time.time() + 600)
    # Variant i of a job with seed s samples with seed s + i (+ a stride per revision): reproducible.
    seeds = [job.seed + i + revision * 1_000_003 for i in indexes]
    return [
        GenerationRequest(
            messages=messages,
            max_new_tokens=job.max_new_tokens,
            temperature=job.temperature,
            top_p=job.top_p,
            seed=seed,
            should_stop=stop,
        )
        for seed in seeds
    ], seeds


def run_job(job_id: Any, engine: Any = None) -> GenerationJob | None:
    """Claim, generate and store one job. Returns the final job, or None if there was nothing to do."""
    worker = worker_name()
    job = claim(job_id, worker)
    if job is None:
        return None
    job = GenerationJob.objects.select_related("template_version", "project").get(pk=job.pk)
    indexes = list(range(job.num_variants))
    context = PromptContext.load(job)
    try:
        requests, seeds = requests_for(job, context, indexes)
        results = _generate(job, requests, engine)
    except Exception as exc:
        logger.exception("generation job %s failed", job.pk)
        with transaction.atomic():
            locked = GenerationJob.objects.select_for_update().get(pk=job.pk)
            if not locked.is_final:
                _finalize_failed(locked, f"Generation failed: {type(exc).__name__}: {exc}"[:1000])
        return GenerationJob.objects.get(pk=job.pk)
    return store_results(job, context, indexes, seeds, results)


def _generate(job: GenerationJob, requests: list[GenerationRequest], engine: Any) -> list[GenerationResult]:
    from workers.engine import get_engine

    engine = engine or get_engine()
    futures = [engine.submit(r) for r in requests]
    pending = set(futures)
    while pending:
        # Renew the lease while waiting, so the reconciler never mistakes a busy job for a dead one.
        _done, pending = wait(pending, timeout=lease().total_seconds() / 3, return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in _done if f.done()):
            break
        GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            lease_expires_at=timezone.now() + lease()
        )
    return [f.result() for f in futures]


def evaluate(
    job: GenerationJob, context: PromptContext, texts: list[str]
) -> tuple[list[list[dict[str, Any]]], list[float], list[Any]]:
    from generation.scoring import brand_fit

    approved = [v.final_text for v in context.examples]
    reports = [constraint_checks.check(t, job.template_version.constraints, job.inputs) for t in texts]
    fallback = " ".join(str(v) for v in job.inputs.values())
    scores = brand_fit(texts, context.voice, approved, fallback)
    verdicts = [moderate(t) for t in texts]
    return reports, scores, verdicts


def store_results(
    job: GenerationJob,
    context: PromptContext,
    indexes: list[int],
    seeds: list[int],
    results: list[GenerationResult],
    revision: int = 0,
) -> GenerationJob:
    reports, scores, verdicts = evaluate(job, context, [r.text for r in results])
    compute = max((r.seconds for r in results), default=0.0)
    with transaction.atomic():
        locked = GenerationJob.objects.select_for_update().get(pk=job.pk)
        if revision == 0 and locked.is_final:
            return locked  # another attempt finished first
        variants = []
        for index, seed, result, report, score, verdict in zip(
            indexes, seeds, results, reports, scores, verdicts, strict=True
        ):
            blocked = verdict.blocked
            variants.append(
                Variant(
                    job=locked,
                    index=index,
                    revision=revision,
                    is_current=True,
                    # Withheld text is not delivered: the variant records why, not what.
                    text="" if blocked else result.text,
                    prompt_tokens=result.prompt_tokens,
                    tokens=result.completion_tokens,
                    finish_reason="blocked" if blocked else result.finish_reason,
                    seed=seed,
                    constraint_report=report,
                    constraints_passed=all(c["passed"] for c in report),
                    brand_fit=score,
                    moderation=verdict.as_dict(),
                )
            )
        if revision:
            Variant.objects.filter(job=locked, index__in=indexes, is_current=True).update(is_current=False)
        try:
            with transaction.atomic():
                Variant.objects.bulk_create(variants)
        except IntegrityError:
            return GenerationJob.objects.get(pk=job.pk)  # this revision was stored by an earlier run
        locked.prompt_tokens += sum(r.prompt_tokens for r in results)
        locked.completion_tokens += sum(r.completion_tokens for r in results)
        locked.compute_seconds += compute
        fields = ["prompt_tokens", "completion_tokens", "compute_seconds", "model_name"]
        from workers.runtime import ModelSpec

        locked.model_name = ModelSpec.from_settings().model
        if revision == 0:
            reasons = {r.finish_reason for r in results}
            delivered = [v for v in variants if v.finish_reason != "blocked"]
            locked.finished_at = timezone.now()
            locked.lease_expires_at = None
            if FinishReason.CANCELED in reasons or locked.cancel_requested_at:
                locked.status, locked.failure_reason = JobStatus.CANCELED, "Canceled while running."
            elif not delivered:
                locked.status = JobStatus.FAILED
                locked.failure_reason = "Output " + verdicts[0].reason
            elif FinishReason.DEADLINE in reasons:
                locked.status = JobStatus.FAILED
                locked.failure_reason = f"Stopped at the job deadline ({settings.GENERATION_JOB_DEADLINE_S} s)."
            else:
                locked.status = JobStatus.SUCCEEDED
            fields += ["status", "failure_reason", "finished_at", "lease_expires_at"]
            _on_final(locked)
        locked.save(update_fields=fields)
        return locked


def regenerate(job_id: Any, index: int, revision: int, engine: Any = None) -> Variant | None:
    job = GenerationJob.objects.select_related("template_version", "project").get(pk=job_id)
    if Variant.objects.filter(job=job, index=index, revision__gte=revision).exists():
        return None  # already done (redelivery)
    job.deadline_at = timezone.now() + timedelta(seconds=settings.GENERATION_JOB_DEADLINE_S)
    context = PromptContext.load(job)
    requests, seeds = requests_for(job, context, [index], revision)
    results = _generate(job, requests, engine)
    store_results(job, context, [index], seeds, results, revision=revision)
    return Variant.objects.filter(job=job, index=index, is_current=True).first()


def reconcile(stale_after: timedelta = timedelta(minutes=2)) -> list[str]:
    """Re-enqueue jobs whose worker vanished (expired lease) or that sat queued without a task.

    Covers a worker killed mid-job and a crash between commit and enqueue. Running the task
    twice is harmless: ``claim`` lets only one worker through.
    """
    from generation.services import enqueue

    now = timezone.now()
    stale = GenerationJob.objects.filter(
        Q(status=JobStatus.RUNNING, lease_expires_at__lt=now)
        | Q(status=JobStatus.QUEUED, created_at__lt=now - stale_after)
    ).values_list("pk", flat=True)[:500]
    ids = [str(pk) for pk in stale]
    for job_id in ids:
        enqueue(job_id)
    return ids
