"""Readiness per queue: /readyz, the worker heartbeat while the model loads, and the queued job's page.

Heartbeats are written into the real Redis of the test run (its own key prefix), as workers write them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from unittest import mock

import pytest
from django.test import override_settings

from bench.harness import Worker as WorkerHandle
from generation import services
from generation.execution import run_job
from generation.models import GenerationJob, JobStatus
from srcroot import REPO_ROOT
from tests.support.web_generation import job_for
from workers.heartbeat import WorkerBeat, _client, _key_prefix, beat, forget, heartbeats, live_workers

MODEL = "bundled:smollm2-135m-instruct"


@pytest.fixture
def no_heartbeats():
    """No live worker to begin with (a session worker's next beat, within 10 s, brings its own back)."""
    for name in live_workers():
        forget(name)
    yield
    for name in live_workers():
        if name.startswith("fake-"):
            forget(name)


def _cpu_worker() -> None:
    beat("fake-cpu@host", ["default", "recommendation"])


def _generation_worker(state: str, started_at: float = 1_700_000_000.0) -> None:
    beat(
        "fake-gpu@host",
        ["generation"],
        ready={"generation": state == "loaded"},
        model={"name": MODEL, "state": state, "started_at": started_at},
    )


# --- /readyz -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz_is_503_while_the_generation_worker_loads_its_model(client, no_heartbeats, settings):
    # given: every queue has a live worker, but the generation worker is still loading its model
    settings.READY_QUEUES = ["generation", "recommendation", "default"]
    _cpu_worker()
    _generation_worker("loading", started_at=1_700_000_123.5)
    # when
    response = client.get("/readyz")
    # then
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["queues"]["generation"] == {
        "workers": 1, "ready": 0, "state": "loading", "model": MODEL, "loading_since": 1_700_000_123.5,
    }
    assert body["queues"]["default"] == {"workers": 1, "ready": 1, "state": "ready"}
    assert body["queues"]["recommendation"] == {"workers": 1, "ready": 1, "state": "ready"}
    assert body["checks"]["workers"] == "2 live; not ready: generation: loading"
    assert sorted(body["workers"]) == ["fake-cpu@host", "fake-gpu@host"]


@pytest.mark.django_db
def test_readyz_is_200_once_the_model_is_loaded(client, no_heartbeats, settings):
    settings.READY_QUEUES = ["generation", "recommendation", "default"]
    _cpu_worker()
    _generation_worker("loading")
    assert client.get("/readyz").status_code == 503
    # when: the worker's next beat says the model is in
    _generation_worker("loaded")
    response = client.get("/readyz")
    # then
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ready"
    assert {queue: status["state"] for queue, status in body["queues"].items()} == {
        "generation": "ready", "recommendation": "ready", "default": "ready",
    }
    assert body["queues"]["generation"] == {"workers": 1, "ready": 1, "state": "ready"}
    assert body["checks"] == {"database": "ok", "redis": "ok", "workers": "2 live"}


@pytest.mark.django_db
def test_readyz_is_503_naming_the_queue_no_worker_consumes(client, no_heartbeats, settings):
    settings.READY_QUEUES = ["generation", "recommendation", "default"]
    _cpu_worker()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["queues"]["generation"] == {"workers": 0, "ready": 0, "state": "no_worker"}
    assert body["queues"]["default"]["state"] == "ready"
    assert body["checks"]["workers"] == "1 live; not ready: generation: no worker"


@pytest.mark.django_db
def test_readyz_waits_only_for_the_queues_this_deployment_expects(client, no_heartbeats, settings):
    # given: generation runs elsewhere, and here only a CPU worker
    settings.READY_QUEUES = ["recommendation", "default"]
    _cpu_worker()
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert set(response.json()["queues"]) == {"recommendation", "default"}


@pytest.mark.django_db
def test_readyz_reports_a_model_that_failed_to_load(client, no_heartbeats, settings):
    settings.READY_QUEUES = ["generation"]
    _generation_worker("failed")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["queues"]["generation"] == {"workers": 1, "ready": 0, "state": "failed", "model": MODEL}


@pytest.mark.django_db
def test_a_heartbeat_without_readiness_from_an_earlier_release_counts_as_ready(client, no_heartbeats, settings):
    # given: a worker of the previous release, mid rolling deploy, sends only its queues
    settings.READY_QUEUES = ["generation", "default"]
    payload = {"hostname": "fake-old@host", "queues": ["default", "generation"], "at": time.time()}
    _client().set(_key_prefix() + "fake-old@host", json.dumps(payload), ex=30)
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["queues"]["generation"] == {"workers": 1, "ready": 1, "state": "ready"}


def test_ready_queues_default_to_every_queue_the_procfile_starts(settings):
    procfile = (REPO_ROOT / "Procfile").read_text()
    started = {queue for arg in re.findall(r"--queues (\S+)", procfile) for queue in arg.split(",")}
    assert started == {"generation", "recommendation", "training", "default"}
    assert sorted(settings.READY_QUEUES) == sorted(started)


# --- the worker's heartbeat ----------------------------------------------------------------------------


def _payload(hostname: str) -> dict:
    return next(beat for beat in heartbeats() if beat["hostname"] == hostname)


@pytest.mark.django_db
def test_a_generation_worker_beats_loading_before_its_model_is_in_then_ready(client, no_heartbeats, settings):
    # given: a model whose load takes until we let it finish
    settings.READY_QUEUES = ["generation"]
    release = threading.Event()
    worker = WorkerBeat("fake-gen@host", ["generation"], MODEL)
    before = time.time()
    # when: the worker starts: it beats first, then loads
    worker.send()
    thread = worker.start_warm_up(lambda: release.wait(10))
    # then: it is live, loading, and /readyz says so
    loading = _payload("fake-gen@host")
    assert loading["queues"] == ["generation"]
    assert loading["ready"] == {"generation": False}
    assert loading["model"]["name"] == MODEL and loading["model"]["state"] == "loading"
    assert before - 1 <= loading["model"]["started_at"] <= time.time()
    assert client.get("/readyz").json()["queues"]["generation"]["state"] == "loading"
    # when: the model is in
    release.set()
    thread.join(5)
    # then: the worker beats at once, without waiting for its timer
    loaded = _payload("fake-gen@host")
    assert loaded["ready"] == {"generation": True}
    assert loaded["model"]["state"] == "loaded"
    assert loaded["model"]["loaded_at"] >= loaded["model"]["started_at"] == loading["model"]["started_at"]
    assert client.get("/readyz").status_code == 200
    # and: a stopped worker is gone at once, and a late beat does not bring it back
    worker.stop()
    worker.send()
    assert "fake-gen@host" not in live_workers()


@pytest.mark.django_db
def test_a_model_that_fails_to_load_is_reported_failed_not_loading(no_heartbeats):
    worker = WorkerBeat("fake-gen@host", ["generation", "default"], MODEL)

    def broken() -> None:
        raise RuntimeError("no weights in /models/x")

    worker.warm_up(broken)
    payload = _payload("fake-gen@host")
    assert payload["model"]["state"] == "failed"
    assert payload["model"]["error"] == "RuntimeError: no weights in /models/x"
    assert payload["ready"] == {"generation": False, "default": True}


def test_a_worker_without_the_generation_queue_has_no_model_to_load():
    worker = WorkerBeat("fake-cpu@host", ["default", "recommendation"], MODEL)
    assert worker.needs_model is False and worker.model is None


@pytest.mark.worker
@pytest.mark.django_db
def test_a_real_generation_worker_on_the_stub_model_beats_its_queue_and_model(client, settings, django_db_setup):
    settings.READY_QUEUES = ["generation"]
    started = time.time()
    worker = WorkerHandle("readiness-gen", "generation", "--pool", "threads", "--concurrency", "2",
                          env={"LOOM_MODEL": "stub"})
    try:
        hostname = next(name for name in live_workers() if name.startswith("readiness-gen-"))
        deadline = time.monotonic() + 30
        while _payload(hostname)["model"]["state"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
        payload = _payload(hostname)
        assert payload["queues"] == ["generation"]
        assert payload["ready"] == {"generation": True}
        assert payload["model"]["name"] == "stub"
        assert payload["model"]["state"] == "loaded"
        assert started <= payload["model"]["started_at"] <= payload["model"]["loaded_at"] <= time.time()
        response = client.get("/readyz")
        assert response.status_code == 200, response.json()
        assert hostname in response.json()["workers"]
    finally:
        worker.stop()
    assert hostname not in live_workers()


# --- jobs wait for the model, and their page says what they wait for -------------------------------------


@pytest.mark.django_db
def test_a_job_stays_queued_while_its_worker_loads_the_model(cast):
    # given: a queued job, and a model that cannot load
    version = services.resolve_version(cast.org, "product-description")
    with mock.patch("generation.dispatch.enqueue"):
        job, _ = services.submit_generation(
            organization=cast.org, project=cast.project, version=version,
            inputs={"product": "Mug", "features": "white"}, params={"num_variants": 1, "max_new_tokens": 8},
        )
    seen = []

    def failing_load():
        seen.append(GenerationJob.objects.get(pk=job.pk).status)
        raise RuntimeError("weights missing")

    # when
    with mock.patch("workers.engine.get_engine", failing_load):
        job = run_job(job.pk)
    # then: the load ran before the job was claimed; its failure fails the job with the reason
    assert seen == [JobStatus.QUEUED, JobStatus.RUNNING]
    assert job.status == JobStatus.FAILED
    assert job.failure_reason == "Generation failed: RuntimeError: weights missing"


def _status_text(client, job) -> str:
    body = client.get(f"/jobs/{job.pk}/status/").content.decode()
    return re.sub(r"\s+", " ", re.search(r'<p class="grow status-text">(.*?)</p>', body, re.S).group(1)).strip()


@pytest.mark.django_db
def test_queued_job_page_says_no_worker_is_running(cast, client_for, no_heartbeats):
    job = job_for(cast.project, status=JobStatus.QUEUED)
    text = _status_text(client_for(cast.viewer), job)
    assert "<strong>Waiting for a worker</strong> — no generation worker is running." in text
    assert "Model loading" not in text


@pytest.mark.django_db
def test_queued_job_page_says_the_model_is_loading_and_which(cast, client_for, no_heartbeats):
    _generation_worker("loading")
    job = job_for(cast.project, status=JobStatus.QUEUED)
    page = client_for(cast.viewer).get(f"/jobs/{job.pk}/").content.decode()
    text = _status_text(client_for(cast.viewer), job)
    assert f"<strong>Model loading</strong> — the worker is loading <code>{MODEL}</code>…" in text
    assert 'data-queue-state="loading"' in page  # the full page too, not only the polled part


@pytest.mark.django_db
def test_queued_job_page_says_queued_when_a_worker_is_ready(cast, client_for, no_heartbeats):
    _generation_worker("loaded")
    job = job_for(cast.project, status=JobStatus.QUEUED)
    text = _status_text(client_for(cast.viewer), job)
    assert "<strong>Queued</strong> — a generation worker will start it shortly." in text
    assert "Waiting for a worker" not in text and "Model loading" not in text


@pytest.mark.django_db
def test_queued_job_page_still_shows_when_redis_is_unreachable(cast, client_for):
    job = job_for(cast.project, status=JobStatus.QUEUED)
    client = client_for(cast.viewer)
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get(f"/jobs/{job.pk}/status/")
    assert response.status_code == 200
    assert 'data-queue-state="unknown"' in response.content.decode()


@pytest.mark.django_db
def test_running_job_page_shows_no_queue_notice(cast, client_for, no_heartbeats):
    _generation_worker("loading")
    job = job_for(cast.project, status=JobStatus.RUNNING)
    text = _status_text(client_for(cast.viewer), job)
    assert "Writing" in text and "queue-notice" not in text
