"""What a worker does with a job: claim it, generate, check, store. Plain functions, no Celery.

Safe to run twice: a final job is skipped, a job another live worker holds is
skipped, and variants are stored in one transaction guarded by a unique
(job, index, revision) constraint, so a redelivered task never duplicates
variants or usage.

Faults (tests/workers/test_reliability_faults.py injects each one): a lost database
connection is retried, never a reason to fail a job (``with_db_retry``); Redis
going away does not stop a running job (``StopCheck``); a job's last attempt
after losing its worker runs alone in its process (``SuspectIsolation``), so a
job that kills its worker every time does not use up other jobs' attempts.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

import workers.engine
from generation import constraints as constraint_checks
from generation import dispatch, lifecycle, metering
from generation.dispatch import cancel_key
from generation.leakage import LeakGuard
from generation.models import WITHHELD, BrandVoice, GenerationJob, JobStatus, Variant
from generation.moderation import moderate
from generation.prompts import approved_examples, build_messages
from generation.scoring import brand_fit
from workers.contract import FinishReason, GenerationRequest, GenerationResult
from workers.runtime import ModelSpec

logger = logging.getLogger(__name__)


def lease() -> timedelta:
    """A running job's lease; renewed while it runs, so a job whose worker died is visibly stale."""
    return timedelta(seconds=settings.GENERATION_LEASE_S)


_CANCEL_POLL_S = 0.5


def worker_name() -> str:
    """This thread, as a job's ``worker``: the host and the system-wide thread id (a pool process's pid
    in a prefork worker), unique among the threads alive on the host."""
    return f"{socket.gethostname()}:{threading.get_native_id()}"


#: What a lost database connection raises (server restart, ``pg_terminate_backend``, failover, a
#: dropped network); deadlocks and serialization failures are OperationalErrors too, and retriable.
DB_CONNECTION_ERRORS = (OperationalError, InterfaceError)
#: Tries of one database step; the waits between them double from 0.2 s, ~3 s in all. A longer
#: outage fails the task, which Celery retries (generation/tasks.py), and the reconciler after it.
DB_ATTEMPTS = 5
_DB_FIRST_WAIT_S = 0.2
T = TypeVar("T")


