"""GET /metrics (config/metrics.py) on real Postgres, Redis, gunicorn and a real worker; docker/prometheus and
docker/grafana checked offline (promtool when installed: bin/install-promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from django.conf import settings
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import WebServer, current_database_url
from billing.models import BillingAccount
from config import metrics
from generation import registry, services
from generation.models import GenerationJob, JobStatus
from recommendations.models import RecommendationJobStatus
from srcroot import REPO_ROOT
from tests.support.generation_factories import GenerationJobFactory
from tests.support.recommendation_factories import RecommendationJobFactory
from workers.celery import QUEUES
from workers.celery import app as celery_app
from workers.contract import GenerationRequest
from workers.heartbeat import beat, forget
from workers.stub import HANG_MARKER, StubEngine

DOCKER_DIR = REPO_ROOT / "docker"
PROMETHEUS_DIR = DOCKER_DIR / "prometheus"
GRAFANA_DIR = DOCKER_DIR / "grafana"
#: Series Prometheus makes itself for every target, not on /metrics.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: Client | None = None, **extra: Any) -> Samples:
    response = (client or Client()).get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def families(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


# --- who may read it ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_refuse_a_caller_outside_the_allowed_networks(client, cast):
    # a signed-in owner is not an operator: the metrics are the installation's, not an organization's
    client.force_login(cast.owner)
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "METRICS_ALLOWED_NETWORKS" in response.json()["detail"]
    assert b"loom_" not in response.content


@pytest.mark.django_db
def test_metrics_refuse_a_local_request_that_came_through_a_proxy(client):
    # a reverse proxy on this host forwards every outsider from 127.0.0.1: its header gives it away
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.json()["detail"]


@pytest.mark.django_db
def test_metrics_serve_a_configured_internal_network_and_ipv4_mapped_loopback(client):
    with override_settings(METRICS_ALLOWED_NETWORKS=["10.20.0.0/16"]):
        assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="10.21.3.4").status_code == 403
        assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


@pytest.mark.django_db
@override_settings(METRICS_TOKEN="s3cret-metrics-token")
def test_with_a_token_only_the_token_opens_the_metrics_from_anywhere(client):
    # without it, or with another, even loopback is refused
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-tokeN").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-metrics-token").status_code == 403
    # with it, from outside and through a proxy too
    samples = scrape(
        client, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.7",
        HTTP_AUTHORIZATION="Bearer s3cret-metrics-token",
    )
    assert value(samples, "loom_metrics_source_up", source="database") == 1


@pytest.mark.django_db
def test_metrics_accept_get_only(client):
    assert client.post("/metrics").status_code == 405


# --- what it reports ---------------------------------------------------------------------------

#: The families /metrics always has (labelled ones once a label value has been seen).
ALWAYS = {
    "loom_queue_messages", "loom_queue_oldest_message_age_seconds", "loom_queue_workers", "loom_queue_ready_workers",
    "loom_jobs", "loom_jobs_oldest_queued_age_seconds", "loom_generation_tokens_per_second",
    "loom_recommendation_jobs_succeeded_recent", "loom_billing_open_holds", "loom_billing_held_tokens",
    "loom_billing_accounts_holding", "loom_model_reachable", "loom_metrics_source_up", "loom_metrics_collect_seconds",
    "loom_rate_limit_refusals_total", "django_http_requests_before_middlewares_total",
    "django_http_responses_total_by_status_view_method_total",
    "django_http_requests_latency_seconds_by_view_method_bucket",
    "django_db_execute_total",
}


@pytest.mark.django_db
def test_metrics_report_every_family_with_every_source_up(client):
    registry.default_model()  # the serving model a flushed test database may lack; never absent in production
    client.get("/healthz")  # a request of a view: the per-view families have a label value
    samples = scrape(client)
    assert ALWAYS <= families(samples), sorted(ALWAYS - families(samples))
    for source in ("broker", "workers", "database"):
        assert value(samples, "loom_metrics_source_up", source=source) == 1
    for queue in QUEUES:
        assert value(samples, "loom_queue_messages", queue=queue) is not None
    assert value(samples, "django_http_responses_total_by_status_view_method_total",
                 method="GET", status="200", view="healthz") >= 1


@pytest.mark.django_db
def test_an_unreachable_redis_is_reported_and_the_database_still_is(client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0", CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
        samples = scrape(client)
    assert value(samples, "loom_metrics_source_up", source="broker") == 0
    assert value(samples, "loom_metrics_source_up", source="workers") == 0
    assert value(samples, "loom_metrics_source_up", source="database") == 1
    assert value(samples, "loom_jobs", kind="generation", status="queued") is not None


@pytest.mark.django_db
def test_metrics_name_no_organization(client, cast):
    GenerationJobFactory(project=cast.project)
    GenerationJobFactory(project=cast.outsider_project, status=JobStatus.RUNNING)
    body = client.get("/metrics").content.decode()
    for identifier in (cast.org.name, cast.org.slug, str(cast.org.pk), cast.outsider_org.name, cast.owner.email,
                       cast.project.slug, cast.outsider_project.slug):
        assert not re.search(rf"\b{re.escape(identifier)}\b", body), identifier


@pytest.mark.django_db
def test_jobs_by_state_count_every_organizations_rows(client, cast):
    before = scrape(client)
    GenerationJobFactory.create_batch(3, project=cast.project, status=JobStatus.QUEUED)
    GenerationJobFactory(project=cast.outsider_project, status=JobStatus.QUEUED)
    GenerationJobFactory(project=cast.project, status=JobStatus.FAILED)
    RecommendationJobFactory(project=cast.project, status=RecommendationJobStatus.RUNNING)
    after = scrape(client)

    def grew(kind: str, status: str) -> float:
        labels = {"kind": kind, "status": status}
        return value(after, "loom_jobs", **labels) - value(before, "loom_jobs", **labels)

    assert grew("generation", "queued") == 4
    assert grew("generation", "failed") == 1
    assert grew("generation", "succeeded") == 0
    assert grew("recommendation", "running") == 1
    assert value(after, "loom_jobs_oldest_queued_age_seconds", kind="generation") >= 0


@pytest.mark.django_db
def test_the_oldest_queued_job_age_reads_its_creation_time(client, cast):
    GenerationJobFactory(project=cast.project, status=JobStatus.QUEUED, created_at=timezone.now() - timedelta(hours=2))
    samples = scrape(client)
    assert value(samples, "loom_jobs_oldest_queued_age_seconds", kind="generation") >= 2 * 3600


@pytest.mark.django_db
def test_generation_speed_and_time_to_first_token_come_from_recently_finished_jobs(client, cast):
    now = timezone.now()
    for first_token_ms, tokens in ((100, 300), (200, 600), (300, 900), (4000, 1200)):
        GenerationJobFactory(
            project=cast.project, status=JobStatus.SUCCEEDED, created_at=now - timedelta(seconds=60),
            finished_at=now - timedelta(seconds=10), first_token_ms=first_token_ms, completion_tokens=tokens,
        )
    # long finished: outside the window
    GenerationJobFactory(
        project=cast.project, status=JobStatus.SUCCEEDED, created_at=now - timedelta(hours=3),
        finished_at=now - timedelta(hours=2), first_token_ms=99999, completion_tokens=10**6,
    )
    samples = scrape(client)
    assert value(samples, "loom_generation_tokens_per_second") == pytest.approx(3000 / metrics.GENERATION_WINDOW_S)
    assert value(samples, "loom_generation_time_to_first_token_seconds", quantile="0.5") == pytest.approx(0.25)
    p95 = value(samples, "loom_generation_time_to_first_token_seconds", quantile="0.95")
    assert 0.3 < p95 <= 4.0


@pytest.mark.django_db
def test_recommendation_job_durations_are_quantiles_of_recent_successes(client, cast):
    now = timezone.now()
    for minutes in (1, 2, 3, 10):
        RecommendationJobFactory(
            project=cast.project, started_at=now - timedelta(minutes=minutes + 1),
            finished_at=now - timedelta(minutes=1),
        )
    RecommendationJobFactory(project=cast.project, status=RecommendationJobStatus.FAILED,
                             started_at=now - timedelta(hours=1), finished_at=now)
    samples = scrape(client)
    assert value(samples, "loom_recommendation_job_duration_seconds", quantile="0.5") == pytest.approx(150)
    assert value(samples, "loom_recommendation_jobs_succeeded_recent") == 4


@pytest.mark.django_db
def test_billing_holds_count_admitted_unsettled_jobs(client, cast):
    before = scrape(client)
    version = services.resolve_version(cast.org, "product-description")
    services.submit_generation(
        organization=cast.org, project=cast.project, version=version,
        inputs={"product": "Linen tea towel", "features": "linen", "audience": "cooks"},
        params={"num_variants": 2, "max_new_tokens": 50, "seed": 1},
    )
    after = scrape(client)
    account = BillingAccount.objects.get(organization=cast.org)
    assert account.tokens_reserved > 0 and account.active_jobs == 1
    assert value(after, "loom_billing_open_holds") - value(before, "loom_billing_open_holds") == 1
    held = value(after, "loom_billing_held_tokens") - value(before, "loom_billing_held_tokens")
    assert held == account.tokens_reserved
    assert value(after, "loom_billing_accounts_holding") >= 1


@pytest.mark.django_db
def test_rate_limit_refusals_are_counted_by_the_limit_that_refused(client):
    before = scrape(client)
    with override_settings(API_RATE_LIMIT_ANONYMOUS_PER_MINUTE=2):
        answers = [client.get("/api/v1/me", REMOTE_ADDR="192.0.2.44").status_code for _ in range(4)]
    assert answers == [401, 401, 429, 429]
    after = scrape(client)
    refused = value(after, "loom_rate_limit_refusals_total", scope="address")
    assert refused - value(before, "loom_rate_limit_refusals_total", scope="address") == 2
    assert value(after, "loom_rate_limit_refusals_total", scope="key") == value(
        before, "loom_rate_limit_refusals_total", scope="key"
    )


@pytest.fixture
def test_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Celery queue no worker consumes (a session worker may be running), reported as one of the app's."""
    name = f"metrics-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(metrics, "QUEUES", (*QUEUES, name))
    yield name
    # and kombu's routing tables of the queue
    bindings = [f"{settings.CELERY_KEY_PREFIX}_kombu.{table}.{name}" for table in ("binding", "binding_permanent")]
    metrics._broker(settings.CELERY_BROKER_URL).delete(*metrics._queue_keys(name), *bindings)


