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
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

import workers.engines
from core.jobs import DB_CONNECTION_ERRORS, with_db_retry, worker_name
from generation import constraints as constraint_checks
from generation import dispatch, factcheck, lifecycle, metering, scoring, streaming
from generation.adapters import AdapterUnavailable, adapter_ref
from generation.dispatch import cancel_key
from generation.grammar import numbers_from_facts, output_constraint
from generation.leakage import LeakGuard
from generation.models import WITHHELD, BrandVoice, GenerationJob, JobStatus, ServingModel, Variant
from generation.moderation import moderate
from generation.prompts import approved_examples, build_messages, retrieve_facts
from generation.scoring import brand_fit_parts
from workers.contract import Backend, FinishReason, GenerationRequest, GenerationResult
from workers.runtime import ModelSpec

logger = logging.getLogger(__name__)


def lease() -> timedelta:
    """A running job's lease; renewed while it runs, so a job whose worker died is visibly stale."""
    return lifecycle.jobs.lease()


_CANCEL_POLL_S = 0.5


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
    return lifecycle.jobs.claim(job_id, worker)


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
            examples=approved_examples(job.project_id, job.template_version.template_id, language=job.language),
            other_voices=[v for v in voices if v.project_id != job.project_id],
        )


def _screen(job: GenerationJob, context: PromptContext, messages: list[dict[str, str]]) -> Callable[[str], bool]:
    """What a streamed text must pass before readers see it: the checks its stored variant gets (``evaluate``)."""
    guard = LeakGuard.for_job(job, messages, context.voice, context.other_voices)
    return lambda text: not moderate(text).blocked and not guard.check(text).blocked


def requests_for(
    job: GenerationJob, context: PromptContext, indexes: list[int], revision: int = 0
) -> tuple[list[GenerationRequest], list[int]]:
    # The brand adapter pinned at submission; its files gone fail the job here, before any compute.
    adapter = adapter_ref(job.adapter, pinned_version=job.adapter_version)
    if not job.few_shot_variant_ids:
        job.few_shot_variant_ids = [str(v.pk) for v in context.examples]
        GenerationJob.objects.filter(pk=job.pk).update(few_shot_variant_ids=job.few_shot_variant_ids)
    # The project's knowledge for this brief, once per job (kept as job.grounding for the fact check).
    facts = retrieve_facts(job)
    messages = build_messages(
        job.template_version, job.inputs, context.voice, context.examples, facts=facts, language=job.language
    )
    stop = StopCheck(job.pk, job.deadline_at.timestamp() if job.deadline_at else time.time() + 600)
    # Variant i of a job with seed s samples with seed s + i (+ a stride per revision): reproducible.
    seeds = [job.seed + i + revision * 1_000_003 for i in indexes]
    # The job's first run streams its text to readers (generation.streaming); a regenerated variant
    # is shown when stored.
    stream = streaming.open_job_stream(job, screen=_screen(job, context, messages)) if revision == 0 else None
    # The template's hard limits, held while decoding where the engine can (generation.grammar); with
    # knowledge, also the numbers the copy may state: those of what the fact check reads as its sources.
    spec = job.template_version.constraints
    sources = [s.text for s in factcheck.job_sources(job)] if numbers_from_facts(spec, facts) else None
    constraint = output_constraint(spec, job.inputs, sources)
    return [
        GenerationRequest(
            messages=messages,
            max_new_tokens=job.max_new_tokens,
            temperature=job.temperature,
            top_p=job.top_p,
            seed=seed,
            should_stop=stop,
            on_text=stream.writer(index) if stream is not None else None,
            constraint=constraint,
            adapter=adapter,
        )
        for index, seed in zip(indexes, seeds, strict=True)
    ], seeds


