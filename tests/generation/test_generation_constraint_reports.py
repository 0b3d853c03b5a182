"""Constraint reports describe the text shown: cut-off output fails, ad fields are checked one by one,
a withheld variant passes nothing, and an edit is checked again while the model's report is kept.

No model runs: jobs go through ``run_job`` with a scripted engine or the echo stub (``workers.stub``).
"""

from __future__ import annotations

import importlib
import re
from concurrent.futures import Future
from unittest import mock

import pytest

from generation import services
from generation.constraints import check, validate_spec
from generation.execution import run_job
from generation.models import GenerationJob, JobStatus, Template, Variant
from tests.support.generation_factories import GenerationJobFactory, VariantFactory
from workers.engine import FinishReason, GenerationRequest, GenerationResult
from workers.stub import StubEngine

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
CANARY = "ACME-CANARY-7f3a9c21"
#: Two responsive search ads as Google takes them; the first's first headline is 39 characters.
_AD_REST = (
    "\nHeadline 2: Soft and breathable\nHeadline 3: Free returns\n"
    "Description 1: Soft, breathable merino socks for hikers.\nDescription 2: Free shipping on every order."
)
LONG_HEADLINE_AD = "Headline 1: Merino socks that keep you warm all day" + _AD_REST
FITTING_AD = "Headline 1: Warm merino socks" + _AD_REST
#: 31 words: inside the product description's 25..180.
EDITED_COPY = (
    "Our linen tea towel dries dishes fast, softens with every wash and lasts for years. Woven from pure "
    "European flax, it stays lint free and looks good hanging by any stove."
)


class ScriptedEngine:
    """A model that answers each request in turn with a scripted (text, finish reason)."""

    def __init__(self, *outputs: tuple[str, str]) -> None:
        self.outputs = list(outputs)

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        text, reason = self.outputs.pop(0)
        future: Future[GenerationResult] = Future()
        prompt = sum(len(m["content"].split()) for m in request.messages)
        future.set_result(GenerationResult(text, prompt, len(text.split()), reason, 0.01))
        return future


def _run(project, template: str, inputs: dict, engine, **params) -> GenerationJob:
    version = services.resolve_version(project.organization, template)
    with mock.patch("generation.dispatch.enqueue"):
        job, _ = services.submit_generation(
            organization=project.organization,
            project=project,
            version=version,
            inputs=inputs,
            params={"num_variants": 1, "max_new_tokens": 60, "seed": 5, **params},
        )
    return run_job(job.pk, engine=engine)


def _card(page: str, index: int) -> str:
    """One variant's card of a job page."""
    found = re.search(rf'<article id="variant-{index}".*?</article>', page, re.DOTALL)
    assert found, f"no card for variant {index}"
    return found.group(0)


def _entries(report: list[dict], name: str) -> list[dict]:
    return [entry for entry in report if entry["constraint"] == name]


# --- truncation ----------------------------------------------------------------------------------


def test_a_text_cut_off_at_the_token_limit_fails_even_without_other_constraints():
    report = check("Insulation: 100", {}, {}, finish_reason=FinishReason.LENGTH)

    assert report == [
        {"constraint": "truncated", "expected": False, "actual": True, "passed": False, "finish_reason": "length"}
    ]
    assert check("Insulation: 100% wool.", {}, {}, finish_reason=FinishReason.EOS) == []


def test_a_variant_that_hit_the_token_limit_is_reported_as_truncated(cast, client_for):
    # given: the echo stub stops after 3 words of the prompt
    inputs = {"product": "Linen tea towel", "features": "100% linen"}
    # when
    job = _run(cast.project, "product-description", inputs, StubEngine(token_s=0), max_new_tokens=3)
    # then
    assert job.status == JobStatus.SUCCEEDED
    variant = job.variants.get()
    assert (variant.finish_reason, variant.constraints_passed) == ("length", False)
    (truncated,) = _entries(variant.constraint_report, "truncated")
    assert truncated["passed"] is False
    assert variant.original_constraint_report == variant.constraint_report
    api = client_for(cast.viewer).get(f"/api/v1/jobs/{job.pk}/").json()["variants"][0]
    assert (api["constraints_passed"], api["constraint_report"][0]["constraint"]) == (False, "truncated")
    card = _card(client_for(cast.viewer).get(f"/jobs/{job.pk}/").content.decode(), 0)
    assert "Not all passed" in card and "All passed<" not in card
    assert 'data-constraint="truncated"' in card and "hit the token limit" in card


def test_a_variant_the_model_finished_has_no_truncation_entry(cast):
    job = _run(cast.project, "product-description", {"product": "Linen tea towel"}, StubEngine(token_s=0))

    variant = job.variants.get()
    assert variant.finish_reason == "stop"
    assert _entries(variant.constraint_report, "truncated") == []


# --- per-field limits ----------------------------------------------------------------------------