def with_db_retry(step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a database step, reconnecting and running it again when the connection was lost.

    Each step is its own transaction and safe to repeat (a claim, a load, the final store), so a
    repeat after a commit whose acknowledgement was lost finds the work done. Inside an outer
    transaction (tests) nothing is repeated: the transaction is gone with the connection.
    """
    wait_s = _DB_FIRST_WAIT_S
    for attempt in range(1, DB_ATTEMPTS + 1):
        try:
            return step(*args, **kwargs)
        except DB_CONNECTION_ERRORS as exc:
            if attempt == DB_ATTEMPTS or connection.in_atomic_block:
                raise
            name = getattr(step, "__name__", repr(step))
            logger.warning("database step %s failed (%s); reconnecting in %.1f s", name, exc, wait_s)
            connection.close()
            time.sleep(wait_s)
            wait_s *= 2
    raise AssertionError("unreachable")


class SuspectIsolation:
    """Runs a job's last attempt alone in its process (see ``runs_alone``).

    A job whose worker died under it may be what killed it: an input that crashes the model or
    exhausts its memory. Run again beside other jobs it takes them down with it each time, and they
    use up their attempts too (tests/workers/test_reliability_faults.py: three ordinary jobs failed beside one
    such job when it ran with them). So a job about to take its last attempt waits until the jobs
    running in this process are done, and holds new ones back until it is: if it
    kills the worker again, only its own attempt is spent, and a job that was merely beside it gets
    its last attempt in peace. It waits before claiming, so a job queued behind it spends no attempt
    on a crash it was not part of. Earlier retries run beside others as usual: one crash (the OOM
    killer, a lost machine) costs no throughput; only jobs on two dying workers in a row run alone.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0
        self._alone = False
        self._waiting_alone = 0

    @contextmanager
    def hold(self, *, alone: bool) -> Iterator[None]:
        with self._changed:
            if alone:
                self._waiting_alone += 1
                self._changed.wait_for(lambda: not self._alone and self._running == 0)
                self._waiting_alone -= 1
                self._alone = True
            else:
                # A suspect waiting goes first, or a busy worker would never give it a quiet moment.
                self._changed.wait_for(lambda: not self._alone and self._waiting_alone == 0)
                self._running += 1
        try:
            yield
        finally:
            with self._changed:
                if alone:
                    self._alone = False
                else:
                    self._running -= 1
                self._changed.notify_all()


suspects = SuspectIsolation()


def runs_alone(attempts: int) -> bool:
    """Whether a job that lost its worker ``attempts`` times takes its next, last attempt alone."""
    return attempts > 0 and attempts >= settings.GENERATION_MAX_ATTEMPTS - 1


def claim(job_id: Any, worker: str) -> GenerationJob | None:
    """Move a queued (or abandoned) job to running for this worker; None if there is nothing to do."""
    now = timezone.now()
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_final:
            return None
        if job.status == JobStatus.RUNNING and job.lease_expires_at and job.lease_expires_at > now:
            if job.worker != worker:
                return None  # a live worker has it
            # This very thread: its claim committed, but the connection was lost before it said so.
            job.lease_expires_at = now + lease()
            job.save(update_fields=["lease_expires_at"])
            return job
        if job.attempts >= settings.GENERATION_MAX_ATTEMPTS:
            _finalize_failed(job, f"Stopped after {job.attempts} attempts: the worker was lost each time.")
            return None
        if job.cancel_requested_at:
            job.status, job.finished_at = JobStatus.CANCELED, now
            job.failure_reason = job.failure_reason or "Canceled."
            job.save(update_fields=["status", "finished_at", "failure_reason"])
            lifecycle.on_final(job)
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
    lifecycle.on_final(job)


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
            try:
                self._canceled = bool(cache.get(self.key))
            except Exception as exc:
                # Redis restarting must not stop generation: this runs inside the engine's decode step,
                # where an exception fails every row of the batch. Ask again at the next poll.
                logger.warning("cannot read the cancel flag of job %s: %s", self.key, exc)
        return FinishReason.CANCELED if self._canceled else None


@dataclass(frozen=True)
class PromptContext:
    """What shapes a job's prompt and scores its outputs: loaded once per run, used by both."""

    voice: BrandVoice | None
    examples: list[Variant]
    #: The organization's other projects' brand voices: outputs must not repeat them (generation.leakage).
    other_voices: list[BrandVoice]

    @classmethod
    def load(cls, job: GenerationJob) -> PromptContext:
        voices = list(BrandVoice.objects.filter(project__organization_id=job.organization_id))
        return cls(
            voice=next((v for v in voices if v.project_id == job.project_id), None),
            examples=approved_examples(job.project_id, job.template_version.template_id),
            other_voices=[v for v in voices if v.project_id != job.project_id],
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
    """Claim, generate and store one job. Returns the final job, or None if there was nothing to do.

    A job's last attempt after losing its worker runs alone in this process (``SuspectIsolation``).
    """
    state = with_db_retry(lambda: GenerationJob.objects.filter(pk=job_id).values("status", "attempts").first())
    if state is None or state["status"] in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED}:
        return None
    engine = engine or _loaded_engine()
    with suspects.hold(alone=runs_alone(state["attempts"])):
        return _claim_and_run(job_id, engine)


def _loaded_engine() -> Any:
    """This process's engine, waiting while the worker's start-up still loads the model.

    Called before the claim, so a job stays queued (and its page says the model is loading) instead
    of running on a lease that nothing renews while the load takes its minute. A model that fails to
    load gives None: ``_generate`` then tries once more and fails the job with the reason.
    """
    try:
        return workers.engine.get_engine()
    except Exception:
        logger.exception("could not load the generation model")
        return None


def _claim_and_run(job_id: Any, engine: Any) -> GenerationJob | None:
    job = with_db_retry(claim, job_id, worker_name())
    if job is None:
        return None
    job = with_db_retry(lambda: GenerationJob.objects.select_related("template_version", "project").get(pk=job_id))
    indexes = list(range(job.num_variants))
    context = with_db_retry(PromptContext.load, job)
    try:
        requests, seeds = with_db_retry(requests_for, job, context, indexes)
        results = _generate(job, requests, engine)
    except DB_CONNECTION_ERRORS:
        raise  # the database stayed away: not the job's fault; the task is retried (generation/tasks.py)
    except Exception as exc:
        logger.exception("generation job %s failed", job.pk)
        with_db_retry(_fail_running, job.pk, f"Generation failed: {type(exc).__name__}: {exc}"[:1000])
        return GenerationJob.objects.get(pk=job.pk)
    return with_db_retry(store_results, job, context, indexes, seeds, results)


def _fail_running(job_id: Any, reason: str) -> None:
    with transaction.atomic():
        locked = GenerationJob.objects.select_for_update().get(pk=job_id)
        if not locked.is_final:
            _finalize_failed(locked, reason)


def _generate(job: GenerationJob, requests: list[GenerationRequest], engine: Any) -> list[GenerationResult]:
    engine = engine or workers.engine.get_engine()
    futures = [engine.submit(r) for r in requests]
    pending = set(futures)
    while pending:
        # Renew the lease while waiting, so the reconciler never mistakes a busy job for a dead one.
        _done, pending = wait(pending, timeout=lease().total_seconds() / 3, return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in _done if f.done()):
            break
        _renew_lease(job)
    return [f.result() for f in futures]


def _renew_lease(job: GenerationJob) -> None:
    try:
        GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            lease_expires_at=timezone.now() + lease()
        )
    except DB_CONNECTION_ERRORS as exc:
        # The database is away for a moment: generation goes on, and the next renewal reconnects.
        logger.warning("could not renew the lease of job %s: %s", job.pk, exc)
        if not connection.in_atomic_block:
            connection.close()