def run_job(job_id: Any, engine: Any = None) -> GenerationJob | None:
    """Claim, generate and store one job. Returns the final job, or None if there was nothing to do.

    A job's last attempt after losing its worker runs alone in this process (``SuspectIsolation``).
    """
    state = with_db_retry(
        lambda: GenerationJob.objects.filter(pk=job_id).values("status", "attempts", "serving_model_id").first()
    )
    if state is None or state["status"] in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED}:
        return None
    engine = engine or _loaded_engine(state["serving_model_id"])
    with suspects.hold(alone=runs_alone(state["attempts"])):
        return _claim_and_run(job_id, engine)


def _loaded_engine(serving_model_id: Any = None) -> Any:
    """This process's engine for the job's model, waiting while the worker's start-up still loads it.

    Called before the claim, so a job stays queued (and its page says the model is loading) instead
    of running on a lease that nothing renews while the load takes its minute. A model that fails to
    load gives None: ``_generate`` then tries once more and fails the job with the reason.
    """
    try:
        model = with_db_retry(ServingModel.objects.get, pk=serving_model_id) if serving_model_id else None
        return workers.engines.engine_for(model.backend() if model else None)
    except Exception:
        logger.exception("could not load the generation model")
        return None


def _claim_and_run(job_id: Any, engine: Any) -> GenerationJob | None:
    job = with_db_retry(claim, job_id, worker_name())
    if job is None:
        return None
    job = with_db_retry(
        lambda: GenerationJob.objects.select_related("template_version", "project", "adapter").get(pk=job_id)
    )
    indexes = list(range(job.num_variants))
    context = with_db_retry(PromptContext.load, job)
    try:
        requests, seeds = with_db_retry(requests_for, job, context, indexes)
        results = _generate(job, requests, engine)
    except DB_CONNECTION_ERRORS:
        raise  # the database stayed away: not the job's fault; the task is retried (generation/tasks.py)
    except AdapterUnavailable as exc:
        logger.warning("generation job %s failed: %s", job.pk, exc)
        with_db_retry(_fail_running, job.pk, str(exc)[:1000])
        return GenerationJob.objects.get(pk=job.pk)
    except Exception as exc:
        logger.exception("generation job %s failed", job.pk)
        with_db_retry(_fail_running, job.pk, f"Generation failed: {type(exc).__name__}: {exc}"[:1000])
        return GenerationJob.objects.get(pk=job.pk)
    try:
        return with_db_retry(store_results, job, context, indexes, seeds, results)
    except DB_CONNECTION_ERRORS:
        raise
    except Exception as exc:  # checking or scoring the outputs: the job still ends, with the reason
        logger.exception("storing the results of generation job %s failed", job.pk)
        with_db_retry(_fail_running, job.pk, f"Checking the outputs failed: {type(exc).__name__}: {exc}"[:1000])
        return GenerationJob.objects.get(pk=job.pk)


def _fail_running(job_id: Any, reason: str) -> None:
    lifecycle.jobs.fail_unless_final(job_id, reason)


def _backend(job: GenerationJob) -> Backend | None:
    """Where the job's model is served; None (the worker's configured model) for a job from before the registry."""
    return job.serving_model.backend() if job.serving_model_id else None


def _generate(job: GenerationJob, requests: list[GenerationRequest], engine: Any) -> list[GenerationResult]:
    engine = engine or workers.engines.engine_for(_backend(job))
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
    lifecycle.jobs.renew(job.pk)


