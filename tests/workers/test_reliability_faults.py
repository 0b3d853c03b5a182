"""Fault injection on real processes: no accepted job is lost, run twice or charged twice.

The suite runs its own Redis server, gunicorn, a default worker with beat (the reconciler, every
second) and a generation worker (``--pool threads``, the stub model with its fault hooks armed), all
on the test database; jobs are submitted over HTTP with a real API key. Each test injects one fault
and then audits every job of its organization: final, stored exactly once, billed exactly once,
balances back to zero holds. Run alone with ``bin/test -m reliability``.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from unittest import mock

import pytest
from django.db import connection

from apikeys.services import create_api_key
from bench.harness import Worker as WorkerHandle
from billing.models import BillingAccount, LedgerEntry, LedgerKind
from generation import dispatch, services
from generation.models import GenerationJob, JobStatus, Variant
from organizations.models import Organization, Role
from projects.models import Project
from tests.support.factories import MembershipFactory, OrganizationFactory, ProjectFactory, UserFactory
from tests.support.reliability import (
    APPLICATION_NAME,
    JOB_DEADLINE_S,
    MAX_ATTEMPTS,
    REQUEUE_AFTER_S,
    Api,
    Call,
    RedisServer,
    Supervisor,
    WebServer,
    child_pids,
    kill_process,
    suite_env,
    wait_for,
)
from workers.stub import HANG_MARKER, KILL_WORKER_MARKER

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

#: ~100 words: with the suite's 0.02 s per stub token a variant takes ~2.5 s, long enough to be hit mid-job.
LONG_TEXT = " ".join(f"feature{i}" for i in range(100))
SHORT_TEXT = "linen, 50x70 cm, machine washable"
FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)
GENERATION_THREADS = 4


@dataclass
class Cluster:
    redis: RedisServer
    env: dict[str, str]
    web: WebServer
    default: WorkerHandle
    generation: WorkerHandle

    def ensure_up(self) -> None:
        """Whatever the previous test did, start each test with every process running."""
        if self.redis.process is None or self.redis.process.poll() is not None:
            self.redis.start()
        if self.generation.process.poll() is not None:
            self.generation.restart()
        if self.default.process.poll() is not None:
            self.default.restart()
        assert self.web.process is not None and self.web.process.poll() is None


@pytest.fixture(scope="module")
def cluster(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("faults")
    redis_server = RedisServer(folder / "redis")
    redis_server.start()
    env = suite_env(redis_server.url)
    web = WebServer(env)
    started: list[WorkerHandle] = []
    try:
        web.start()
        # Beat inside the default worker: it sends generation.reconcile every RECONCILE_EVERY_S.
        started.append(
            WorkerHandle(
                "faults-default", "default", "--pool", "threads", "--concurrency", "2",
                "--beat", "--schedule", str(folder / "beat-schedule"), env=env,
            )
        )
        started.append(
            WorkerHandle(
                "faults-generation", "generation", "--pool", "threads", "--concurrency", str(GENERATION_THREADS),
                env=env,
            )
        )
        yield Cluster(redis_server, env, web, *started)
    finally:
        for worker in started:
            worker.stop()
        web.stop()
        redis_server.stop()


@dataclass
class Tenant:
    organization: Organization
    project: Project
    api: Api

    def body(self, text: str = SHORT_TEXT, *, variants: int = 2, max_new_tokens: int = 200) -> dict[str, object]:
        return {
            "project": str(self.project.pk),
            "template": "product-description",
            "inputs": {"product": "Linen tea towel", "features": text, "audience": "home cooks"},
            "num_variants": variants,
            "max_new_tokens": max_new_tokens,
            "seed": 1,
        }

    def submit(self, text: str = SHORT_TEXT, **kwargs: int) -> str:
        key = f"job-{random.getrandbits(64):x}"
        call = self.api.submit(self.body(text, **kwargs), key)
        assert call.status == 201, (call.status, call.body)
        return str(call.body["id"])


@pytest.fixture
def tenant(cluster: Cluster) -> Tenant:
    cluster.ensure_up()
    organization = OrganizationFactory()
    owner = UserFactory()
    MembershipFactory(organization=organization, user=owner, role=Role.OWNER)
    issued = create_api_key(actor=owner, organization=organization, name="fault suite", scope="write")
    return Tenant(organization, ProjectFactory(organization=organization), Api(cluster.web.base_url, issued.secret))


# --- the audit -------------------------------------------------------------------------------------


def wait_all_final(job_ids: list[str], timeout: float = 90) -> list[GenerationJob]:
    def final() -> list[GenerationJob] | None:
        jobs = list(GenerationJob.objects.filter(pk__in=job_ids))
        return jobs if len(jobs) == len(set(job_ids)) and all(j.status in FINAL for j in jobs) else None

    try:
        return wait_for(final, timeout, f"{len(job_ids)} jobs to reach a final state", interval=0.5)
    except AssertionError:
        states = list(GenerationJob.objects.filter(pk__in=job_ids).values_list("status", "attempts", "failure_reason"))
        raise AssertionError(f"not all jobs final after {timeout} s: {states}") from None


def audit(organization: Organization) -> dict[str, GenerationJob]:
    """Every job of the organization is final, stored once and billed once; the balances hold nothing."""
    jobs = {str(j.pk): j for j in GenerationJob.objects.filter(organization=organization)}
    charged = 0
    for job in jobs.values():
        assert job.status in FINAL, (job.pk, job.status)
        lines = list(LedgerEntry.objects.filter(job=job))
        kinds = sorted(line.kind for line in lines)
        by_kind = {line.kind: line for line in lines}
        variants = list(Variant.objects.filter(job=job))
        if job.status == JobStatus.SUCCEEDED:
            assert kinds == [LedgerKind.CHARGE, LedgerKind.RELEASE, LedgerKind.RESERVATION], (job.pk, kinds)
            assert by_kind[LedgerKind.CHARGE].tokens == job.prompt_tokens + job.completion_tokens > 0
            charged += by_kind[LedgerKind.CHARGE].tokens
            # exactly the requested variants, once each
            assert sorted((v.index, v.revision) for v in variants) == [(i, 0) for i in range(job.num_variants)]
            assert job.completion_tokens == sum(v.tokens for v in variants)
        else:
            assert kinds == [LedgerKind.RELEASE, LedgerKind.RESERVATION], (job.pk, job.status, kinds)
            assert len(variants) in (0, job.num_variants)
        assert by_kind[LedgerKind.RELEASE].tokens == -by_kind[LedgerKind.RESERVATION].tokens
    account = BillingAccount.objects.get(organization=organization)
    assert (account.tokens_reserved, account.active_jobs) == (0, 0)
    assert account.tokens_used_in_period == charged
    return jobs


def org_job_ids(organization: Organization) -> list[str]:
    return [str(pk) for pk in GenerationJob.objects.filter(organization=organization).values_list("pk", flat=True)]


def running_jobs(job_ids: list[str], at_least: int = 1) -> list[GenerationJob]:
    def running() -> list[GenerationJob] | None:
        jobs = list(GenerationJob.objects.filter(pk__in=job_ids, status=JobStatus.RUNNING))
        return jobs if len(jobs) >= at_least else None

    return wait_for(running, 60, f"{at_least} running jobs", interval=0.1)


# --- the fixes, one at a time, without processes (before the cluster starts) ----------------------


def test_a_last_attempt_waits_for_running_jobs_and_holds_new_ones_back():
    from generation.execution import SuspectIsolation

    isolation, events = SuspectIsolation(), []
    running, may_finish = threading.Event(), threading.Event()

    def job(name: str, alone: bool, started: threading.Event | None = None) -> None:
        with isolation.hold(alone=alone):
            events.append(f"{name} starts")
            if started:
                started.set()
                may_finish.wait(5)
            events.append(f"{name} ends")

    ordinary = threading.Thread(target=job, args=("ordinary", False, running))
    ordinary.start()
    running.wait(5)
    suspect = threading.Thread(target=job, args=("suspect", True))
    suspect.start()
    time.sleep(0.1)
    newcomer = threading.Thread(target=job, args=("newcomer", False))
    newcomer.start()
    time.sleep(0.1)
    assert events == ["ordinary starts"]  # the suspect waits for the running job, the newcomer for the suspect
    may_finish.set()
    for thread in (ordinary, suspect, newcomer):
        thread.join(5)
    assert events == ["ordinary starts", "ordinary ends", "suspect starts", "suspect ends", "newcomer starts",
                      "newcomer ends"]


def test_only_the_last_attempt_runs_alone(settings):
    from generation.execution import runs_alone

    settings.GENERATION_MAX_ATTEMPTS = 3
    assert [runs_alone(a) for a in range(4)] == [False, False, True, True]


def test_a_lost_database_connection_is_reconnected_and_the_step_repeated(monkeypatch):
    from django.db import OperationalError

    from core import jobs
    from generation import execution

    monkeypatch.setattr(jobs, "_DB_FIRST_WAIT_S", 0.01)  # with_db_retry lives in core.jobs, re-exported
    calls = []

    def step() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("terminating connection due to administrator command")
        return GenerationJob.objects.count()

    assert execution.with_db_retry(step) == 0
    assert len(calls) == 3

    def always_down() -> None:
        raise OperationalError("the server is gone")

    with pytest.raises(OperationalError):
        execution.with_db_retry(always_down)


def test_an_unreadable_cancel_flag_does_not_stop_generation(monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from generation import execution

    def unreachable(*args: object, **kwargs: object) -> None:
        raise RedisConnectionError("Error 111 connecting to Redis")

    monkeypatch.setattr(execution.cache, "get", unreachable)
    stop = execution.StopCheck("job", deadline=time.time() + 60)
    assert stop() is None
    assert execution.StopCheck("job", deadline=time.time() - 1)() == "deadline"


def test_a_submission_is_accepted_while_the_broker_is_down(monkeypatch):
    from kombu.exceptions import OperationalError as BrokerUnavailable

    def refused(*args: object, **kwargs: object) -> None:
        raise BrokerUnavailable("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(dispatch.app, "send_task", refused)
    organization = OrganizationFactory()
    project = ProjectFactory(organization=organization)
    job, created = services.submit_generation(
        organization=organization,
        project=project,
        version=services.resolve_version(organization, "product-description"),
        inputs={"product": "Linen tea towel"},
        params={"num_variants": 1, "max_new_tokens": 20, "seed": 1},
    )
    assert created and GenerationJob.objects.get(pk=job.pk).status == JobStatus.QUEUED
    assert LedgerEntry.objects.filter(job=job, kind=LedgerKind.RESERVATION).count() == 1
    assert dispatch.enqueue(job.pk) is False


def test_the_reconciler_enqueues_a_job_once_per_interval_and_attempt(settings):
    from datetime import timedelta

    from django.utils import timezone

    from generation.execution import reconcile

    organization = OrganizationFactory()
    project = ProjectFactory(organization=organization)
    with mock.patch("generation.dispatch.enqueue", return_value=True):
        job, _ = services.submit_generation(
            organization=organization,
            project=project,
            version=services.resolve_version(organization, "product-description"),
            inputs={"product": "Linen tea towel"},
            params={"num_variants": 1, "max_new_tokens": 20, "seed": 1},
        )
    GenerationJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    with mock.patch("generation.dispatch.enqueue", return_value=True) as enqueue:
        assert reconcile() == [str(job.pk)]
        assert reconcile() == []  # still waiting for the first re-enqueue: not again
        GenerationJob.objects.filter(pk=job.pk).update(
            status=JobStatus.RUNNING, attempts=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        assert reconcile() == [str(job.pk)]  # a new attempt lost its worker: enqueued again at once
    assert enqueue.call_count == 2
    with mock.patch("generation.dispatch.enqueue", return_value=False):
        GenerationJob.objects.filter(pk=job.pk).update(attempts=2)
        assert reconcile() == []  # the broker refused: nothing marked, the next run tries again
    with mock.patch("generation.dispatch.enqueue", return_value=True):
        assert reconcile() == [str(job.pk)]


# --- the cluster ----------------------------------------------------------------------------------


def test_suite_processes_use_the_stub_model_not_a_real_one(cluster: Cluster, tenant: Tenant):
    """The faults below run on the stub: what reached the model comes back as the output."""
    job_id = tenant.submit("a quick brown fox", variants=1)
    (job,) = wait_all_final([job_id])
    assert job.status == JobStatus.SUCCEEDED and job.model_name == "stub"
    assert "features: a quick brown fox" in job.variants.get().text


# --- worker deaths ---------------------------------------------------------------------------------


def test_whole_worker_sigkill_mid_job_every_job_finishes_once_with_one_charge(cluster: Cluster, tenant: Tenant):
    # given: more long jobs than the worker has threads, some of them running
    ids = [tenant.submit(LONG_TEXT) for _ in range(GENERATION_THREADS + 2)]
    hit = running_jobs(ids, at_least=2)
    # when: the whole worker process is SIGKILLed mid-job and its supervisor starts it again
    cluster.generation.kill()
    cluster.generation.restart()
    # then: every accepted job finishes, the ones that were hit on a second attempt
    jobs = wait_all_final(ids)
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs), [(j.status, j.failure_reason) for j in jobs]
    attempts = {str(j.pk): j.attempts for j in jobs}
    assert all(attempts[str(j.pk)] == 2 for j in hit), attempts
    audit(tenant.organization)


@contextlib.contextmanager
def prefork_worker(cluster: Cluster, concurrency: int) -> Iterator[WorkerHandle]:
    """The generation queue served by a prefork worker only (the threads worker is stopped meanwhile)."""
    cluster.generation.stop()
    worker = WorkerHandle(
        "faults-prefork", "generation", "--pool", "prefork", "--concurrency", str(concurrency), env=cluster.env
    )
    try:
        yield worker
    finally:
        worker.stop()
        cluster.generation.restart()


def test_prefork_child_sigkill_mid_job_is_redelivered_and_charged_once(cluster: Cluster, tenant: Tenant):
    with prefork_worker(cluster, concurrency=2) as worker:
        # given: long jobs, two of them running in the worker's two pool processes
        ids = [tenant.submit(LONG_TEXT) for _ in range(4)]
        victim = running_jobs(ids)[0]
        # job.worker is "<host>:<thread id>"; a pool process runs its task in its main thread, whose id is its pid
        child = int(victim.worker.rsplit(":", 1)[1])
        assert child in child_pids(worker.process.pid)
        # when: that pool process is SIGKILLed mid-job
        kill_process(child)
        # then: the worker itself lives on (it forks a new child), and every job finishes once
        jobs = wait_all_final(ids)
        assert worker.process.poll() is None
        assert child not in child_pids(worker.process.pid)
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs), [(j.status, j.failure_reason) for j in jobs]
    assert next(j for j in jobs if j.pk == victim.pk).attempts == 2
    audit(tenant.organization)


def test_job_that_kills_its_worker_every_time_is_failed_after_max_attempts_and_released(
    cluster: Cluster, tenant: Tenant
):
    with Supervisor(cluster.generation) as supervisor:
        # given: ordinary jobs running, and a poison job that arrives beside them
        others = [tenant.submit(LONG_TEXT, variants=1) for _ in range(GENERATION_THREADS - 1)]
        running_jobs(others, at_least=len(others))
        poison = tenant.submit(f"{SHORT_TEXT} {KILL_WORKER_MARKER}")
        # when: it kills the worker each time it runs, and the supervisor restarts the worker
        jobs = {str(j.pk): j for j in wait_all_final([poison, *others], timeout=150)}
    # then: it is failed after the bounded attempts, with a reason, and nothing is charged for it
    failed = jobs[poison]
    assert failed.status == JobStatus.FAILED
    assert failed.attempts == MAX_ATTEMPTS
    assert f"after {MAX_ATTEMPTS} attempts" in failed.failure_reason
    assert supervisor.restarts == MAX_ATTEMPTS
    assert not Variant.objects.filter(job=failed).exists()
    # and the jobs that shared its worker when it first ran still complete: hit, then run apart from it
    assert all(jobs[i].status == JobStatus.SUCCEEDED for i in others), [
        (jobs[i].status, jobs[i].attempts, jobs[i].failure_reason) for i in others
    ]
    assert all(2 <= jobs[i].attempts <= MAX_ATTEMPTS for i in others), [jobs[i].attempts for i in others]
    audit(tenant.organization)


def test_hung_job_is_stopped_by_its_deadline_and_the_worker_takes_the_next(cluster: Cluster, tenant: Tenant):
    # given: hung jobs on every thread of the worker, and an ordinary job queued behind them
    hung = [tenant.submit(f"{SHORT_TEXT} {HANG_MARKER}", variants=1) for _ in range(GENERATION_THREADS)]
    running_jobs(hung, at_least=GENERATION_THREADS)
    queued = tenant.submit(SHORT_TEXT)
    # when: the deadline passes
    jobs = {str(j.pk): j for j in wait_all_final([*hung, queued], timeout=JOB_DEADLINE_S * 4)}
    # then: the hung jobs are failed with the reason, released, and the queued one ran after them
    for job_id in hung:
        job = jobs[job_id]
        assert job.status == JobStatus.FAILED
        assert "deadline" in job.failure_reason
        assert (job.finished_at - job.started_at).total_seconds() >= JOB_DEADLINE_S
        assert {v.finish_reason for v in Variant.objects.filter(job=job)} == {"deadline"}
    assert jobs[queued].status == JobStatus.SUCCEEDED
    assert jobs[queued].started_at > min(jobs[i].finished_at for i in hung)
    audit(tenant.organization)


# --- Redis ------------------------------------------------------------------------------------------


def test_redis_crash_and_restart_loses_no_accepted_job(cluster: Cluster, tenant: Tenant):
    # given: jobs running and queued
    before = [tenant.submit(LONG_TEXT) for _ in range(GENERATION_THREADS + 2)]
    running_jobs(before, at_least=2)
    # when: Redis (broker, cache, heartbeats) crashes; clients keep submitting while it is down
    cluster.redis.crash()
    during = [tenant.api.submit(tenant.body(), f"during-{i}") for i in range(3)]
    time.sleep(2)
    cluster.redis.start()
    # then: submissions during the outage were accepted (the job is committed; the reconciler enqueues it)
    assert [c.status for c in during] == [201] * 3, [(c.status, c.body) for c in during]
    # and a client retrying its Idempotency-Key gets the same job back, never a second one
    accepted = [tenant.api.submit_until_accepted(tenant.body(), f"during-{i}") for i in range(3)]
    assert accepted == [c.body["id"] for c in during]
    # and every accepted job finishes exactly once, with one charge
    jobs = wait_all_final(before + accepted, timeout=120)
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs), [(j.status, j.failure_reason) for j in jobs]
    assert set(audit(tenant.organization)) == set(before + accepted)


def test_job_committed_but_never_enqueued_is_run_by_the_reconciler(cluster: Cluster, tenant: Tenant):
    # given: a job committed with its reservation, whose enqueue never happened (the web process died in between)
    version = services.resolve_version(tenant.organization, "product-description")
    with mock.patch("generation.dispatch.enqueue") as enqueue:
        job, created = services.submit_generation(
            organization=tenant.organization,
            project=tenant.project,
            version=version,
            inputs={"product": "Linen tea towel", "features": SHORT_TEXT},
            params={"num_variants": 2, "max_new_tokens": 50, "seed": 5},
        )
    assert created and enqueue.call_count == 1
    assert LedgerEntry.objects.filter(job=job, kind=LedgerKind.RESERVATION).exists()
    # then: the reconciler finds it queued too long and it runs, once
    (job,) = wait_all_final([str(job.pk)], timeout=REQUEUE_AFTER_S + 30)
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    assert job.attempts == 1
    assert (job.started_at - job.created_at).total_seconds() >= REQUEUE_AFTER_S
    audit(tenant.organization)


# --- Postgres ------------------------------------------------------------------------------------


def terminate_app_connections() -> tuple[float, float, int]:
    """``pg_terminate_backend`` every connection of the suite's processes (web, workers, beat).

    Only theirs: the test process's own threads (a live server of browser tests) and the
    session's workers keep theirs. Returns when the server has ended them: the window in
    which a request may fail.
    """
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND application_name = %s",
            [APPLICATION_NAME],
        )
        pids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])

    def gone() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
            return cursor.fetchone()[0] == 0

    wait_for(gone, 10, "the terminated connections to end", interval=0.01)
    return started, time.monotonic(), len(pids)


def test_terminated_postgres_connections_fail_only_in_flight_requests_and_the_app_recovers(
    cluster: Cluster, tenant: Tenant
):
    web_pids = sorted(child_pids(cluster.web.process.pid))
    worker_pids = (cluster.generation.process.pid, cluster.default.process.pid)
    submitted: list[str] = []
    stop = threading.Event()

    def client(seed: int) -> None:
        # 70% reads (list, detail), 30% submissions, as the load script mixes them
        rng = random.Random(seed)
        while not stop.is_set():
            roll = rng.random()
            if roll < 0.3:
                text = rng.choice([SHORT_TEXT, LONG_TEXT])
                call = tenant.api.submit(tenant.body(text), f"load-{rng.getrandbits(64):x}")
                if call.status == 201:
                    submitted.append(call.body["id"])
            elif roll < 0.6 or not submitted:
                tenant.api.call("GET", "/api/v1/jobs/?page_size=10")
            else:
                tenant.api.call("GET", f"/api/v1/jobs/{rng.choice(submitted)}/")
            time.sleep(0.1)  # ~30 requests/s in all: about what the suite's 4 generation threads keep up with

    clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for thread in clients:
        thread.start()
    windows = []
    try:
        for _ in range(3):
            time.sleep(3)
            windows.append(terminate_app_connections())
        time.sleep(4)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
    # the faults hit live connections of the web server and the workers
    assert all(killed > 0 for _, _, killed in windows)

    def in_flight(call: Call) -> bool:
        return any(call.started <= end and call.ended >= start for start, end, _ in windows)

    calls = list(tenant.api.calls)
    # A 429 is admission control doing its job (the plan's concurrent jobs, when the backlog grows), not a failure.
    failures = [c for c in calls if c.status not in (200, 201, 429)]
    assert all(c.status >= 500 or c.status == 0 for c in failures), [(c.path, c.status, c.body) for c in failures]
    assert not [c for c in failures if not in_flight(c)], [(c.path, c.status, c.body) for c in failures]
    # recovered without a restart: the same processes serve the later requests, and the jobs complete
    after = [c for c in calls if c.started > windows[-1][1]]
    assert len(after) > 20 and all(c.status in (200, 201, 429) for c in after)
    assert sum(c.status == 201 for c in after) > 0
    print(
        f"pg_terminate_backend x{len(windows)} ({[k for _, _, k in windows]} connections): {len(calls)} requests, "
        f"{len(failures)} failed in flight, {sum(c.status == 429 for c in calls)} admission 429s"
    )
    assert sorted(child_pids(cluster.web.process.pid)) == web_pids
    assert (cluster.generation.process.pid, cluster.default.process.pid) == worker_pids
    assert cluster.generation.process.poll() is None and cluster.default.process.poll() is None
    # every job, also one whose submission failed in flight after its commit, finishes once
    jobs = wait_all_final(org_job_ids(tenant.organization), timeout=120)
    assert set(submitted) <= {str(j.pk) for j in jobs}
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs), [(j.status, j.failure_reason) for j in jobs]
    # the workers reconnected and went on: no job needed another attempt for a lost connection
    assert [j.attempts for j in jobs] == [1] * len(jobs)
    audit(tenant.organization)
