"""Exports of a project's copy: CSV for people, chat JSONL for fine-tuning."""

from __future__ import annotations

import csv
import io
import json

import pytest

from generation.exports import export_csv, export_jsonl
from generation.models import BrandVoice, JobStatus
from tests.support.generation_factories import GenerationJobFactory, TemplateVersionFactory, VariantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(cast):
    """A succeeded Acme job: product "Tulip bulbs" for gardeners, on a template whose prompt uses both."""
    version = TemplateVersionFactory(
        template__organization=cast.org,
        template__slug="tagline",
        version=3,
        system_prompt="You write taglines.",
        prompt="Tagline for {product}, for {audience}.",
    )
    return GenerationJobFactory(
        project=cast.project,
        template_version=version,
        status=JobStatus.SUCCEEDED,
        inputs={"product": "Tulip bulbs", "audience": "gardeners"},
    )


def _csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def _jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


def test_csv_holds_every_current_variant_with_its_job_and_feedback(cast, client_for, job):
    VariantFactory(job=job, index=0, revision=0, is_current=False, text="Replaced take")
    VariantFactory(job=job, index=0, revision=1, text="Bloom brighter.", rating=5, approved=True, brand_fit=0.9)
    VariantFactory(job=job, index=1, text="Plant joy.", edited_text="Plant pure joy.", constraints_passed=False)
    VariantFactory(job__project=cast.sibling_project, index=0, text="Other project")
    VariantFactory(job__project=cast.outsider_project, index=0, text="Globex copy")

    response = client_for(cast.viewer).get(f"/api/v1/projects/{cast.project.pk}/export.csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="spring.csv"' in response["Content-Disposition"]
    rows = _csv_rows(response.content.decode())
    assert [(r["index"], r["revision"], r["text"]) for r in rows] == [
        ("0", "1", "Bloom brighter."),
        ("1", "0", "Plant joy."),
    ]
    first, second = rows
    assert (first["job_id"], first["template"], first["template_version"]) == (str(job.pk), "tagline", "3")
    assert json.loads(first["inputs"]) == {"product": "Tulip bulbs", "audience": "gardeners"}
    assert (first["rating"], first["approved"], first["brand_fit"], first["constraints_passed"]) == (
        "5",
        "True",
        "0.9",
        "True",
    )
    assert (second["edited_text"], second["final_text"], second["rating"], second["constraints_passed"]) == (
        "Plant pure joy.",
        "Plant pure joy.",
        "",
        "False",
    )


def test_csv_cells_cannot_run_as_spreadsheet_formulas(cast, job):
    VariantFactory(job=job, index=0, text='=HYPERLINK("http://evil.test","Click")')

    rows = _csv_rows(export_csv(cast.project))

    assert rows[0]["text"] == '\'=HYPERLINK("http://evil.test","Click")'


def test_csv_of_a_project_without_jobs_is_the_header(cast):
    assert export_csv(cast.sibling_project).splitlines() == [
        "job_id,variant_id,created_at,template,template_version,inputs,index,revision,text,edited_text,final_text,"
        "finish_reason,rating,approved,brand_fit,constraints_passed,facts_supported,facts_unsupported,facts_flagged"
    ]


def test_jsonl_keeps_approved_and_well_rated_variants_as_chat_conversations(cast, client_for, job):
    BrandVoice.objects.create(project=cast.project, tone="Warm", words_to_avoid=["cheap"])
    won = {"experiment": "e1", "lift": 0.25, "conversions": 40, "exposures": 400, "baseline": "A"}
    VariantFactory(
        job=job, index=0, text="Approved take.", edited_text="Approved, edited.", approved=True, outcome=won
    )
    VariantFactory(job=job, index=1, text="Rated four.", rating=4)
    VariantFactory(job=job, index=2, text="Rated two.", rating=2)
    VariantFactory(job=job, index=3, text="Unrated.")
    VariantFactory(job=job, index=4, text="", finish_reason="blocked", approved=True)  # withheld by moderation

    response = client_for(cast.viewer).get(f"/api/v1/projects/{cast.project.pk}/export.jsonl")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/jsonl; charset=utf-8"
    lines = _jsonl(response.content.decode())
    assert [(line["approved"], line["rating"], line["outcome"]) for line in lines] == [
        (True, None, won), (False, 4, None)  # an experiment's winner carries its measured lift
    ]
    system, user, assistant = lines[0]["messages"]
    assert system["role"] == "system"
    assert system["content"].startswith("You write taglines.")
    assert "Tone: Warm." in system["content"] and "cheap" in system["content"]
    assert user == {"role": "user", "content": "Tagline for Tulip bulbs, for gardeners."}
    assert assistant == {"role": "assistant", "content": "Approved, edited."}
    assert lines[1]["messages"][2]["content"] == "Rated four."


def test_jsonl_all_keeps_every_variant_with_text(cast, client_for, job):
    VariantFactory(job=job, index=0, text="Approved.", approved=True)
    VariantFactory(job=job, index=1, text="Unrated.")
    VariantFactory(job=job, index=2, text="", finish_reason="blocked")

    response = client_for(cast.viewer).get(f"/api/v1/projects/{cast.project.pk}/export.jsonl", {"all": "1"})

    assert [line["messages"][-1]["content"] for line in _jsonl(response.content.decode())] == ["Approved.", "Unrated."]


def test_jsonl_has_no_few_shot_examples(cast, job):
    """Approved copy of the same template would be few-shot turns at generation time; not in training data."""
    VariantFactory(job=job, index=0, text="One.", approved=True)
    other = GenerationJobFactory(
        project=cast.project, template_version=job.template_version, status=JobStatus.SUCCEEDED
    )
    VariantFactory(job=other, index=0, text="Two.", approved=True)

    lines = _jsonl(export_jsonl(cast.project))

    assert len(lines) == 2
    assert all([m["role"] for m in line["messages"]] == ["system", "user", "assistant"] for line in lines)


def test_project_key_exports_only_its_project(cast, key_for, job):
    VariantFactory(job=job, index=0, text="Spring copy", approved=True)
    client, _, _ = key_for("read", project=cast.sibling_project)

    for suffix in ("export.csv", "export.jsonl"):
        response = client.get(f"/api/v1/projects/{cast.project.pk}/{suffix}")
        assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_outsider_cannot_export_acme(cast, client_for, outsider_key, job):
    VariantFactory(job=job, index=0, text="Spring copy", approved=True)

    for client in (client_for(cast.outsider), outsider_key):
        for suffix in ("export.csv", "export.jsonl"):
            response = client.get(f"/api/v1/projects/{cast.project.pk}/{suffix}")
            assert response.status_code == 404
            assert b"Spring copy" not in response.content