def evaluate(
    job: GenerationJob, context: PromptContext, texts: list[str], finish_reasons: list[str] | None = None
) -> tuple[list[list[dict[str, Any]]], list[float], list[Any], list[dict[str, Any]]]:
    """Each text's constraint report (its fact check's entries included), brand fit, moderation verdict
    and fact check."""
    approved = [v.final_text for v in context.examples]
    reasons = finish_reasons or [None] * len(texts)
    # What the copy may claim: the brief and the knowledge retrieved into its prompt. Feature statements
    # are compared by embedding where this process can embed, by shared words where it cannot.
    facts = factcheck.fact_check_all(
        texts,
        factcheck.job_sources(job),
        embed=scoring.embed_outputs if scoring.available() else None,
    )
    reports = [
        constraint_checks.check(
            t, job.template_version.constraints, job.inputs, finish_reason=reason, language=job.language
        )
        + factcheck.report_entries(fact)
        for t, reason, fact in zip(texts, reasons, facts, strict=True)
    ]
    fallback = " ".join(str(v) for v in job.inputs.values())
    # Without torch (a worker that streams from a server) the scores come later, from the default queue.
    # Each a (score, breakdown) pair: the voice's part and, once the project has enough concluded
    # experiments, the outcome component (generation.outcomes).
    scores: list[Any] = [None] * len(texts)
    if scoring.available():
        scores = brand_fit_parts(texts, context.voice, approved, fallback, job.project)
    guard = LeakGuard.for_job(
        job,
        build_messages(
            job.template_version, job.inputs, context.voice, context.examples, facts=job.grounding,
            language=job.language,
        ),
        context.voice,
        context.other_voices,
    )
    # Moderation first (its category says more), then the prompt-leak filter on what passed.
    verdicts = [verdict if (verdict := moderate(t)).blocked else guard.check(t) for t in texts]
    return reports, scores, verdicts, facts


def store_results(
    job: GenerationJob,
    context: PromptContext,
    indexes: list[int],
    seeds: list[int],
    results: list[GenerationResult],
    revision: int = 0,
) -> GenerationJob:
    reports, scores, verdicts, facts = evaluate(
        job, context, [r.text for r in results], [r.finish_reason for r in results]
    )
    compute = max((r.seconds for r in results), default=0.0)
    with transaction.atomic():
        # The organization comes along (billing locks its account next); only the job's row is locked here.
        locked = GenerationJob.objects.select_for_update(of=("self",)).select_related("organization").get(pk=job.pk)
        if revision == 0 and locked.is_final:
            return locked  # another attempt finished first
        variants = []
        for index, seed, result, report, score, verdict, fact in zip(
            indexes, seeds, results, reports, scores, verdicts, facts, strict=True
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
                    brand_fit=None if blocked or score is None else score[0],
                    brand_fit_breakdown={} if blocked or score is None else score[1],
                    moderation=verdict.as_dict(),
                    fact_check={} if blocked else fact,
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
        backend = _backend(job)
        locked.model_name = backend.model if backend else ModelSpec.from_settings().model
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
        if any(v.brand_fit is None and not v.is_withheld for v in variants):
            transaction.on_commit(lambda: dispatch.score_variants(locked.pk))
        return locked


def score_variants(job_id: Any) -> int:
    """Brand fit of the job's current variants stored without one (their worker had no embedding model);
    returns how many were scored. Run again, it finds nothing left to do."""
    job = GenerationJob.objects.select_related("template_version").get(pk=job_id)
    pending = [
        v for v in Variant.objects.filter(job=job, is_current=True, brand_fit__isnull=True) if not v.is_withheld
    ]
    if not pending:
        return 0
    context = PromptContext.load(job)
    fallback = " ".join(str(v) for v in job.inputs.values())
    approved = [v.final_text for v in context.examples]
    scores = brand_fit_parts([v.final_text for v in pending], context.voice, approved, fallback, job.project)
    for variant, (score, parts) in zip(pending, scores, strict=True):
        Variant.objects.filter(pk=variant.pk, brand_fit__isnull=True).update(
            brand_fit=score, brand_fit_breakdown=parts
        )
    return len(pending)


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
    """Re-enqueue jobs whose worker vanished (expired lease) or that sat queued without a task
    (``core.jobs.Lifecycle.reconcile``, at most once per GENERATION_REQUEUE_AFTER_S and attempt)."""
    return lifecycle.jobs.reconcile(stale_after)
