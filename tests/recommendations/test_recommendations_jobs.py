"""Recommendation jobs end to end in process: train, store top K and similar items, evaluate, bill once;
every failure ends the job in a final state with a reason; the API and the dashboard pages."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from billing.models import LedgerEntry
from core.errors import Conflict
from recommendations import dispatch, execution, services
from recommendations.importing import ingest
from recommendations.models import (
    EventType,
    Recommendation,
    RecommendationJob,
    RecommendationJobStatus,
    SimilarItem,
)
from recommendations.tasks import run_recommendation_job
from tests.support.billing import seed_plans
from tests.support.recommendation_factories import RecommendationJobFactory

pytestmark = pytest.mark.django_db

START = datetime(2024, 1, 1, tzinfo=UTC)
#: Three kinds of things; customers keep to one kind, so "bought together" has something to find.
GROUPS = {
    "tea": ["Linen tea towel", "Teapot", "Tea cosy", "Loose leaf tea tin", "Tea strainer"],
    "garden": ["Garden gloves", "Watering can", "Seed tray", "Plant labels", "Trowel"],
    "party": ["Paper plates", "Party bunting", "Balloon pack", "Paper straws", "Cake stand"],
}


def seed_events(project, *, customers: int = 30, with_views: bool = False) -> dict[str, set[str]]:
    """Purchases over 120 days; returns each customer's bought SKUs."""
    rng = random.Random(5)
    items = [
        {"sku": f"{group[:3].upper()}-{n}", "title": title}
        for group, titles in GROUPS.items()
        for n, title in enumerate(titles)
    ]
    events, bought = [], {}
    for c in range(customers):
        group = list(GROUPS)[c % 3]
        skus = [f"{group[:3].upper()}-{n}" for n in range(5)]
        bought[f"c{c}"] = set()
        for day in rng.sample(range(120), 4):
            sku = rng.choice(skus[:4])  # the fifth of each group is never bought: a content-only item
            bought[f"c{c}"].add(sku)
            stamp = (START + timedelta(days=day)).isoformat()
            events.append({"customer": f"c{c}", "sku": sku, "value": rng.randint(1, 3), "timestamp": stamp})
        if with_views:
            view = skus[(c // 3) % 4]
            events.append({"customer": f"c{c}", "sku": view, "type": "view", "timestamp": START.isoformat()})
    ingest(organization=project.organization, project=project, events=events, items=items)
    return bought


@pytest.fixture
def enqueued(monkeypatch):
    """Jobs enqueued after commit, recorded instead of sent to the broker."""
    calls: list[str] = []
    monkeypatch.setattr(dispatch, "enqueue", lambda job_id: calls.append(str(job_id)) or True)
    return calls


def _start(cast, django_capture_on_commit_callbacks, **params):
    with django_capture_on_commit_callbacks(execute=True):
        return services.start_recommendation_job(
            organization=cast.org, project=cast.project, actor=cast.editor, **params
        )


def test_job_stores_top_k_without_bought_items_similar_items_metrics_and_bills_once(
    cast, enqueued, django_capture_on_commit_callbacks
):
    seed_plans()
    bought = seed_events(cast.project)
    job = _start(cast, django_capture_on_commit_callbacks, k=3, holdout_days=28, seed=1)
    assert enqueued == [str(job.pk)]

    status = run_recommendation_job(str(job.pk))  # the Celery task, in process

    job.refresh_from_db()
    assert status == job.status == RecommendationJobStatus.SUCCEEDED, job.failure_reason
    recommendations = list(Recommendation.objects.filter(job=job).select_related("customer", "item"))
    per_customer: dict[str, list[Recommendation]] = {}
    for row in recommendations:
        per_customer.setdefault(row.customer.external_id, []).append(row)
    assert set(per_customer) == set(bought)
    for customer, rows in per_customer.items():
        assert sorted(r.rank for r in rows) == [1, 2, 3]
        assert not {r.item.sku for r in rows} & bought[customer], customer  # exclude purchased
        assert all(r.reason for r in rows)
    # customers keep to their kind of things: the first pick is from the same group
    firsts = {customer: min(rows, key=lambda r: r.rank).item.sku for customer, rows in per_customer.items()}
    same_group = sum(sku[:3] == next(iter(bought[customer]))[:3] for customer, sku in firsts.items())
    assert same_group >= 0.8 * len(per_customer)
    assert SimilarItem.objects.filter(job=job).count() >= 15 * 3 - 3
    assert set(job.metrics) >= {"model", "popularity", "test_users", "holdout_start", "k"}
    for name in ("precision", "recall", "ndcg", "coverage"):
        assert 0 <= job.metrics["model"][name] <= 1 and 0 <= job.metrics["popularity"][name] <= 1
    assert job.stats["events"] == sum(4 for _ in bought) and job.stats["customers"] == 30
    charges = LedgerEntry.objects.filter(reference=f"recommendation:{job.pk}")
    assert charges.count() == 1 and charges.get().compute_seconds == job.compute_seconds > 0

    # a redelivered task finds the job final: nothing is recomputed, nothing billed again
    assert run_recommendation_job(str(job.pk)) is None
    assert charges.count() == 1


def test_a_job_whose_worker_died_runs_again_and_is_billed_once(cast):
    seed_plans()
    seed_events(cast.project, customers=12)
    job = RecommendationJobFactory(project=cast.project, status="queued", finished_at=None, metrics={}, k=2)
    execution.claim(job.pk, "lost-worker")  # the first worker took it and died: its lease runs out
    RecommendationJob.objects.filter(pk=job.pk).update(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))

    job = execution.run_job(job.pk)

    assert (job.status, job.attempts) == (RecommendationJobStatus.SUCCEEDED, 2)
    assert Recommendation.objects.filter(job=job).count() == 12 * 2
    assert LedgerEntry.objects.filter(reference=f"recommendation:{job.pk}").count() == 1


def test_views_teach_but_only_purchases_are_excluded(cast):
    seed_plans()
    bought = seed_events(cast.project, customers=30, with_views=True)
    job = RecommendationJobFactory(project=cast.project, status="queued", finished_at=None, metrics={}, k=4)

    job = execution.run_job(job.pk)

    assert job.status == RecommendationJobStatus.SUCCEEDED, job.failure_reason
    assert job.stats["events_by_type"][EventType.VIEW] == 30
    for row in Recommendation.objects.filter(job=job).select_related("customer", "item"):
        assert row.item.sku not in bought[row.customer.external_id]


def test_too_little_history_for_a_time_split_still_recommends(cast):
    seed_plans()
    items = [{"sku": f"S{n}", "title": f"Thing {n}"} for n in range(4)]
    events = [
        {"customer": f"c{c}", "sku": f"S{(c + n) % 4}", "timestamp": "2024-01-01T10:00:00Z"}
        for c in range(6)
        for n in range(2)
    ]
    ingest(organization=cast.org, project=cast.project, events=events, items=items)
    job = RecommendationJobFactory(project=cast.project, status="queued", finished_at=None, metrics={}, k=2)

    job = execution.run_job(job.pk)

    assert job.status == RecommendationJobStatus.SUCCEEDED
    assert job.metrics["skipped"].startswith("No evaluation: no interactions before the last 28 days")
    assert Recommendation.objects.filter(job=job).count() == 12


# --- failures ------------------------------------------------------------------------------------


def test_a_project_with_only_returns_fails_with_a_reason(cast):
    ingest(
        organization=cast.org,
        project=cast.project,
        items=[{"sku": "A", "title": "A thing"}],
        events=[{"customer": "c", "sku": "A", "type": "return", "timestamp": "2024-01-01T10:00:00Z"}],
    )
    with pytest.raises(Conflict) as refused:
        services.start_recommendation_job(organization=cast.org, project=cast.project)
    assert refused.value.code == "no_events"
    job = RecommendationJobFactory(project=cast.project, status="queued", finished_at=None, metrics={})

    job = execution.run_job(job.pk)

    assert job.status == RecommendationJobStatus.FAILED
    assert "no events to learn from" in job.failure_reason
    assert job.finished_at is not None
    assert not LedgerEntry.objects.filter(reference=f"recommendation:{job.pk}").exists()


def test_an_engine_error_fails_the_job_with_its_reason(cast, monkeypatch):
    seed_events(cast.project, customers=6)
    job = RecommendationJobFactory(project=cast.project, status="queued", finished_at=None, metrics={})

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("recommendations.engine.train", broken)
    job = execution.run_job(job.pk)

    assert job.status == RecommendationJobStatus.FAILED
    assert job.failure_reason == "Training failed: RuntimeError: out of memory"
    assert not Recommendation.objects.filter(job=job).exists()


def test_a_job_that_lost_its_worker_three_times_is_failed(cast):
    job = RecommendationJobFactory(project=cast.project, status="running", attempts=3, finished_at=None)

    assert execution.run_job(job.pk) is None

    job.refresh_from_db()
    assert job.status == RecommendationJobStatus.FAILED
    assert "after 3 attempts" in job.failure_reason


def test_reconcile_requeues_forgotten_jobs_and_lost_ones_once(cast, enqueued, settings):
    old = datetime.now(UTC) - timedelta(hours=5)
    forgotten = RecommendationJobFactory(project=cast.project, status="queued", finished_at=None)
    RecommendationJob.objects.filter(pk=forgotten.pk).update(created_at=old)
    lost = RecommendationJobFactory(
        project=cast.project, status="running", started_at=old, finished_at=None, attempts=1,
        worker="gone:1", lease_expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    busy = RecommendationJobFactory(
        project=cast.project, status="running", started_at=old, finished_at=None, attempts=1,
        worker="alive:1", lease_expires_at=datetime.now(UTC) + timedelta(minutes=1),
    )
    fresh = RecommendationJobFactory(project=cast.project, status="queued", finished_at=None)

    assert sorted(execution.reconcile()) == sorted([str(forgotten.pk), str(lost.pk)])
    assert execution.reconcile() == []  # at most once per interval and attempt

    assert sorted(enqueued) == sorted([str(forgotten.pk), str(lost.pk)])
    for job in (lost, busy, fresh):
        job.refresh_from_db()
    assert (lost.status, busy.status, fresh.status) == ("running", "running", "queued")
    # the lost job's next claim takes it over; a live lease keeps a duplicate delivery out
    assert execution.claim(lost.pk, "next:1") is not None
    assert execution.claim(busy.pk, "next:1") is None


def test_a_job_that_loses_its_worker_each_time_fails_with_the_reason_and_charges_nothing(cast, settings):
    settings.RECOMMENDATION_MAX_ATTEMPTS = 2
    job = RecommendationJobFactory(project=cast.project, status="queued", finished_at=None)
    for worker in ("a:1", "b:1"):
        assert execution.claim(job.pk, worker) is not None
        RecommendationJob.objects.filter(pk=job.pk).update(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))

    assert execution.run_job(job.pk) is None

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("failed", 2) and "after 2 attempts" in job.failure_reason
    assert not LedgerEntry.objects.filter(reference=f"recommendation:{job.pk}").exists()


# --- API -----------------------------------------------------------------------------------------


def test_api_starts_one_job_at_a_time(cast, key_for, enqueued, django_capture_on_commit_callbacks):
    seed_events(cast.project, customers=3)
    client, _, _ = key_for("write")

    with django_capture_on_commit_callbacks(execute=True):
        first = client.post("/api/v1/recommendation-jobs/", {"project": str(cast.project.pk), "k": 5}, format="json")
    second = client.post("/api/v1/recommendation-jobs/", {"project": str(cast.project.pk)}, format="json")
    bad = client.post("/api/v1/recommendation-jobs/", {"project": str(cast.project.pk), "k": 0}, format="json")

    assert first.status_code == 201, first.json()
    assert (first.json()["status"], first.json()["k"], first.json()["exclude_purchased"]) == ("queued", 5, True)
    assert enqueued == [first.json()["id"]]
    assert (second.status_code, second.json()["code"]) == (409, "job_already_running")
    assert (bad.status_code, bad.json()["fields"]) == (400, {"k": ["1..100"]})


def test_api_job_without_events_is_a_409(cast, key_for):
    client, _, _ = key_for("write")

    response = client.post("/api/v1/recommendation-jobs/", {"project": str(cast.project.pk)}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "no_events")
    assert not RecommendationJob.objects.exists()


def test_api_shows_a_job_s_metrics_and_ratio(cast, client_for):
    job = RecommendationJobFactory(project=cast.project)

    body = client_for(cast.viewer).get(f"/api/v1/recommendation-jobs/{job.pk}/").json()

    assert body["status"] == "succeeded"
    assert body["metrics"]["model"]["ndcg"] == 0.08 and body["metrics"]["popularity"]["ndcg"] == 0.05
    assert body["ndcg_ratio"] == pytest.approx(1.6)


# --- dashboard -----------------------------------------------------------------------------------


def test_job_pages_show_metrics_model_against_baseline(cast, client):
    job = RecommendationJobFactory(project=cast.project)
    client.force_login(cast.viewer)

    listing = client.get("/recommendations/jobs/").content.decode()
    page = client.get(f"/recommendations/jobs/{job.pk}/").content.decode()

    assert "1.60\N{MULTIPLICATION SIGN}" in listing
    assert "NDCG@K" in page and "0.0800" in page and "0.0500" in page and "Popularity baseline" in page


def test_editor_starts_a_job_from_the_dashboard_and_changes_the_setting(cast, client, enqueued):
    seed_events(cast.project, customers=3)
    client.force_login(cast.editor)

    started = client.post("/recommendations/jobs/", {"project": str(cast.project.pk), "k": 7, "holdout_days": 14})
    setting = client.post(f"/recommendations/projects/{cast.project.pk}/settings/", {})

    job = RecommendationJob.objects.get()
    assert started.status_code == 302 and started.url == f"/recommendations/jobs/{job.pk}/"
    assert (job.k, job.holdout_days, job.requested_by) == (7, 14, cast.editor)
    assert setting.status_code == 302
    assert services.settings_for(cast.project).exclude_purchased is False


def test_viewer_cannot_start_a_job_and_outsider_sees_no_acme_job(cast, client):
    job = RecommendationJobFactory(project=cast.project)
    client.force_login(cast.viewer)
    assert client.post("/recommendations/jobs/", {"project": str(cast.project.pk), "k": 5}).status_code == 403

    client.force_login(cast.outsider)
    assert client.get(f"/recommendations/jobs/{job.pk}/").status_code == 404
    assert str(job.pk) not in client.get("/recommendations/jobs/").content.decode()


def test_training_runs_on_the_recommendation_queue_and_bookkeeping_on_default():
    from recommendations.tasks import reconcile_recommendation_jobs, watch_campaign
    from workers.celery import app

    def queue(task):
        return app.amqp.router.route(task._get_exec_options(), task.name, (), {}, task)["queue"].name

    assert queue(run_recommendation_job) == "recommendation"
    assert queue(watch_campaign) == queue(reconcile_recommendation_jobs) == "default"
    assert "reconcile-recommendation-jobs" in app.conf.beat_schedule


def test_dispatch_sends_each_task_by_name_to_the_queue_its_task_routes_to(monkeypatch):
    from recommendations.tasks import watch_campaign
    from workers.celery import app

    sent: list[tuple[str, list, str]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: sent.append((name, args, queue)))

    assert dispatch.enqueue("job-1") is True
    dispatch.watch("campaign-1")

    for task in (run_recommendation_job, watch_campaign):
        routed = app.amqp.router.route(task._get_exec_options(), task.name, (), {}, task)["queue"].name
        assert dispatch.QUEUES[task.name] == routed
    assert sent == [
        ("recommendations.run_job", ["job-1"], "recommendation"),
        ("recommendations.watch_campaign", ["campaign-1"], "default"),
    ]


def test_a_job_started_while_the_broker_is_down_stays_queued_for_the_reconciler(
    cast, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    from workers.celery import app

    def refused(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis: Connection refused.")

    seed_events(cast.project, customers=3)
    monkeypatch.setattr(app, "send_task", refused)

    job = _start(cast, django_capture_on_commit_callbacks, k=3)

    assert RecommendationJob.objects.get(pk=job.pk).status == RecommendationJobStatus.QUEUED
    assert dispatch.enqueue(job.pk) is False


def test_a_billing_error_while_storing_fails_the_job_and_keeps_no_half_results(cast, monkeypatch):
    seed_events(cast.project, customers=6)
    job = RecommendationJobFactory(project=cast.project, status="queued", finished_at=None, metrics={})

    def no_plan(**kwargs):
        raise RuntimeError("no plan")

    monkeypatch.setattr("billing.services.charge_compute", no_plan)
    job = execution.run_job(job.pk)

    assert job.status == RecommendationJobStatus.FAILED
    assert job.failure_reason == "Training failed: RuntimeError: no plan"
    assert not Recommendation.objects.filter(job=job).exists() and not SimilarItem.objects.filter(job=job).exists()