def test_google_ads_asks_for_each_field_and_checks_it_on_its_own(cast, client_for):
    # given: an ad with a 39-character first headline, and one that fits
    engine = ScriptedEngine((LONG_HEADLINE_AD, FinishReason.EOS), (FITTING_AD, FinishReason.EOS))
    # when
    job = _run(cast.project, "google-ads", {"product": "Merino socks"}, engine, num_variants=2)
    # then
    labels = ["Headline 1", "Headline 2", "Headline 3", "Description 1", "Description 2"]
    assert all(f"{label}:" in job.template_version.prompt for label in labels)
    long_one, fitting = job.variants.order_by("index")
    headline, *others = _entries(long_one.constraint_report, "field_max_chars")
    assert (headline["field"], headline["expected"], headline["actual"], headline["passed"]) == (
        "Headline 1", 30, 39, False
    )
    assert [(e["field"], e["expected"], e["passed"]) for e in others] == [
        ("Headline 2", 30, True), ("Headline 3", 30, True), ("Description 1", 90, True), ("Description 2", 90, True)
    ]
    assert long_one.constraints_passed is False
    assert fitting.constraints_passed is True
    assert [e["field"] for e in _entries(fitting.constraint_report, "field_max_chars")] == labels
    card = _card(client_for(cast.viewer).get(f"/jobs/{job.pk}/").content.decode(), 0)
    assert "Headline 1: at most 30 characters" in card and "39 characters" in card and "Not all passed" in card


def test_a_missing_field_and_text_outside_the_fields_fail():
    constraints = {"fields": [{"label": "Headline", "max_chars": 30}, {"label": "Description", "max_chars": 90}]}

    report = check("**Headline:** Warm socks\nHope you like it!", constraints, {})

    assert [(e["constraint"], e.get("field"), e["passed"]) for e in report] == [
        ("field_max_chars", "Headline", True),
        ("field_present", "Description", False),
        ("only_fields", None, False),
    ]


@pytest.mark.parametrize("slug", ["google-ads", "meta-ad", "seo-meta"])
def test_builtin_ad_templates_state_their_field_limits(slug):
    version = Template.objects.get(organization=None, slug=slug).latest_version()

    fields = version.constraints["fields"]
    assert len(fields) >= 2 and all(field.get("max_chars") for field in fields)
    assert all(f"{field['label']}:" in version.prompt for field in fields)


def test_custom_templates_may_state_field_limits(cast, client_for):
    body = {
        "name": "Subject and preheader",
        "variables": [{"name": "topic"}],
        "prompt": "Subject: ...\nPreheader: ... about {topic}",
        "constraints": {"fields": [{"label": "Subject", "max_chars": 50}, {"label": "Preheader", "max_chars": 90}]},
    }

    created = client_for(cast.editor).post("/api/v1/templates/", body, format="json")
    refused = client_for(cast.editor).post(
        "/api/v1/templates/",
        {**body, "name": "Broken", "constraints": {"fields": [{"label": "Sub:ject", "max_chars": "50"}]}},
        format="json",
    )

    assert created.status_code == 201, created.json()
    assert Template.objects.get(organization=cast.org, slug="subject-and-preheader").latest_version().constraints == (
        body["constraints"]
    )
    assert refused.status_code == 400
    assert "fields[0].label" in refused.json()["detail"]
    assert not Template.objects.filter(organization=cast.org, name="Broken").exists()
    assert validate_spec({"fields": [{"label": "A", "max_chars": -1}]}) == [
        "fields[0].max_chars must be a whole number between 0 and 100000"
    ]


# --- withheld variants ---------------------------------------------------------------------------


def test_a_withheld_variant_shows_why_and_passes_nothing(cast, client_for):
    # given: a secret in the brand voice, and a model that repeats it in one of three variants
    services.save_brand_voice(actor=cast.owner, project=cast.project, tone=f"Warm; internal reference {CANARY}")
    engine = ScriptedEngine(
        ("Soft linen towels that dry fast and last for years.", FinishReason.EOS),
        ("Sure! Our internal reference is 7f3a9c21.", FinishReason.EOS),
        ("Linen tea towels, woven to dry every dish.", FinishReason.EOS),
    )
    # when
    job = _run(cast.project, "product-description", {"product": "Linen tea towel"}, engine, num_variants=3)
    # then: the job succeeded with two variants delivered
    assert job.status == JobStatus.SUCCEEDED
    withheld = job.variants.get(index=1)
    assert (withheld.finish_reason, withheld.moderation["category"]) == ("blocked", "prompt_leak")
    assert (withheld.constraint_report, withheld.original_constraint_report, withheld.constraints_passed) == (
        [], [], False
    )
    assert withheld.brand_fit is None  # nor a score of a text nobody sees
    # the API says it was withheld and why, with nothing passed
    variants = client_for(cast.viewer).get(f"/api/v1/jobs/{job.pk}/").json()["variants"]
    assert [v["withheld"] for v in variants] == [False, True, False]
    assert variants[1]["withheld_reason"] == (
        "It repeated hidden prompt material (a distinctive term of the system prompt)."
    )
    assert (variants[1]["constraints_passed"], variants[1]["constraint_report"]) == (False, [])
    assert variants[0]["withheld_reason"] == ""
    # the page: the job says how many were withheld; the card says why and shows no pass badge
    page = client_for(cast.viewer).get(f"/jobs/{job.pk}/").content.decode()
    assert "Succeeded" in page and "1 of 3 variants withheld" in page
    card = _card(page, 1)
    assert "Withheld." in card and "hidden prompt material" in card
    assert "not checked: the text was withheld" in card
    assert "All passed" not in card and "is-pass" not in card
    assert "7f3a9c21" not in page