@pytest.mark.django_db
def test_queue_depth_and_age_read_the_messages_waiting_in_redis(client, test_queue):
    # given: an empty queue
    samples = scrape(client)
    assert value(samples, "loom_queue_messages", queue=test_queue) == 0
    assert value(samples, "loom_queue_oldest_message_age_seconds", queue=test_queue) == 0
    # when: three tasks are sent to it, one of them with a priority (kombu keeps a list per priority step)
    sent_from = time.time()
    for priority in (None, None, 9):
        celery_app.send_task("workers.ping", queue=test_queue, priority=priority, ignore_result=True)
    sent_until = time.time()
    # then: /metrics counts all three, and the oldest one's send time is the one stamped on it
    samples = scrape(client)
    assert value(samples, "loom_queue_messages", queue=test_queue) == 3
    waiting, oldest = metrics.queue_backlog((test_queue,))[test_queue]
    assert waiting == 3 and sent_from <= oldest <= sent_until
    assert value(samples, "loom_queue_oldest_message_age_seconds", queue=test_queue) >= 0
    assert value(samples, "loom_metrics_source_up", source="broker") == 1


@pytest.mark.django_db
def test_live_workers_and_engine_occupancy_come_from_the_heartbeats(client):
    hostname = f"metrics-{uuid.uuid4().hex[:8]}@localhost"
    before = scrape(client)
    engines = [{"kind": "stub", "model": "stub", "running": 3, "waiting": 1, "capacity": 4}]
    beat(hostname, ["generation", "default"], ready={"generation": False, "default": True}, engines=engines)
    try:
        after = scrape(client)
    finally:
        forget(hostname)
    labels = {"worker": hostname, "kind": "stub", "model": "stub"}
    assert value(after, "loom_engine_batch_occupancy_ratio", **labels) == 0.75
    assert value(after, "loom_engine_running_requests", **labels) == 3
    assert value(after, "loom_engine_waiting_requests", **labels) == 1
    assert value(after, "loom_engine_capacity", **labels) == 4
    for queue in ("generation", "default"):
        assert value(after, "loom_queue_workers", queue=queue) == value(before, "loom_queue_workers", queue=queue) + 1
    assert value(after, "loom_queue_ready_workers", queue="default") >= 1


