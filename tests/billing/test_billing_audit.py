"""The billing audit passes a clean ledger and reports every forged inconsistency."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing.integrity import CHECKS, audit_billing
from billing.models import BillingAccount, LedgerEntry, LedgerKind
from generation.metering import release_job, reserve_for_job, settle_job
from generation.models import GenerationJob, JobStatus
from tests.support.billing import make_jobs, set_usage

pytestmark = pytest.mark.django_db


def _settled(project, count=1):
    """Jobs admitted, run and charged, as the worker leaves them."""
    jobs = make_jobs(project, count)
    for job in jobs:
        reserve_for_job(job=job)
        set_usage(job, prompt=120, completion=30)
        settle_job(job=job)
    return jobs


def _failed(project):
    (job,) = make_jobs(project, 1)
    reserve_for_job(job=job)
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, failure_reason="boom")
    job.refresh_from_db()
    release_job(job=job, reason="failed: boom")
    return job


def _run_command(*args):
    out = io.StringIO()
    try:
        call_command("billing_audit", *args, stdout=out)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue()


@pytest.fixture
def clean_ledger(cast):
    """Acme: two settled jobs, one failed and released, one still running with its hold."""
    settled = _settled(cast.project, 2)
    failed = _failed(cast.project)
    (running,) = make_jobs(cast.project, 1)
    reserve_for_job(job=running)
    GenerationJob.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING)
    return {"settled": settled, "failed": failed, "running": running}


def test_a_clean_ledger_passes(cast, clean_ledger):
    accepted = [job.pk for job in [*clean_ledger["settled"], clean_ledger["failed"]]]

    report = audit_billing(accepted_job_ids=accepted)

    assert report.ok, report.lines()
    assert report.problems == {}
    assert report.jobs_checked == 4
    # 2 x (reservation, charge, release) + failed (reservation, release) + running (reservation)
    assert report.ledger_lines_checked == 9
    assert set(report.counts) == set(CHECKS)


def test_the_command_passes_a_clean_ledger_and_exits_zero(cast, clean_ledger, tmp_path):
    ids = tmp_path / "accepted.txt"
    ids.write_text("\n".join(str(job.pk) for job in clean_ledger["settled"]) + "\n")

    code, out = _run_command("--accepted-jobs", str(ids))

    assert code == 0, out
    assert out.strip().splitlines()[-1] == "billing audit: OK"
    assert "FAIL" not in out


def test_a_forged_duplicate_charge_is_reported(cast, clean_ledger):
    # given: the exactly-once index dropped (inside this test's transaction) and a job charged twice
    job = clean_ledger["settled"][0]
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX ledger_once_per_job")
    charge = LedgerEntry.objects.get(job=job, kind=LedgerKind.CHARGE)
    charge.pk = uuid.uuid4()
    charge.save(force_insert=True)
    # when
    report = audit_billing()
    code, out = _run_command()
    # then
    assert report.counts["duplicate_job_lines"] == 1
    assert report.examples["duplicate_job_lines"] == [f"{job.pk}:charge x2".replace(" ", "")]
    # the second charge is also usage the account never counted
    assert report.counts["usage_drift"] == 1
    assert code == 1
    assert "duplicate_job_lines" in out and "FAILED" in out.splitlines()[-1]


def test_a_forged_duplicate_reference_line_is_reported(cast):
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX ledger_once_per_reference")
    for _ in range(2):
        LedgerEntry.objects.create(
            organization=cast.org, kind=LedgerKind.CHARGE, reference="recommendation:42", reason="forged"
        )

    report = audit_billing()

    assert report.examples["duplicate_reference_lines"] == ["recommendation:42:chargex2"]


def test_a_forged_release_without_reservation_is_a_negative_balance(cast, clean_ledger):
    # given: a job released that never held anything, more than the organization holds in all
    (job,) = make_jobs(cast.project, 1, status=JobStatus.FAILED)
    LedgerEntry.objects.create(
        organization=cast.org, project=cast.project, job=job, kind=LedgerKind.RELEASE, tokens=-100_000, reason="forged"
    )
    # when
    report = audit_billing()
    # then
    assert report.examples["negative_job_holds"] == [str(job.pk)]
    assert report.examples["negative_org_holds"] == [str(cast.org.pk)]
    assert report.counts["reserved_drift"] == 1
    assert not report.ok


def test_negative_usage_of_an_organization_is_reported(cast, clean_ledger):
    LedgerEntry.objects.create(organization=cast.org, kind=LedgerKind.REFUND, tokens=-10_000, reason="forged")

    report = audit_billing()

    assert report.examples["negative_org_usage"] == [str(cast.org.pk)]
    assert report.counts["usage_drift"] == 1


def test_counters_that_drift_from_the_ledger_are_reported(cast, clean_ledger):
    BillingAccount.objects.filter(organization=cast.org).update(
        tokens_used_in_period=1, active_jobs=7, tokens_reserved=3
    )

    report = audit_billing()

    assert report.problems == {"reserved_drift": 1, "active_jobs_drift": 1, "usage_drift": 1}
    assert report.examples["active_jobs_drift"] == [f"{cast.org.pk}:7!=1"]


def test_charges_that_disagree_with_job_states_are_reported(cast, clean_ledger):
    # given: a succeeded job never charged, a failed job charged, a canceled job still holding
    (uncharged,) = make_jobs(cast.project, 1, status=JobStatus.SUCCEEDED)
    wrongly_charged = clean_ledger["failed"]
    LedgerEntry.objects.create(
        organization=cast.org, job=wrongly_charged, kind=LedgerKind.CHARGE, tokens=0, reason="forged"
    )
    (holding,) = make_jobs(cast.project, 1)
    reserve_for_job(job=holding)
    GenerationJob.objects.filter(pk=holding.pk).update(status=JobStatus.CANCELED)
    # when
    report = audit_billing()
    # then
    assert report.examples["succeeded_not_charged"] == [str(uncharged.pk)]
    assert report.examples["charged_not_succeeded"] == [str(wrongly_charged.pk)]
    assert report.examples["final_hold_not_released"] == [str(holding.pk)]


def test_a_running_job_already_released_is_reported(cast, clean_ledger):
    running = clean_ledger["running"]
    release_job(job=running, reason="too early")

    report = audit_billing()

    assert report.examples["settled_while_running"] == [str(running.pk)]


def test_a_line_filed_under_another_organization_is_reported(cast, clean_ledger):
    job = clean_ledger["settled"][1]
    line = LedgerEntry.objects.get(job=job, kind=LedgerKind.CHARGE)
    LedgerEntry.objects.filter(pk=line.pk).update(organization=cast.outsider_org)

    report = audit_billing()

    assert report.examples["ledger_org_mismatch"] == [str(line.pk)]


def test_lost_and_stuck_jobs_are_reported(cast, clean_ledger):
    # given: the client was told these were accepted; one never reached the database, one never finished
    never_stored = uuid.uuid4()
    running = clean_ledger["running"]
    GenerationJob.objects.filter(pk=running.pk).update(created_at=timezone.now() - timedelta(hours=2))
    accepted = [*(job.pk for job in clean_ledger["settled"]), never_stored, running.pk, "not-a-uuid"]
    # when
    report = audit_billing(accepted_job_ids=accepted)
    # then
    assert sorted(report.examples["lost_jobs"]) == sorted([str(never_stored), str(running.pk), "not-a-uuid"])
    assert report.examples["stuck_jobs"] == [str(running.pk)]
    # after draining nothing may be unfinished, however young
    assert audit_billing(stuck_after=timedelta(0)).examples["stuck_jobs"] == [str(running.pk)]
    assert audit_billing(stuck_after=None).counts["stuck_jobs"] == 0


def test_the_audit_can_be_limited_to_organizations(cast, clean_ledger):
    # given: a problem in Globex only
    (outsider_job,) = make_jobs(cast.outsider_project, 1, status=JobStatus.SUCCEEDED)
    # when
    acme_only = audit_billing(organizations=[cast.org])
    everyone = audit_billing()
    code, out = _run_command("--organization", "acme", "--json")
    # then
    assert acme_only.ok, acme_only.lines()
    assert everyone.examples["succeeded_not_charged"] == [str(outsider_job.pk)]
    assert code == 0
    assert json.loads(out)["ok"] is True
    assert _run_command("--organization", "globex")[0] == 1


def test_the_command_reads_accepted_ids_from_stdin_and_reports_json(cast, clean_ledger, monkeypatch):
    missing = uuid.uuid4()
    monkeypatch.setattr("sys.stdin", io.StringIO(f"# accepted by the load run\n{missing}\n"))

    code, out = _run_command("--accepted-jobs", "-", "--json")

    body = json.loads(out)
    assert code == 1
    assert body["ok"] is False
    assert body["counts"]["lost_jobs"] == 1
    assert body["examples"] == {"lost_jobs": [str(missing)]}


def test_an_unknown_organization_is_an_error(cast):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No organization with slug: nope"):
        call_command("billing_audit", "--organization", "nope", stdout=io.StringIO())
