"""The billing integrity audit: does the ledger agree with the jobs and with itself?

Run by operators (``manage.py billing_audit``) and at the end of the chaos soak
(``bench/chaos.py``). It reads one consistent snapshot (a REPEATABLE READ
transaction), so it can run while workers settle jobs, and reports:

* **lost jobs**: ids a client was told were accepted (201) that are missing or
  not in a final state, and jobs stuck unfinished longer than ``stuck_after``;
* **duplicate ledger rows**: more than one reservation, charge or release of a
  job, or more than one line of a kind for one reference (regenerations,
  compute charges). The unique constraints forbid these; the audit proves the
  constraints are there and were never bypassed;
* **negative balances**: a job or an organization whose holds (reservations
  plus releases) or usage (charges, refunds, adjustments) sum below zero, and
  billing-account counters below zero;
* **counter drift**: ``BillingAccount`` counters that differ from the ledger
  sums they are kept in step with (held tokens, slots, this period's usage);
* **charges against job state**: a job charged that did not succeed, a job
  that succeeded and was never charged, a final job whose hold was never
  released, a job released or charged while still running, and ledger lines
  filed under another organization than their job's.

Every check is a query returning offending ids; the report keeps the counts
and the first ids of each, so an operator can start from a concrete row.

Billing does not import the jobs it meters: the app that owns them describes
them with ``register_metered_jobs`` (``generation.apps`` does, at start-up).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import BillingAccount, LedgerEntry, LedgerKind
from core.ids import parse_uuid

#: Ledger kinds that move a job's hold (``BillingAccount.tokens_reserved``).
HOLD_KINDS = (LedgerKind.RESERVATION, LedgerKind.RELEASE)
#: Ledger kinds that move usage (``BillingAccount.tokens_used_in_period``).
USAGE_KINDS = (LedgerKind.CHARGE, LedgerKind.REFUND, LedgerKind.ADJUSTMENT)
#: Ids kept per finding in the report; the count is always complete.
EXAMPLES_PER_CHECK = 20

#: Every check, in report order, with what a non-zero count means.
CHECKS: dict[str, str] = {
    "lost_jobs": "accepted jobs missing or not in a final state",
    "stuck_jobs": "jobs unfinished longer than the stuck threshold",
    "duplicate_job_lines": "jobs with more than one reservation, charge or release",
    "duplicate_reference_lines": "references billed more than once per kind",
    "negative_job_holds": "jobs whose releases exceed their reservation",
    "negative_org_holds": "organizations whose holds sum below zero",
    "negative_org_usage": "organizations whose usage lines sum below zero",
    "negative_account_counters": "billing accounts with a counter below zero",
    "reserved_drift": "billing accounts whose tokens_reserved differs from the ledger's holds",
    "active_jobs_drift": "billing accounts whose active_jobs differs from the unreleased slot holds",
    "usage_drift": "billing accounts whose tokens_used_in_period differs from this period's usage lines",
    "charged_not_succeeded": "jobs charged that did not succeed",
    "succeeded_not_charged": "jobs that succeeded without a charge",
    "final_hold_not_released": "final jobs whose hold was never released",
    "settled_while_running": "unfinished jobs already released or charged",
    "ledger_org_mismatch": "ledger lines filed under another organization than their job's",
}


@dataclass(frozen=True)
class MeteredJobs:
    """The jobs the ledger's job lines bill (``LedgerEntry.job``), as the audit needs to see them."""

    #: Every job, unscoped (a fresh queryset on each call).
    queryset: Callable[[], QuerySet[Any]]
    #: Statuses a job never leaves.
    final_statuses: Collection[str]
    #: The final status that is charged; every other one is released.
    succeeded: str


_metered_jobs: MeteredJobs | None = None


def register_metered_jobs(jobs: MeteredJobs) -> None:
    """Called by the app that owns the jobs the ledger's job column points to."""
    global _metered_jobs
    _metered_jobs = jobs


def metered_jobs() -> MeteredJobs:
    if _metered_jobs is None:
        raise RuntimeError("No app registered the jobs the ledger bills (billing.integrity.register_metered_jobs).")
    return _metered_jobs