def test_the_stub_engine_reports_requests_in_flight_and_waiting():
    engine = StubEngine(token_s=0, faults=True, max_concurrent=2)
    release = threading.Event()
    hang = GenerationRequest(
        messages=[{"role": "user", "content": HANG_MARKER}], max_new_tokens=5,
        should_stop=lambda: "canceled" if release.is_set() else None,
    )
    futures = [engine.submit(hang) for _ in range(3)]
    assert engine.occupancy() == {"kind": "stub", "model": "stub", "running": 2, "waiting": 1, "capacity": 2}
    release.set()
    assert [f.result(timeout=30).finish_reason for f in futures] == ["canceled"] * 3
    assert engine.occupancy()["running"] == engine.occupancy()["waiting"] == 0


@pytest.mark.django_db
def test_model_reachability_is_reported_per_active_model(client):
    default = registry.default_model()  # the row a flushed database may lack
    samples = scrape(client)
    assert value(samples, "loom_model_reachable", model=default.slug, backend=default.backend_kind) == 1


# --- for real: a job on a real worker, and gunicorn's processes added up ------------------------


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_scrape_during_a_real_job_finds_the_counters_moving(cast, key_for, generation_worker):
    # given: Acme's API key and a first scrape
    client, _, _ = key_for("write")
    metrics_client = Client()
    before = scrape(metrics_client)
    # when: a job is submitted through the API and runs on the real worker
    body = {"project": str(cast.project.pk), "template": "email-subject-lines", "inputs": {"topic": "spring sale"},
            "num_variants": 2, "max_new_tokens": 24, "seed": 5}
    response = client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    job_id = response.json()["id"]
    # The job's row locked while /metrics is read: the worker cannot finish it meanwhile (a short job on a
    # warm worker could otherwise end before the scrape counts it in flight), and reads do not wait.
    with transaction.atomic():
        locked = GenerationJob.objects.select_for_update().get(pk=job_id)
        assert locked.finished_at is None, "the job ended before its row could be locked"
        during = scrape(metrics_client)
    job = _wait_for(lambda: GenerationJob.objects.filter(pk=job_id, finished_at__isnull=False).first(), 180, "the job")
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason

    def engine_reported() -> tuple[Samples, dict[str, str]] | None:
        samples = scrape(metrics_client)
        engines = [dict(labels) for name, labels in samples
                   if name == "loom_engine_capacity" and ("worker", generation_worker.hostname) in labels]
        return (samples, engines[0]) if engines else None

    # the worker's next heartbeat carries its engine (made for the job, if the warm-up had not)
    after, engine = _wait_for(engine_reported, 3 * settings.WORKER_HEARTBEAT_INTERVAL_S, "the engine's heartbeat")
    # then: the request counters moved, the job went through the states, its tokens and first token show
    created = {"method": "POST", "status": "201", "view": "api:job-list"}
    assert value(after, "django_http_responses_total_by_status_view_method_total", **created) == (
        (value(before, "django_http_responses_total_by_status_view_method_total", **created) or 0) + 1
    )
    in_flight = sum(value(during, "loom_jobs", kind="generation", status=s) for s in ("queued", "running"))
    assert in_flight >= 1
    succeeded = value(after, "loom_jobs", kind="generation", status="succeeded")
    assert succeeded == value(before, "loom_jobs", kind="generation", status="succeeded") + 1
    assert value(after, "loom_generation_tokens_per_second") >= job.completion_tokens / metrics.GENERATION_WINDOW_S > 0
    assert value(after, "loom_generation_time_to_first_token_seconds", quantile="0.5") > 0
    assert value(after, "loom_queue_ready_workers", queue="generation") >= 1
    assert value(after, "loom_engine_capacity", **engine) > 0