def evaluate(
    job: GenerationJob, context: PromptContext, texts: list[str], finish_reasons: list[str] | None = None
) -> tuple[list[list[dict[str, Any]]], list[float], list[Any]]:
    approved = [v.final_text for v in context.examples]
    reasons = finish_reasons or [None] * len(texts)
    reports = [
        constraint_checks.check(t, job.template_version.constraints, job.inputs, finish_reason=reason)
        for t, reason in zip(texts, reasons, strict=True)
    ]
    fallback = " ".join(str(v) for v in job.inputs.values())
    scores = brand_fit(texts, context.voice, approved, fallback)
    guard = LeakGuard.for_job(
        job, build_messages(job.template_version, job.inputs, context.voice, context.examples), context.voice,
        context.other_voices,
    )
    # Moderation first (its category says more), then the prompt-leak filter on what passed.
    verdicts = [verdict if (verdict := moderate(t)).blocked else guard.check(t) for t in texts]
    return reports, scores, verdicts


def store_results(
    job: GenerationJob,
    context: PromptContext,
    indexes: list[int],
    seeds: list[int],
    results: list[GenerationResult],
    revision: int = 0,
) -> GenerationJob:
    reports, scores, verdicts = evaluate(job, context, [r.text for r in results], [r.finish_reason for r in results])
    compute = max((r.seconds for r in results), default=0.0)
    with transaction.atomic():
        # The organization comes along (billing locks its account next); only the job's row is locked here.
        locked = GenerationJob.objects.select_for_update(of=("self",)).select_related("organization").get(pk=job.pk)
        if revision == 0 and locked.is_final:
            return locked  # another attempt finished first
        variants = []
        for index, seed, result, report, score, verdict in zip(
            indexes, seeds, results, reports, scores, verdicts, strict=True
        ):
            blocked = verdict.blocked
            # A report describes the text shown; withheld text is not, so it has none (no report, no
            # brand fit) and passes nothing.
            shown = [] if blocked else report
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
                    finish_reason=WITHHELD if blocked else result.finish_reason,
                    seed=seed,
                    constraint_report=shown,
                    constraints_passed=not blocked and constraint_checks.passed(shown),
                    original_constraint_report=shown,
                    brand_fit=None if blocked else score,
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
        locked.model_name = ModelSpec.from_settings().model
        if revision == 0:
            reasons = {r.finish_reason for r in results}
            delivered = [v for v in variants if not v.is_withheld]
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
        locked.save(update_fields=fields)
        if revision == 0:
            lifecycle.on_final(locked)
        else:
            for variant in variants:
                metering.charge_regeneration(
                    job=locked,
                    index=variant.index,
                    revision=revision,
                    prompt_tokens=variant.prompt_tokens,
                    completion_tokens=variant.tokens,
                )
        return locked


def regenerate(job_id: Any, index: int, revision: int, engine: Any = None) -> Variant | None:
    job = GenerationJob.objects.select_related("template_version", "project").get(pk=job_id)
    if Variant.objects.filter(job=job, index=index, revision__gte=revision).exists():
        return None  # already done (redelivery)
    with suspects.hold(alone=False):  # never beside a job's last attempt (SuspectIsolation)
        job.deadline_at = timezone.now() + timedelta(seconds=settings.GENERATION_JOB_DEADLINE_S)
        context = PromptContext.load(job)
        requests, seeds = requests_for(job, context, [index], revision)
        results = _generate(job, requests, engine)
    with_db_retry(store_results, job, context, [index], seeds, results, revision=revision)
    return Variant.objects.filter(job=job, index=index, is_current=True).first()


def reconcile(stale_after: timedelta | None = None) -> list[str]:
    """Re-enqueue jobs whose worker vanished (expired lease) or that sat queued without a task.

    Covers a worker killed mid-job, a crash between commit and enqueue and a broker that lost
    its data. Running the task twice is harmless: ``claim`` lets only one worker through. A job
    is enqueued again at most once per ``stale_after`` (GENERATION_REQUEUE_AFTER_S) and attempt,
    so a long backlog is not enqueued once more on every run. Returns the ids enqueued.
    """
    stale_after = stale_after or timedelta(seconds=settings.GENERATION_REQUEUE_AFTER_S)
    now = timezone.now()
    stale = GenerationJob.objects.filter(
        Q(status=JobStatus.RUNNING, lease_expires_at__lt=now)
        | Q(status=JobStatus.QUEUED, created_at__lt=now - stale_after)
    ).values_list("pk", "attempts")[:500]
    ids = []
    for pk, attempts in stale:
        marker = f"generation:requeued:{pk}:{attempts}"
        if not cache.add(marker, 1, timeout=max(int(stale_after.total_seconds()), 1)):
            continue
        if dispatch.enqueue(pk):
            ids.append(str(pk))
        else:
            cache.delete(marker)  # not sent: try again on the next run
    return ids
