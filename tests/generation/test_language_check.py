"""A job writes in its language: the prompt asks for it, and an output in another language fails the hard
"language" check of its constraint report. Detection is lingua's (generation.language), measured here on
short marketing lines. No model runs: jobs go through ``run_job`` with a scripted engine."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings

from generation import language, services
from generation.constraints import check, passed
from generation.execution import run_job
from generation.models import GenerationJob, JobStatus
from generation.prompts import LANGUAGE_NAMES, build_messages
from tests.support.generation_factories import GenerationJobFactory
from workers.engine import FinishReason, GenerationRequest, GenerationResult

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).parent / "data" / "language_samples.json"
#: ~30 words each: inside the product description template's 25..180 words, so only the language decides.
GERMAN_COPY = (
    "Unser Geschirrtuch aus reinem Leinen trocknet schnell, wird mit jeder Wäsche weicher und hält viele Jahre. "
    "Gewebt aus europäischem Flachs, fusselt es nicht und sieht neben jedem Herd gut aus."
)
ENGLISH_COPY = (
    "Our linen tea towel dries dishes fast, softens with every wash and lasts for years. Woven from pure "
    "European flax, it stays lint free and looks good hanging by any stove."
)
INPUTS = {"product": "Linen tea towel", "features": "100% linen", "audience": "home cooks"}


class RecordingEngine:
    """A model that answers with a scripted text and keeps the messages it was sent."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.requests: list[GenerationRequest] = []

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        self.requests.append(request)
        future: Future[GenerationResult] = Future()
        future.set_result(GenerationResult(self.text, 50, len(self.text.split()), FinishReason.EOS, 0.01))
        return future


def _submit(project, **params) -> GenerationJob:
    version = services.resolve_version(project.organization, "product-description")
    with mock.patch("generation.dispatch.enqueue"):
        job, _ = services.submit_generation(
            organization=project.organization, project=project, version=version, inputs=INPUTS,
            params={"num_variants": 1, "max_new_tokens": 80, "seed": 3, **params},
        )
    return job


def _language_entries(report: list[dict]) -> list[dict]:
    return [entry for entry in report if entry["constraint"] == "language"]


def test_detector_accuracy_on_short_copy():
    samples = json.loads(SAMPLES.read_text())["samples"]
    assert {code for code, _ in samples} >= {"en", "de", "fr", "es", "it", "nl", "pt", "zh", "ja"}
    assert len(samples) >= 60

    detected = [(code, language.detect(text)) for code, text in samples]

    decided = [(code, found) for code, found in detected if found is not None]
    # Of the lines long enough to tell, the share detected right: a wrong one would fail good copy.
    assert sum(code == found for code, found in decided) / len(decided) >= 0.95  # measured: 81/81
    # Too short to tell (under MIN_LETTERS): passes as undetermined; only banners of a few words.
    assert len(decided) / len(samples) >= 0.9  # measured: 81/88
    assert all(language.letter_count(text) < language.MIN_LETTERS for (code, text), (_, found) in
               zip(samples, detected, strict=True) if found is None)


def test_a_text_too_short_to_tell_passes_as_undetermined():
    for text in ("Aero 2", "SALE -30%", "Linen tea towel", "首盒半价"):
        (entry,) = check(text, {}, {}, language="de")
        assert entry == {"constraint": "language", "expected": "de", "actual": None, "passed": True,
                         "undetermined": True}


def test_copy_in_another_language_fails_the_hard_check():
    report = check(ENGLISH_COPY, {}, {}, language="de")

    assert report == [{"constraint": "language", "expected": "de", "actual": "en", "passed": False}]
    assert not passed(report)
    assert passed(check(GERMAN_COPY, {}, {}, language="de"))
    assert check(ENGLISH_COPY, {}, {}) == []  # no language asked for, nothing checked


def test_every_content_language_has_a_name_for_the_prompt():
    assert set(LANGUAGE_NAMES) == {code for code, _ in settings.CONTENT_LANGUAGES}
    assert set(language.content_languages()) == set(LANGUAGE_NAMES)


def test_a_german_job_asks_for_german_and_fails_english_output(cast):
    # given: a German job whose model answers in English
    job = _submit(cast.project, language="de")
    engine = RecordingEngine(ENGLISH_COPY)

    # when
    job = run_job(job.pk, engine=engine)

    # then: the prompt asked for German, the variant is kept but fails its language check
    assert job.status == JobStatus.SUCCEEDED
    assert job.language == "de"
    system = engine.requests[0].messages[0]["content"]
    assert "Write the copy in German (Deutsch)" in system
    variant = job.variants.get()
    (entry,) = _language_entries(variant.constraint_report)
    assert entry == {"constraint": "language", "expected": "de", "actual": "en", "passed": False}
    assert variant.constraints_passed is False


def test_a_job_takes_its_projects_language_and_german_output_passes(cast):
    cast.project.default_language = "de"
    cast.project.save(update_fields=["default_language"])

    job = run_job(_submit(cast.project).pk, engine=RecordingEngine(GERMAN_COPY))

    assert job.language == "de"
    variant = job.variants.get()
    (entry,) = _language_entries(variant.constraint_report)
    assert entry["passed"] and entry["actual"] == "de"
    assert variant.constraints_passed is True


def test_an_english_jobs_prompt_is_unchanged(cast):
    job = GenerationJobFactory(project=cast.project, inputs=INPUTS)

    messages = build_messages(job.template_version, job.inputs, None, [], language="en")

    assert messages[0]["content"] == job.template_version.system_prompt


def test_an_edit_is_checked_against_the_jobs_language(cast):
    job = run_job(_submit(cast.project, language="de").pk, engine=RecordingEngine(GERMAN_COPY))
    variant = job.variants.get()

    variant = services.give_feedback(variant=variant, actor=cast.editor, edited_text=ENGLISH_COPY)

    (entry,) = _language_entries(variant.constraint_report)
    assert entry["actual"] == "en" and not entry["passed"]
    assert variant.constraints_passed is False
    (original,) = _language_entries(variant.original_constraint_report)
    assert original["passed"]


def test_api_job_language_defaults_to_the_projects_and_rejects_unknown(cast, client_for):
    cast.project.default_language = "fr"
    cast.project.save(update_fields=["default_language"])
    client = client_for(cast.editor)
    body = {"project": str(cast.project.pk), "template": "product-description", "inputs": INPUTS}

    with mock.patch("generation.dispatch.enqueue"):
        default = client.post("/api/v1/jobs/", body, format="json")
        german = client.post("/api/v1/jobs/", {**body, "language": "de"}, format="json")
        unknown = client.post("/api/v1/jobs/", {**body, "language": "klingon"}, format="json")

    assert default.status_code == 201, default.json()
    assert default.json()["language"] == "fr"
    assert german.json()["language"] == "de"
    assert GenerationJob.objects.get(pk=german.json()["id"]).language == "de"
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "invalid_parameters"
    assert "language" in unknown.json()["fields"]


def test_outsider_cannot_start_a_job_in_acme_project(cast, client_for):
    body = {"project": str(cast.project.pk), "template": "product-description", "inputs": INPUTS, "language": "de"}

    with mock.patch("generation.dispatch.enqueue"):
        response = client_for(cast.outsider).post("/api/v1/jobs/", body, format="json")

    assert response.status_code == 404
    assert not GenerationJob.objects.filter(project=cast.project).exists()
    assert client_for(cast.outsider).get("/api/v1/jobs/").json()["results"] == []