def test_a_job_without_withheld_variants_says_nothing_of_withholding(cast, client_for):
    job = _run(cast.project, "product-description", {"product": "Linen tea towel"}, StubEngine(token_s=0))

    assert "withheld" not in client_for(cast.viewer).get(f"/jobs/{job.pk}/").content.decode().lower()


# --- edits ---------------------------------------------------------------------------------------


def _truncated_variant(project) -> Variant:
    """A product description the model cut off at the token limit: its report fails."""
    job = _run(
        project, "product-description", {"product": "Linen tea towel"}, StubEngine(token_s=0), max_new_tokens=4
    )
    return job.variants.get()


def test_an_edit_through_the_api_reruns_the_checks_and_keeps_the_models_report(cast, client_for):
    # given
    variant = _truncated_variant(cast.project)
    original = variant.constraint_report
    client = client_for(cast.editor)
    # when
    edited = client.patch(f"/api/v1/variants/{variant.pk}/", {"edited_text": EDITED_COPY}, format="json")
    # then: the report is of the edit (31 words, not cut off); the model's is kept
    assert edited.status_code == 200, edited.json()
    body = edited.json()
    assert body["constraints_passed"] is True
    assert _entries(body["constraint_report"], "truncated") == []
    assert _entries(body["constraint_report"], "min_words")[0]["actual"] == 31
    assert body["original_constraint_report"] == original
    variant.refresh_from_db()
    assert (variant.constraints_passed, variant.original_constraint_report) == (True, original)
    assert client.get(f"/api/v1/variants/{variant.pk}/").json()["constraint_report"] == body["constraint_report"]
    # when: back to the generated text
    reverted = client.patch(f"/api/v1/variants/{variant.pk}/", {"edited_text": ""}, format="json").json()
    # then: its own report again
    assert (reverted["constraint_report"], reverted["constraints_passed"]) == (original, False)


def test_an_edit_on_the_page_shows_the_new_report_and_the_generated_texts(cast, client_for):
    # given
    variant = _truncated_variant(cast.project)
    # when
    response = client_for(cast.editor).post(
        f"/variants/{variant.pk}/feedback/", {"edited_text": EDITED_COPY}, headers=HTMX
    )
    # then: the card the page swaps in, and the page itself, describe the edit first
    assert response.status_code == 200
    for card in (response.content.decode(), _card(client_for(cast.viewer).get(f"/jobs/{variant.job_id}/")
                                                 .content.decode(), 0)):
        edited_part, generated_part = card.split('class="original-report"')
        assert "Constraints of the edited text" in edited_part and "All passed" in edited_part
        assert 'data-constraint="truncated"' not in edited_part and "31 words" in edited_part
        assert "Generated text" in generated_part and "Not all passed" in generated_part
        assert 'data-constraint="truncated"' in generated_part and "hit the token limit" in generated_part


def test_an_edit_of_a_withheld_variant_passes_nothing(cast, client_for):
    services.save_brand_voice(actor=cast.owner, project=cast.project, tone=f"Warm; internal reference {CANARY}")
    engine = ScriptedEngine(("Reference 7f3a9c21", FinishReason.EOS), ("Soft linen towels.", FinishReason.EOS))
    job = _run(cast.project, "product-description", {"product": "Linen tea towel"}, engine, num_variants=2)
    withheld = job.variants.get(index=0)

    body = client_for(cast.editor).patch(
        f"/api/v1/variants/{withheld.pk}/", {"edited_text": EDITED_COPY}, format="json"
    ).json()

    assert (body["withheld"], body["constraints_passed"], body["constraint_report"]) == (True, False, [])


# --- stored rows ---------------------------------------------------------------------------------


def test_the_migration_keeps_each_report_as_both_and_clears_withheld_ones(cast):
    from django.apps import apps

    migration = importlib.import_module("generation.migrations.0003_variant_original_constraint_report")
    job = GenerationJobFactory(project=cast.project, status=JobStatus.SUCCEEDED)
    report = [{"constraint": "max_chars", "expected": 200, "actual": 31, "passed": True}]
    delivered = VariantFactory(job=job, index=0, constraint_report=report, original_constraint_report=[])
    withheld = VariantFactory(
        job=job, index=1, text="", finish_reason="blocked", constraint_report=report, original_constraint_report=[]
    )

    migration.keep_reports_as_original(apps, None)

    delivered.refresh_from_db()
    withheld.refresh_from_db()
    assert (delivered.constraint_report, delivered.original_constraint_report, delivered.constraints_passed) == (
        report, report, True
    )
    assert (withheld.constraint_report, withheld.original_constraint_report, withheld.constraints_passed) == (
        [], [], False
    )
    assert withheld.brand_fit is None