@pytest.fixture
def token_web(django_db_setup: None, django_db_blocker: Any) -> Iterator[WebServer]:
    """gunicorn as deployed, two processes, with a metrics token."""
    with django_db_blocker.unblock():
        env = {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": current_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "METRICS_TOKEN": "gunicorn-metrics-token",
        }
    server = WebServer(env, workers=2, threads=2, name="metrics-web", unset=("PROMETHEUS_MULTIPROC_DIR",))
    server.start()
    yield server
    server.stop()


@pytest.mark.django_db
def test_gunicorn_processes_counters_are_added_up_in_one_scrape(token_web):
    url = f"{token_web.base_url}/metrics"
    headers = {"Authorization": "Bearer gunicorn-metrics-token"}
    assert requests.get(url, timeout=30).status_code == 403

    def readyz_count() -> float:
        # /readyz, not /healthz: a start-up poll of /healthz that timed out may still be counted late
        response = requests.get(url, headers=headers, timeout=30)
        assert response.status_code == 200
        answers = "django_http_responses_total_by_status_view_method_total"
        samples = parse(response.text).items()
        return sum(v for (name, labels), v in samples if name == answers and ("view", "readyz") in labels)

    before = readyz_count()
    for _ in range(30):  # a new connection each time: either process may take it
        assert requests.get(f"{token_web.base_url}/readyz", timeout=30).status_code in (200, 503)
    # then: whichever process answers a scrape, it counts every process's requests
    assert [readyz_count() - before for _ in range(6)] == [30] * 6
    # because each process writes its counters to the folder gunicorn's config made (multiprocess mode)
    assert _metric_files(token_web), "no process of the server wrote multiprocess counters"


