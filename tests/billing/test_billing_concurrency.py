"""Admission under contention: parallel reservations never reserve more than a hard cap allows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from billing.errors import QuotaExceeded
from billing.models import BillingAccount, LedgerEntry, LedgerKind
from billing.services import ensure_billing_account
from generation.metering import max_tokens_for, reserve_for_job
from tests.support.billing import make_jobs, make_plan, seed_plans, subscribe
from tests.support.factories import ProjectFactory

pytestmark = pytest.mark.django_db(transaction=True)

PARALLEL = 50
FITS = 10


def test_parallel_reservations_admit_exactly_what_the_cap_allows():
    # given a hard-capped organization whose allowance covers exactly 10 jobs
    seed_plans()
    project = ProjectFactory()
    jobs = make_jobs(project, PARALLEL)
    allowance = FITS * max_tokens_for(jobs[0])
    subscribe(project.organization, make_plan(included_tokens=allowance, max_concurrent_jobs=PARALLEL))
    ensure_billing_account(project.organization)
    start = threading.Barrier(PARALLEL)

    def reserve(job):
        try:
            start.wait()
            reserve_for_job(job=job)
            return "admitted"
        except QuotaExceeded:
            return "refused"
        finally:
            connection.close()  # each thread has its own connection; leave none open

    # when
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        outcomes = list(pool.map(reserve, jobs))

    # then
    assert outcomes.count("admitted") == FITS
    assert outcomes.count("refused") == PARALLEL - FITS
    account = BillingAccount.objects.get(organization=project.organization)
    assert account.tokens_reserved == allowance
    assert account.active_jobs == FITS
    reservations = LedgerEntry.objects.filter(organization=project.organization, kind=LedgerKind.RESERVATION)
    assert reservations.count() == FITS
    assert sum(reservations.values_list("tokens", flat=True)) == allowance
