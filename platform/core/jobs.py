"""One lifecycle for background jobs: claim with a lease, attempts, reconcile, a final state with a reason.

Generation and recommendation jobs (and the training and experiment jobs to come) are rows that
Celery tasks run by id. Tasks are delivered at least once and workers die, so each job model
(``core.models.LeasedJob``) goes through the same steps, here once:

- ``claim``: queued (or abandoned: its lease expired) → running for this worker, one more attempt;
  a job whose worker was lost ``max_attempts`` times is failed instead. A live lease held by another
  worker means a duplicate delivery: nothing to do.
- ``renew`` / ``keep_alive``: the running worker extends its lease, so a busy job never looks dead.
- ``fail``: a final state with a reason, in the transaction that decides it, with the app's
  ``on_final`` hook (billing, notifications) in that same transaction.
- ``reconcile`` (beat, every minute or so): re-enqueues jobs whose lease expired or that sat queued
  without a task (a crash between commit and enqueue, a broker that lost its data); at most once
  per ``requeue_after_s`` and attempt, so a long backlog is not sent again on every run.

Apps keep their own status values and hooks; what differs between them is configuration.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from django.core.cache import cache
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.models import LeasedJob

logger = logging.getLogger(__name__)

J = TypeVar("J", bound=LeasedJob)
T = TypeVar("T")

#: What a lost database connection raises (server restart, ``pg_terminate_backend``, failover, a
#: dropped network); deadlocks and serialization failures are OperationalErrors too, and retriable.
DB_CONNECTION_ERRORS = (OperationalError, InterfaceError)
#: Tries of one database step; the waits between them double from 0.2 s, ~3 s in all. A longer
#: outage fails the task, which Celery retries, and the reconciler after it.
DB_ATTEMPTS = 5
_DB_FIRST_WAIT_S = 0.2


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


def worker_name() -> str:
    """This thread, as a job's ``worker``: the host and the system-wide thread id (a pool process's pid
    in a prefork worker), unique among the threads alive on the host."""
    return f"{socket.gethostname()}:{threading.get_native_id()}"


def _nothing(job: Any) -> None:
    return None


def _admit(job: Any, now: datetime) -> bool:
    return True


@dataclass(frozen=True)
class Lifecycle(Generic[J]):
    """How one job model is claimed, kept, failed and reconciled. Settings are read when used."""

    model: type[J]
    #: Names this lifecycle in cache keys and log lines: "generation", "recommendation".
    name: str
    queued: str
    running: str
    failed: str
    final: frozenset[str]
    max_attempts: Callable[[], int]
    lease_s: Callable[[], float]
    requeue_after_s: Callable[[], float]
    #: Sends the job's task; False when the broker refused (the reconciler tries again).
    enqueue: Callable[[Any], bool]
    #: Runs in the transaction that made a job final, after its row is saved (bill, notify).
    on_final: Callable[[J], None] = field(default=_nothing)
    #: Runs on a locked job about to be claimed; returning False skips it (the hook made it final,
    #: e.g. a cancellation requested while it was queued).
    admit: Callable[[J, datetime], bool] = field(default=_admit)
    #: Runs on a job just claimed, before it is saved: sets what the app tracks per attempt; returns
    #: the names of the fields it set.
    on_claim: Callable[[J, datetime], list[str]] = field(default=lambda job, now: [])

    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_s())

    def claim(self, job_id: Any, worker: str | None = None) -> J | None:
        """Move a queued (or abandoned) job to running for ``worker``; None if there is nothing to do."""
        worker = worker or worker_name()
        now = timezone.now()
        with transaction.atomic():
            job = self.model.objects.select_for_update().filter(pk=job_id).first()  # type: ignore[attr-defined]
            if job is None or job.status in self.final:
                return None
            if job.status == self.running and job.lease_expires_at and job.lease_expires_at > now:
                if job.worker != worker:
                    return None  # a live worker has it: a duplicate delivery
                # This very thread: its claim committed, but the connection was lost before it said so.
                job.lease_expires_at = now + self.lease()
                job.save(update_fields=["lease_expires_at"])
                return job  # type: ignore[no-any-return]
            if job.attempts >= self.max_attempts():
                self.fail(job, f"Stopped after {job.attempts} attempts: the worker was lost each time.")
                return None
            if not self.admit(job, now):
                return None
            job.status = self.running
            job.attempts += 1
            job.worker = worker
            job.started_at = job.started_at or now
            job.lease_expires_at = now + self.lease()
            extra = self.on_claim(job, now)
            job.save(update_fields=["status", "attempts", "worker", "started_at", "lease_expires_at", *extra])
            return job  # type: ignore[no-any-return]

    def fail(self, job: J, reason: str) -> None:
        """Make a locked job failed with ``reason`` (the caller holds its row lock)."""
        job.status = self.failed  # type: ignore[attr-defined]
        job.failure_reason = reason[:2000]
        job.finished_at = timezone.now()
        job.lease_expires_at = None
        job.save(update_fields=["status", "failure_reason", "finished_at", "lease_expires_at"])
        self.on_final(job)

    def fail_unless_final(self, job_id: Any, reason: str) -> J:
        """Fail the job unless something already made it final (another attempt, a cancellation)."""
        with transaction.atomic():
            job = self.model.objects.select_for_update().get(pk=job_id)  # type: ignore[attr-defined]
            if job.status not in self.final:
                self.fail(job, reason)
            return job  # type: ignore[no-any-return]

    def renew(self, job_id: Any) -> None:
        """Extend a running job's lease. A database away for a moment is logged, never raised:
        the work goes on and the next renewal reconnects."""
        try:
            self.model.objects.filter(pk=job_id, status=self.running).update(  # type: ignore[attr-defined]
                lease_expires_at=timezone.now() + self.lease()
            )
        except DB_CONNECTION_ERRORS as exc:
            logger.warning("could not renew the lease of %s job %s: %s", self.name, job_id, exc)
            if not connection.in_atomic_block:
                connection.close()

    @contextmanager
    def keep_alive(self, job_id: Any) -> Iterator[None]:
        """Renew the job's lease every third of it from a side thread while the block runs.

        For work that has no loop of its own to renew from (training a model for minutes); the
        thread uses its own database connection and closes it.
        """
        done = threading.Event()

        def renew_until_done() -> None:
            try:
                while not done.wait(self.lease_s() / 3):
                    self.renew(job_id)
            finally:
                connection.close()

        thread = threading.Thread(target=renew_until_done, name=f"{self.name}-lease-{job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def stale(self, now: datetime, stale_after: timedelta) -> Any:
        """Jobs to hand to a worker again: running on an expired lease, or queued for too long."""
        return self.model.objects.filter(  # type: ignore[attr-defined]
            Q(status=self.running, lease_expires_at__lt=now)
            | Q(status=self.queued, created_at__lt=now - stale_after)
        )

    def reconcile(self, stale_after: timedelta | None = None, limit: int = 500) -> list[str]:
        """Re-enqueue jobs whose worker vanished or whose task was lost; returns the ids sent.

        Running the task twice is harmless: ``claim`` lets only one worker through.
        """
        stale_after = stale_after or timedelta(seconds=self.requeue_after_s())
        ids = []
        for pk, attempts in self.stale(timezone.now(), stale_after).values_list("pk", "attempts")[:limit]:
            marker = f"{self.name}:requeued:{pk}:{attempts}"
            if not cache.add(marker, 1, timeout=max(int(stale_after.total_seconds()), 1)):
                continue
            if self.enqueue(pk):
                ids.append(str(pk))
            else:
                cache.delete(marker)  # not sent: try again on the next run
        return ids