def _metric_files(server: WebServer) -> list[Path]:
    """The multiprocess counter files of the server's processes (in the folder platform/config/gunicorn.py made)."""
    children = _children(server)
    folders = Path(tempfile.gettempdir()).glob("loom-metrics-*")
    return [f for folder in folders for f in folder.glob("counter_*.db") if int(f.stem.split("_")[-1]) in children]


def _children(server: WebServer) -> set[int]:
    assert server.process is not None
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server.process.pid)], capture_output=True, text=True,
                           check=False)
    return {int(pid) for pid in found.stdout.split()}


# --- docker/: Prometheus, alert rules, Grafana ------------------------------------------------------


def promtool() -> str:
    found = shutil.which("promtool") or (str(REPO_ROOT / "var/tools/promtool")
                                         if (REPO_ROOT / "var/tools/promtool").exists() else None)
    if found is None:
        pytest.skip("promtool not installed: bin/install-promtool (Debian's prometheus package)")
    return found


def test_prometheus_config_is_valid_and_scrapes_web_metrics_with_the_token_secret(tmp_path):
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (target,) = [t for group in job["static_configs"] for t in group["targets"]]
    compose = yaml.safe_load((DOCKER_DIR / "compose.yaml").read_text())
    services = compose["services"]
    web_env = services["web"]["environment"]
    # the host it scrapes is the web service, on its port, and a host Django accepts
    host, port = target.split(":")
    assert host == "web" and port == "8000"
    assert host in web_env["ALLOWED_HOSTS"].split(",")
    # it sends the secret web reads as METRICS_TOKEN
    secret = Path(job["authorization"]["credentials_file"])
    assert secret.parent == Path("/run/secrets")
    assert web_env["METRICS_TOKEN_FILE"] == str(secret)
    assert secret.name in services["web"]["secrets"] and secret.name in services["prometheus"]["secrets"]
    # its config and rule files are mounted where it reads them
    mounts = dict(volume.split(":")[:2] for volume in services["prometheus"]["volumes"] if volume.startswith("./"))
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./prometheus/alerts.yml"] == "/etc/prometheus/" + config["rule_files"][0]
    for source in mounts:
        assert (DOCKER_DIR / source).is_file(), source
    # and promtool accepts it, with the token file it names
    binary = promtool()
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    (tmp_path / "token").write_text("t")
    job["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run([binary, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid_and_their_unit_tests_pass():
    binary = promtool()
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        result = subprocess.run([binary, *command], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_cover_the_failures_an_operator_must_hear_of():
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    assert "loom_queue_oldest_message_age_seconds" in alerts["LoomQueueBackingUp"]
    assert "loom_queue_workers" in alerts["LoomNoWorkerForQueue"]
    assert 'status=~"5.."' in alerts["LoomHighErrorRate"]
    assert "loom_model_reachable" in alerts["LoomModelUnreachable"]
    tested = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())
    fired = {case["alertname"] for test in tested["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == set(alerts), "every alert has a unit test in which it fires"


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                 "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: not label names, label values, functions or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in _PROMQL_WORDS:
            names.add(word)
    return names


def test_promql_metric_names_reads_only_metric_names():
    expr = ('histogram_quantile(0.95, sum by (le, view) (rate(x_bucket{status=~"5..", view="a b"}[$__rate_interval])))'
            ' / on(view) group_left sum without (pod) (y_total) > bool 0.5 and z')
    assert promql_metric_names(expr) == {"x_bucket", "y_total", "z"}


@pytest.mark.django_db
def test_every_dashboard_panel_reads_metrics_that_the_endpoint_exposes(client):
    dashboard = json.loads((GRAFANA_DIR / "loom.json").read_text())
    datasource = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    # given: a scrape after one request and a worker heartbeat with an engine (families with labels appear
    # once a label value has been seen), and the default serving model (a flushed test database may lack it)
    registry.default_model()
    client.get("/healthz")
    hostname = f"dashboard-{uuid.uuid4().hex[:8]}@localhost"
    beat(hostname, ["generation"], engines=[{"kind": "stub", "model": "stub", "running": 1, "waiting": 0,
                                             "capacity": 2}])
    GenerationJobFactory(status=JobStatus.SUCCEEDED, finished_at=timezone.now(), first_token_ms=150)
    RecommendationJobFactory(started_at=timezone.now() - timedelta(minutes=1), finished_at=timezone.now())
    try:
        exposed = families(scrape(client)) | PROMETHEUS_SYNTHETIC
    finally:
        forget(hostname)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"]), "panel ids are unique"
    read: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == panel["datasource"]["uid"] == source["uid"], panel["title"]
            names = promql_metric_names(target["expr"])
            assert names and names <= exposed, f"{panel['title']}: {sorted(names - exposed)} is not on /metrics"
            read |= names
    # and the dashboard shows what the issue asks for
    for needed in ("django_http_requests_total_by_view_transport_method_total", "loom_queue_messages",
                   "loom_queue_oldest_message_age_seconds", "loom_jobs", "loom_generation_tokens_per_second",
                   "loom_generation_time_to_first_token_seconds", "loom_engine_batch_occupancy_ratio",
                   "loom_recommendation_job_duration_seconds", "loom_rate_limit_refusals_total",
                   "loom_billing_open_holds", "loom_queue_workers", "loom_model_reachable"):
        assert needed in read, needed


def test_grafana_provisions_the_dashboard_it_mounts():
    services = yaml.safe_load((DOCKER_DIR / "compose.yaml").read_text())["services"]
    grafana, prometheus = services["grafana"], services["prometheus"]
    assert grafana["profiles"] == prometheus["profiles"] == ["monitoring"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("./"))
    for source in mounts:
        assert (DOCKER_DIR / source).exists(), source
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/loom.yml").read_text())["providers"][0]
    assert Path(mounts["./grafana/loom.json"]).parent == Path(provider["options"]["path"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    # published on loopback only: neither has a login an outsider should reach
    for service in (grafana, prometheus):
        assert all(str(port).startswith("127.0.0.1:") for port in service["ports"])
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