@dataclass
class AuditReport:
    """Per check: how many offending rows, and the first ids of them."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in CHECKS})
    jobs_checked: int = 0
    ledger_lines_checked: int = 0

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    @property
    def problems(self) -> dict[str, int]:
        return {name: count for name, count in self.counts.items() if count}

    def add(self, check: str, ids: Iterable[Any]) -> None:
        ids = [str(i) for i in ids]
        self.counts[check] += len(ids)
        self.examples[check] = (self.examples[check] + ids)[:EXAMPLES_PER_CHECK]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "jobs_checked": self.jobs_checked,
            "ledger_lines_checked": self.ledger_lines_checked,
            "counts": dict(self.counts),
            "examples": {name: ids for name, ids in self.examples.items() if ids},
        }

    def lines(self) -> list[str]:
        """The report as text: one line per check, the offending ids under each failing one."""
        width = max(len(name) for name in CHECKS)
        out = [f"billing audit: {self.jobs_checked} jobs, {self.ledger_lines_checked} ledger lines"]
        for name, meaning in CHECKS.items():
            count = self.counts[name]
            out.append(f"  {name:<{width}}  {count:>6}  {'FAIL' if count else 'ok  '}  {meaning}")
            if count:
                more = f" (+{count - len(self.examples[name])} more)" if count > len(self.examples[name]) else ""
                out.append(f"  {'':<{width}}          {', '.join(self.examples[name])}{more}")
        out.append("billing audit: " + ("OK" if self.ok else f"FAILED ({sum(self.counts.values())} findings)"))
        return out


def audit_billing(
    *,
    organizations: Iterable[Any] | None = None,
    accepted_job_ids: Iterable[Any] | None = None,
    stuck_after: timedelta | None = timedelta(minutes=30),
) -> AuditReport:
    """Run every check, on every organization or only the given ones (instances or pks).

    ``accepted_job_ids``: ids a client recorded from 201 answers; each must exist
    and be final. ``stuck_after``: an unfinished job older than this is stuck
    (None skips the check; ``timedelta(0)`` after draining: nothing may be unfinished).
    """
    org_ids = None if organizations is None else [getattr(o, "pk", o) for o in organizations]
    report = AuditReport()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            # One snapshot for every query, so lines written while the audit runs cannot look like drift.
            # (Inside a caller's transaction, e.g. a test's, the caller's isolation applies.)
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        metered = metered_jobs()
        jobs = _scoped(metered.queryset(), org_ids)
        ledger = _scoped(LedgerEntry.objects.all(), org_ids)
        accounts = _scoped(BillingAccount.objects.all(), org_ids)
        report.jobs_checked = jobs.count()
        report.ledger_lines_checked = ledger.count()
        _lost_jobs(report, metered, jobs, accepted_job_ids, stuck_after)
        _duplicates(report, ledger)
        _negatives(report, ledger, accounts)
        _drift(report, ledger, accounts)
        _charges_against_jobs(report, metered, jobs, ledger)
    return report


def _scoped(queryset: QuerySet[Any], org_ids: list[Any] | None) -> QuerySet[Any]:
    return queryset if org_ids is None else queryset.filter(organization_id__in=org_ids)


def _lost_jobs(
    report: AuditReport,
    metered: MeteredJobs,
    jobs: QuerySet[Any],
    accepted: Iterable[Any] | None,
    stuck_after: timedelta | None,
) -> None:
    final_statuses = list(metered.final_statuses)
    if accepted is not None:
        wanted = {str(i) for i in accepted}
        valid = {str(u) for u in (parse_uuid(i) for i in wanted) if u is not None}
        # Looked up without the organization scope: an accepted job filed elsewhere is still not lost.
        final = {
            str(pk)
            for pk in metered.queryset().filter(pk__in=valid, status__in=final_statuses).values_list("pk", flat=True)
        }
        report.add("lost_jobs", sorted(wanted - final))
    if stuck_after is not None:
        cutoff = timezone.now() - stuck_after
        stuck = jobs.exclude(status__in=final_statuses).filter(created_at__lte=cutoff)
        report.add("stuck_jobs", stuck.order_by("created_at").values_list("pk", flat=True))


def _duplicates(report: AuditReport, ledger: QuerySet[LedgerEntry]) -> None:
    per_job = (
        ledger.filter(job__isnull=False, kind__in=[*HOLD_KINDS, LedgerKind.CHARGE])
        .values("job_id", "kind")
        .annotate(lines=Count("id"))
        .filter(lines__gt=1)
        .order_by("job_id", "kind")
    )
    report.add("duplicate_job_lines", (f"{row['job_id']}:{row['kind']}x{row['lines']}" for row in per_job))
    per_reference = (
        ledger.exclude(reference="")
        .values("reference", "kind")
        .annotate(lines=Count("id"))
        .filter(lines__gt=1)
        .order_by("reference", "kind")
    )
    report.add("duplicate_reference_lines", (f"{r['reference']}:{r['kind']}x{r['lines']}" for r in per_reference))


def _negatives(report: AuditReport, ledger: QuerySet[LedgerEntry], accounts: QuerySet[BillingAccount]) -> None:
    job_holds = (
        ledger.filter(job__isnull=False, kind__in=HOLD_KINDS)
        .values("job_id")
        .annotate(held=Sum("tokens"))
        .filter(held__lt=0)
        .order_by("job_id")
    )
    report.add("negative_job_holds", (row["job_id"] for row in job_holds))
    for check, kinds in (("negative_org_holds", HOLD_KINDS), ("negative_org_usage", USAGE_KINDS)):
        rows = (
            ledger.filter(kind__in=kinds)
            .values("organization_id")
            .annotate(total=Sum("tokens"))
            .filter(total__lt=0)
            .order_by("organization_id")
        )
        report.add(check, (row["organization_id"] for row in rows))
    negative = accounts.filter(
        Q(tokens_reserved__lt=0) | Q(tokens_used_in_period__lt=0) | Q(credit_tokens__lt=0) | Q(active_jobs__lt=0)
    )
    report.add("negative_account_counters", negative.values_list("organization_id", flat=True))


def _drift(report: AuditReport, ledger: QuerySet[LedgerEntry], accounts: QuerySet[BillingAccount]) -> None:
    held = dict(
        ledger.filter(kind__in=HOLD_KINDS).values("organization_id").annotate(t=Sum("tokens")).values_list(
            "organization_id", "t"
        )
    )
    released = LedgerEntry.objects.filter(job_id=OuterRef("job_id"), kind=LedgerKind.RELEASE)
    slots = dict(
        ledger.filter(kind=LedgerKind.RESERVATION, holds_slot=True, job__isnull=False)
        .exclude(Exists(released))
        .values("organization_id")
        .annotate(n=Count("id"))
        .values_list("organization_id", "n")
    )
    # The usage counter restarts at each period rollover: only this period's usage lines make it up.
    this_period = (
        LedgerEntry.objects.filter(
            organization_id=OuterRef("organization_id"), kind__in=USAGE_KINDS, created_at__gte=OuterRef("period_start")
        )
        .values("organization_id")
        .annotate(t=Sum("tokens"))
        .values("t")
    )
    rows = accounts.annotate(used=Coalesce(Subquery(this_period), 0)).order_by("organization_id")
    for org, reserved, active, used_counter, used in rows.values_list(
        "organization_id", "tokens_reserved", "active_jobs", "tokens_used_in_period", "used"
    ):
        if reserved != (held.get(org) or 0):
            report.add("reserved_drift", [f"{org}:{reserved}!={held.get(org) or 0}"])
        if active != slots.get(org, 0):
            report.add("active_jobs_drift", [f"{org}:{active}!={slots.get(org, 0)}"])
        if used_counter != used:
            report.add("usage_drift", [f"{org}:{used_counter}!={used}"])


def _charges_against_jobs(
    report: AuditReport, metered: MeteredJobs, jobs: QuerySet[Any], ledger: QuerySet[LedgerEntry]
) -> None:
    final_statuses, succeeded = list(metered.final_statuses), metered.succeeded

    def line(kind: str) -> Exists:
        return Exists(LedgerEntry.objects.filter(job_id=OuterRef("pk"), kind=kind))

    report.add(
        "charged_not_succeeded",
        ledger.filter(kind=LedgerKind.CHARGE, job__isnull=False)
        .exclude(job__status=succeeded)
        .order_by("job_id")
        .values_list("job_id", flat=True),
    )
    report.add(
        "succeeded_not_charged",
        jobs.filter(status=succeeded).exclude(line(LedgerKind.CHARGE)).order_by("pk").values_list(
            "pk", flat=True
        ),
    )
    report.add(
        "final_hold_not_released",
        jobs.filter(line(LedgerKind.RESERVATION), status__in=final_statuses)
        .exclude(line(LedgerKind.RELEASE))
        .order_by("pk")
        .values_list("pk", flat=True),
    )
    report.add(
        "settled_while_running",
        jobs.exclude(status__in=final_statuses)
        .filter(line(LedgerKind.RELEASE) | line(LedgerKind.CHARGE))
        .order_by("pk")
        .values_list("pk", flat=True),
    )
    report.add(
        "ledger_org_mismatch",
        ledger.filter(job__isnull=False).exclude(organization_id=F("job__organization_id")).order_by("pk").values_list(
            "pk", flat=True
        ),
    )
