"""The lifecycle every background job shares (core.jobs), seen through both job kinds that use it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from generation import lifecycle as generation_lifecycle
from generation.models import GenerationJob
from recommendations import lifecycle as recommendation_lifecycle
from recommendations.models import RecommendationJob
from tests.support.generation_factories import GenerationJobFactory
from tests.support.recommendation_factories import RecommendationJobFactory

LIFECYCLES = [
    pytest.param(generation_lifecycle.jobs, GenerationJobFactory, id="generation"),
    pytest.param(recommendation_lifecycle.jobs, RecommendationJobFactory, id="recommendation"),
]


def _queued(factory, cast):
    return factory(project=cast.project, status="queued", finished_at=None, started_at=None, attempts=0)


@pytest.mark.parametrize("jobs, factory", LIFECYCLES)
def test_a_claim_takes_a_lease_and_a_duplicate_delivery_finds_it_held(jobs, factory, cast):
    job = _queued(factory, cast)

    claimed = jobs.claim(job.pk, "host:1")

    assert (claimed.status, claimed.attempts, claimed.worker) == ("running", 1, "host:1")
    assert claimed.lease_expires_at > timezone.now()
    assert jobs.claim(job.pk, "host:2") is None
    # the same thread again (its claim committed but the answer was lost): the job, no new attempt
    assert jobs.claim(job.pk, "host:1").attempts == 1


@pytest.mark.parametrize("jobs, factory", LIFECYCLES)
def test_an_expired_lease_hands_the_job_over_until_attempts_run_out(jobs, factory, cast, settings):
    settings.GENERATION_MAX_ATTEMPTS = settings.RECOMMENDATION_MAX_ATTEMPTS = 2
    job = _queued(factory, cast)
    for worker in ("a:1", "b:1"):
        assert jobs.claim(job.pk, worker).worker == worker
        type(job).objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert jobs.claim(job.pk, "c:1") is None

    job.refresh_from_db()
    assert job.status == "failed" and job.failure_reason == "Stopped after 2 attempts: the worker was lost each time."
    assert job.lease_expires_at is None and job.finished_at is not None


@pytest.mark.parametrize("jobs, factory", LIFECYCLES)
def test_fail_unless_final_keeps_a_final_state(jobs, factory, cast):
    job = factory(project=cast.project, status="succeeded")

    jobs.fail_unless_final(job.pk, "late failure")

    job.refresh_from_db()
    assert job.status == "succeeded" and job.failure_reason == ""


@pytest.mark.django_db(transaction=True)
def test_keep_alive_renews_the_lease_while_the_work_runs(cast, settings):
    settings.RECOMMENDATION_LEASE_S = 1  # renewed every third of a second
    job = _queued(RecommendationJobFactory, cast)
    jobs = recommendation_lifecycle.jobs
    first = jobs.claim(job.pk, "host:1").lease_expires_at

    with jobs.keep_alive(job.pk):
        deadline = time.monotonic() + 30
        while RecommendationJob.objects.get(pk=job.pk).lease_expires_at <= first:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.1)

    assert RecommendationJob.objects.get(pk=job.pk).lease_expires_at > first


def test_generation_jobs_canceled_while_queued_end_canceled_at_their_claim(cast):
    job = GenerationJobFactory(project=cast.project, status="queued", finished_at=None, started_at=None)
    GenerationJob.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())

    assert generation_lifecycle.jobs.claim(job.pk, "host:1") is None

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("canceled", 0)
