"""The history of jobs (search, filters, pages) and the brand voice editor of a project."""

from __future__ import annotations

import pytest

from generation.models import BrandVoice, JobStatus
from tests.support.generation_factories import TemplateVersionFactory
from tests.support.web_generation import builtin_version, job_for, succeeded_job

pytestmark = pytest.mark.django_db


# --- history ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "editor", "viewer"])
def test_every_member_reads_the_history(cast, client_for, role):
    succeeded_job(cast.project, inputs={"product": "Trail runner 2"})
    response = client_for(getattr(cast, role)).get("/jobs/")
    assert response.status_code == 200
    assert "Trail runner 2" in response.content.decode()


def test_history_shows_only_the_current_organization(cast, client_for):
    job_for(cast.project, inputs={"product": "Acme boots"})
    job_for(cast.outsider_project, inputs={"product": "Globex secret gadget"})
    body = client_for(cast.viewer).get("/jobs/").content.decode()
    assert "Acme boots" in body
    assert "Globex secret gadget" not in body


def test_search_matches_input_values_not_variable_names(cast, client_for):
    job_for(cast.project, inputs={"product": "Rain shell"})
    job_for(cast.project, inputs={"product": "Trail runner", "features": "100% recycled_nylon"})
    client = client_for(cast.viewer)
    assert _products(client.get("/jobs/?q=rain+SHELL")) == ["Rain shell"]
    assert _products(client.get("/jobs/?q=product")) == []
    # LIKE wildcards in the search are literal characters.
    assert _products(client.get("/jobs/?q=100%25")) == ["Trail runner"]
    assert _products(client.get("/jobs/?q=runne_")) == []


def test_filters_by_status_project_and_template(cast, client_for):
    job_for(cast.project, inputs={"product": "Queued one"})
    succeeded_job(cast.project, inputs={"product": "Done one"})
    job_for(cast.sibling_project, inputs={"product": "Autumn one"}, status=JobStatus.FAILED)
    other_template = TemplateVersionFactory(template__organization=cast.org)
    job_for(cast.project, inputs={"product": "Custom one"}, template_version=other_template)
    client = client_for(cast.viewer)
    assert _products(client.get("/jobs/?status=succeeded")) == ["Done one"]
    assert _products(client.get(f"/jobs/?project={cast.sibling_project.pk}")) == ["Autumn one"]
    assert _products(client.get(f"/jobs/?template={other_template.template_id}")) == ["Custom one"]
    template = builtin_version().template_id
    assert _products(client.get(f"/jobs/?template={template}&status=queued&project={cast.project.pk}")) == [
        "Queued one"
    ]


def test_another_organizations_project_is_not_a_filter(cast, client_for):
    job_for(cast.project, inputs={"product": "Ours"})
    response = client_for(cast.viewer).get(f"/jobs/?project={cast.outsider_project.pk}")
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert _products(response) == ["Ours"]


def test_history_is_paginated_and_keeps_the_filters(cast, client_for):
    for n in range(27):
        job_for(cast.project, inputs={"product": f"Item {n:02d}"}, status=JobStatus.SUCCEEDED)
    client = client_for(cast.viewer)
    first = client.get("/jobs/?status=succeeded")
    assert len(_products(first)) == 25
    assert "Page 1 of 2" in first.content.decode()
    assert 'href="?status=succeeded&amp;page=2"' in first.content.decode()
    second = client.get("/jobs/?status=succeeded&page=2")
    assert _products(second) == ["Item 01", "Item 00"]


def test_empty_history_invites_editors_to_generate(cast, client_for):
    assert "Generate copy" in client_for(cast.editor).get("/jobs/").content.decode()
    assert "Generate copy" not in client_for(cast.viewer).get("/jobs/").content.decode()


def _products(response):
    """The product input of each listed job, in page order."""
    return [job.inputs.get("product") for job in response.context["page"].object_list]


# --- brand voice -----------------------------------------------------------------------------------


def _voice_url(project):
    return f"/projects/{project.pk}/brand-voice/"


VOICE = {
    "tone": "Warm, playful",
    "audience": "Young families",
    "words_to_use": "bright, cosy,\nsunny, Bright",
    "words_to_avoid": "cheap , synergy",
    "example_texts": "Sunny mornings start here.\n\nCosy nights,\nbright days.\r\n\r\n  \n",
}


def test_editor_saves_the_brand_voice(cast, client_for):
    response = client_for(cast.editor).post(_voice_url(cast.project), VOICE)
    assert response.status_code == 302
    assert response["Location"] == _voice_url(cast.project)
    voice = BrandVoice.objects.get(project=cast.project)
    assert (voice.tone, voice.audience) == ("Warm, playful", "Young families")
    assert voice.words_to_use == ["bright", "cosy", "sunny"]
    assert voice.words_to_avoid == ["cheap", "synergy"]
    assert voice.example_texts == ["Sunny mornings start here.", "Cosy nights,\nbright days."]


def test_brand_voice_form_is_prefilled(cast, client_for):
    client = client_for(cast.editor)
    client.post(_voice_url(cast.project), VOICE)
    body = client.get(_voice_url(cast.project)).content.decode()
    assert 'value="Warm, playful"' in body
    assert "bright, cosy, sunny" in body
    assert "Sunny mornings start here.\n\nCosy nights,\nbright days." in body


def test_viewer_reads_the_brand_voice_without_a_save_button(cast, client_for):
    BrandVoice.objects.create(project=cast.project, tone="Calm")
    body = client_for(cast.viewer).get(_voice_url(cast.project)).content.decode()
    assert 'value="Calm"' in body and "disabled" in body
    assert "Save brand voice" not in body


def test_viewer_cannot_change_the_brand_voice(cast, client_for):
    BrandVoice.objects.create(project=cast.project, tone="Calm")
    response = client_for(cast.viewer).post(_voice_url(cast.project), {**VOICE, "tone": "Hacked"})
    assert response.status_code == 403
    assert BrandVoice.objects.get(project=cast.project).tone == "Calm"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tone", "x" * 201, "Ensure this value has at most 200 characters"),
        ("words_to_use", ", ".join(f"word{n}" for n in range(51)), "At most 50 words (got 51)."),
        ("words_to_avoid", "y" * 61, "Words are at most 60 characters"),
        ("example_texts", "\n\n".join(f"Example {n}" for n in range(11)), "At most 10 examples (got 11)."),
        ("example_texts", "z" * 2001, "Example 1 has 2,001 characters; at most 2,000."),
    ],
)
def test_bad_brand_voice_is_400_and_saves_nothing(cast, client_for, field, value, message):
    response = client_for(cast.editor).post(_voice_url(cast.project), {**VOICE, field: value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not BrandVoice.objects.filter(project=cast.project).exists()


def test_outsider_gets_404_on_the_brand_voice(cast, client_for):
    BrandVoice.objects.create(project=cast.project, tone="Calm")
    client = client_for(cast.outsider)
    assert client.get(_voice_url(cast.project)).status_code == 404
    assert client.post(_voice_url(cast.project), VOICE).status_code == 404
    assert BrandVoice.objects.get(project=cast.project).tone == "Calm"


def test_project_page_links_to_generation(cast, client_for):
    body = client_for(cast.editor).get(f"/projects/{cast.project.pk}/").content.decode()
    assert _voice_url(cast.project) in body
    assert f"/templates/?project={cast.project.pk}" in body
    assert f"/jobs/?project={cast.project.pk}" in body
