"""A recommendation job's model selection report: computed by the job on its project's earlier windows,
stored in its metrics, shown by the API and on the job page (and to nobody outside the organization)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from recommendations import execution
from recommendations.importing import ingest
from tests.support.recommendation_factories import RecommendationJobFactory

pytestmark = pytest.mark.django_db

START = datetime(2024, 1, 1, tzinfo=UTC)


def _seed(project, customers: int = 45) -> None:
    """Three kinds of things over 150 days; customers keep to one kind."""
    rng = random.Random(3)
    items = [{"sku": f"{g}-{n}", "title": f"{g} thing {n}"} for g in ("tea", "garden", "party") for n in range(5)]
    events = []
    for c in range(customers):
        group = ("tea", "garden", "party")[c % 3]
        for day in rng.sample(range(150), 4):
            sku = f"{group}-{rng.randrange(5)}"
            events.append({"customer": f"c{c}", "sku": sku, "timestamp": (START + timedelta(days=day)).isoformat()})
    ingest(organization=project.organization, project=project, events=events, items=items)


def _report_metrics() -> dict:
    candidates = [
        {
            "name": "learned blend",
            "params": {"w_pop": 2.0},
            "ndcg": 0.31,
            "recall": 0.2,
            "coverage": 0.1,
            "ndcg_by_window": [0.3, 0.32],
        },
        {"name": "ease", "params": {}, "ndcg": 0.21, "recall": 0.15, "coverage": 0.3, "ndcg_by_window": [0.2, 0.22]},
    ]
    return {
        "model": {"precision": 0.1, "recall": 0.2, "ndcg": 0.3, "coverage": 0.4},
        "popularity": {"precision": 0.05, "recall": 0.1, "ndcg": 0.15, "coverage": 0.01},
        "als": {"precision": 0.07, "recall": 0.12, "ndcg": 0.2, "coverage": 0.3},
        "als_tuned": {"precision": 0.08, "recall": 0.14, "ndcg": 0.25, "coverage": 0.2},
        "als_tuned_params": {"factors": 16},
        "cold_start": {
            "customers": {"customers": 7, "max_items": 1, "model": {"ndcg": 0.12}, "popularity": {"ndcg": 0.09}},
            "new_items": {"share_of_test": 0.05, "test_pairs": 3, "recall_model": 0.0, "in_catalog": 2},
        },
        "selection": {
            "chosen": "learned blend",
            "chosen_params": {"w_pop": 2.0},
            "why": "learned blend had the highest mean NDCG@10 over 2 earlier window(s) of 28 days: 0.3100.",
            "candidates": candidates,
            "windows": [{"start": "2024-04-01", "end": "2024-04-29", "customers": 20}] * 2,
            "skipped": ["als factors=128"],
            "budget_s": 20,
            "elapsed_s": 3.5,
        },
        "test_users": 30,
        "k": 10,
        "holdout_start": "2024-05-01T00:00:00+00:00",
    }


def test_a_job_chooses_its_model_on_earlier_windows_and_stores_why(cast, settings):
    # given
    settings.RECOMMENDATION_SELECTION_BUDGET_S = 2
    _seed(cast.project)
    job = RecommendationJobFactory(project=cast.project, status="queued", metrics={}, stats={}, holdout_days=28)

    # when
    done = execution.run_job(job.pk)

    # then
    assert done.status == "succeeded", done.failure_reason
    selection = done.metrics["selection"]
    holdout = datetime.fromisoformat(done.metrics["holdout_start"])
    assert selection["windows"] and all(datetime.fromisoformat(w["end"]) < holdout for w in selection["windows"])
    assert selection["chosen"] == selection["candidates"][0]["name"]
    assert selection["why"].startswith(selection["chosen"])
    for key in ("model", "popularity", "als", "als_tuned"):
        assert 0 <= done.metrics[key]["ndcg"] <= 1
    assert done.metrics["cold_start"]["customers"]["max_items"] == 1
    assert "select_evaluate_s" in done.stats["timings"]


def test_a_budget_of_zero_keeps_the_default_blend_and_still_compares_with_als(cast, settings):
    settings.RECOMMENDATION_SELECTION_BUDGET_S = 0
    _seed(cast.project)
    job = RecommendationJobFactory(project=cast.project, status="queued", metrics={}, stats={}, holdout_days=28)

    done = execution.run_job(job.pk)

    assert done.status == "succeeded", done.failure_reason
    assert done.metrics["selection"]["why"].startswith("Model selection is off")
    assert done.metrics["selection"]["chosen_params"] == {}
    assert "als_tuned" in done.metrics


def test_api_shows_the_chosen_model_and_the_ratio_to_tuned_als(cast, client_for):
    job = RecommendationJobFactory(project=cast.project, metrics=_report_metrics())

    body = client_for(cast.viewer).get(f"/api/v1/recommendation-jobs/{job.pk}/").json()

    assert body["chosen_model"] == "learned blend"
    assert body["ndcg_vs_als"] == pytest.approx(0.3 / 0.25)
    assert [c["name"] for c in body["metrics"]["selection"]["candidates"]] == ["learned blend", "ease"]


def test_job_page_shows_every_candidate_the_choice_and_als(cast, client):
    job = RecommendationJobFactory(project=cast.project, metrics=_report_metrics())
    client.force_login(cast.viewer)

    page = client.get(f"/recommendations/jobs/{job.pk}/").content.decode()

    assert "Model selection" in page and "Chosen: <strong>learned blend</strong>" in page
    assert "0.2100" in page and "ease" in page  # a losing candidate's validation NDCG
    assert "Tuned ALS" in page and "0.2500" in page and "0.2000" in page
    assert "als factors=128" in page  # not tried within the budget
    assert "Cold start" in page and "0.1200" in page

    client.force_login(cast.outsider)
    assert client.get(f"/recommendations/jobs/{job.pk}/").status_code == 404
