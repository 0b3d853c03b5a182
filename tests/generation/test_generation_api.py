"""The generation API: templates, brand voice, jobs and variants.

No worker runs: ``generation.dispatch.enqueue`` and ``generation.dispatch.regenerate_variant`` are patched,
and variants are stored directly with factories.
"""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from generation.models import BrandVoice, GenerationJob, JobStatus, Template, TemplateVersion, Variant
from tests.api_routes import assert_error_shape
from tests.support.generation_factories import GenerationJobFactory, TemplateVersionFactory, VariantFactory

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"


@pytest.fixture
def enqueue():
    with mock.patch("generation.dispatch.enqueue") as patched:
        yield patched


def _job_body(cast, **overrides):
    body = {
        "project": str(cast.project.pk),
        "template": "product-description",
        "inputs": {"product": "Trail runner 2", "features": "Light, grippy sole"},
        "num_variants": 2,
        "max_new_tokens": 80,
        "temperature": 0.5,
        "seed": 7,
    }
    body.update(overrides)
    return body


def _jobs(cast):
    """Jobs of the cast's organizations only: the test database may hold rows other sessions committed."""
    return GenerationJob.objects.filter(organization__in=[cast.org, cast.outsider_org])


def _voices(cast):
    return BrandVoice.objects.filter(project__organization__in=[cast.org, cast.outsider_org])


def _builtin(slug="product-description"):
    return TemplateVersion.objects.filter(template__organization=None, template__slug=slug).order_by("-version")[0]


# --- templates ---------------------------------------------------------------------------------


def test_templates_lists_builtins_and_own_never_another_organizations(cast, client_for):
    own = TemplateVersionFactory(template__organization=cast.org, template__name="Acme tagline").template
    TemplateVersionFactory(template__organization=cast.outsider_org, template__name="Globex secret")
    builtins = Template.objects.filter(organization=None).count()

    response = client_for(cast.viewer).get("/api/v1/templates/", {"limit": 200})

    assert response.status_code == 200
    body = response.json()
    names = {t["name"] for t in body["results"]}
    assert body["count"] == builtins + 1
    assert "Acme tagline" in names and "Globex secret" not in names
    listed = {t["id"]: t for t in body["results"]}
    assert listed[str(own.pk)]["is_builtin"] is False
    assert listed[str(own.pk)]["latest_version"] == 1
    assert listed[str(_builtin().template_id)]["is_builtin"] is True


def test_templates_filter_by_category(cast, client_for):
    TemplateVersionFactory(template__organization=cast.org, template__category="custom")

    response = client_for(cast.viewer).get("/api/v1/templates/", {"category": "ads"})

    categories = {t["category"] for t in response.json()["results"]}
    slugs = {t["slug"] for t in response.json()["results"]}
    assert categories == {"ads"}
    assert slugs == set(Template.objects.filter(category="ads", organization=None).values_list("slug", flat=True))


def test_builtin_template_detail_has_its_versions(cast, client_for):
    version = _builtin()

    detail = client_for(cast.viewer).get(f"/api/v1/templates/{version.template_id}/")
    versions = client_for(cast.viewer).get(f"/api/v1/templates/{version.template_id}/versions/")

    assert detail.status_code == 200
    assert detail.json()["slug"] == "product-description"
    assert [v["version"] for v in detail.json()["versions"]] == [version.version]
    assert detail.json()["versions"][0]["variables"][0]["name"] == "product"
    assert versions.status_code == 200
    assert [v["id"] for v in versions.json()] == [str(version.pk)]


def test_another_organizations_template_is_404(cast, client_for):
    theirs = TemplateVersionFactory(template__organization=cast.outsider_org).template

    for path in (f"/api/v1/templates/{theirs.pk}/", f"/api/v1/templates/{theirs.pk}/versions/"):
        response = client_for(cast.owner).get(path)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_editor_creates_a_template(cast, client_for):
    body = {
        "name": "Shoe size note",
        "category": "ecommerce",
        "variables": [{"name": "shoe", "label": "Shoe", "required": True, "max_length": 60}],
        "prompt": "Write a sizing note for {shoe}.",
        "constraints": {"max_words": 40},
        "default_max_new_tokens": 90,
    }

    response = client_for(cast.editor).post("/api/v1/templates/", body, format="json")

    assert response.status_code == 201, response.json()
    template = Template.objects.get(organization=cast.org, slug="shoe-size-note")
    version = template.versions.get()
    assert response.json()["id"] == str(template.pk)
    assert response.json()["versions"][0]["version"] == 1
    assert (template.name, template.category) == ("Shoe size note", "ecommerce")
    assert (version.version, version.prompt, version.constraints) == (1, body["prompt"], {"max_words": 40})
    assert (version.default_max_new_tokens, version.created_by) == (90, cast.editor)


@pytest.mark.parametrize("name", ["日本語のテンプレート", "|"])
def test_a_name_without_ascii_letters_gets_a_generated_slug(cast, client_for, name):
    body = {"name": name, "variables": [{"name": "x"}], "prompt": "{x}"}

    response = client_for(cast.editor).post("/api/v1/templates/", body, format="json")

    assert response.status_code == 201, response.json()
    template = Template.objects.get(organization=cast.org)
    assert template.name == name
    assert template.slug.startswith("template-") and response.json()["slug"] == template.slug


def test_template_with_an_undeclared_variable_is_refused(cast, client_for):
    body = {"name": "Broken", "variables": [{"name": "shoe"}], "prompt": "About {shoe} and {sock}."}

    response = client_for(cast.editor).post("/api/v1/templates/", body, format="json")

    assert response.status_code == 400
    assert assert_error_shape(response)["code"] == "invalid_template"
    assert "sock" in response.json()["detail"]
    assert not Template.objects.filter(organization=cast.org).exists()


def test_template_slug_taken_is_409(cast, client_for):
    TemplateVersionFactory(template__organization=cast.org, template__slug="tagline")
    body = {"name": "Tagline", "variables": [{"name": "x"}], "prompt": "{x}"}

    response = client_for(cast.editor).post("/api/v1/templates/", body, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "slug_taken")
    assert Template.objects.filter(organization=cast.org).count() == 1


def test_editor_adds_a_version_to_an_own_template(cast, client_for):
    template = TemplateVersionFactory(template__organization=cast.org).template
    body = {"variables": [{"name": "product"}], "prompt": "Shorter: {product}.", "changelog": "Shorter"}

    response = client_for(cast.editor).post(f"/api/v1/templates/{template.pk}/versions/", body, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["version"] == 2
    latest = template.versions.order_by("-version").first()
    assert (latest.version, latest.prompt, latest.changelog, latest.created_by) == (
        2,
        "Shorter: {product}.",
        "Shorter",
        cast.editor,
    )


def test_builtin_templates_are_read_only(cast, client_for):
    version = _builtin()
    body = {"variables": [{"name": "product"}], "prompt": "Hijacked {product}."}

    response = client_for(cast.owner).post(f"/api/v1/templates/{version.template_id}/versions/", body, format="json")

    assert response.status_code == 403
    assert assert_error_shape(response)["code"] == "builtin"
    assert TemplateVersion.objects.filter(template_id=version.template_id).count() == 1


def test_viewer_cannot_create_templates(cast, client_for):
    body = {"name": "Nope", "variables": [{"name": "x"}], "prompt": "{x}"}

    response = client_for(cast.viewer).post("/api/v1/templates/", body, format="json")

    assert response.status_code == 403
    assert not Template.objects.filter(organization=cast.org).exists()


# --- brand voice -------------------------------------------------------------------------------


def _voice_url(project):
    return f"/api/v1/projects/{project.pk}/brand-voice/"


def test_brand_voice_is_empty_until_saved(cast, client_for):
    response = client_for(cast.viewer).get(_voice_url(cast.project))

    assert response.status_code == 200
    assert response.json()["tone"] == "" and response.json()["words_to_use"] == []
    assert not _voices(cast).exists()


def test_editor_puts_then_patches_the_brand_voice(cast, client_for):
    client = client_for(cast.editor)
    put = client.put(
        _voice_url(cast.project),
        {"tone": "Warm", "audience": "Gardeners", "words_to_use": ["bloom", " "], "words_to_avoid": ["cheap"]},
        format="json",
    )
    patched = client.patch(_voice_url(cast.project), {"tone": "Playful"}, format="json")

    assert (put.status_code, patched.status_code) == (200, 200)
    voice = BrandVoice.objects.get(project=cast.project)
    assert (voice.tone, voice.audience, voice.words_to_use, voice.words_to_avoid) == (
        "Playful",
        "Gardeners",
        ["bloom"],
        ["cheap"],
    )
    assert patched.json()["tone"] == "Playful" and patched.json()["words_to_avoid"] == ["cheap"]


def test_put_replaces_the_whole_brand_voice(cast, client_for):
    BrandVoice.objects.create(project=cast.project, tone="Warm", words_to_use=["bloom"])

    response = client_for(cast.editor).put(_voice_url(cast.project), {"audience": "Florists"}, format="json")

    assert response.status_code == 200
    voice = BrandVoice.objects.get(project=cast.project)
    assert (voice.tone, voice.audience, voice.words_to_use) == ("", "Florists", [])


def test_brand_voice_limits_are_a_400(cast, client_for):
    response = client_for(cast.editor).patch(
        _voice_url(cast.project), {"words_to_avoid": [f"w{i}" for i in range(51)]}, format="json"
    )

    assert response.status_code == 400
    assert "words_to_avoid" in assert_error_shape(response)["fields"]
    assert not _voices(cast).exists()


def test_viewer_and_read_key_cannot_change_the_brand_voice(cast, client_for, key_for):
    read_key, _, _ = key_for("read")

    for client in (client_for(cast.viewer), read_key):
        response = client.put(_voice_url(cast.project), {"tone": "Grim"}, format="json")
        assert response.status_code == 403
    assert not _voices(cast).exists()


def test_project_key_reaches_only_its_projects_brand_voice(cast, key_for):
    client, _, _ = key_for("write", project=cast.project)

    own = client.patch(_voice_url(cast.project), {"tone": "Warm"}, format="json")
    sibling = client.patch(_voice_url(cast.sibling_project), {"tone": "Warm"}, format="json")

    assert own.status_code == 200
    assert (sibling.status_code, sibling.json()["code"]) == (404, "not_found")
    assert list(_voices(cast).values_list("project_id", flat=True)) == [cast.project.pk]


# --- submitting jobs ---------------------------------------------------------------------------


def test_editor_submits_a_job(cast, client_for, enqueue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.editor).post(JOBS, _job_body(cast), format="json")

    assert response.status_code == 201, response.json()
    job = _jobs(cast).get()
    assert response.json()["id"] == str(job.pk)
    assert response.json()["status"] == "queued" and response.json()["variants"] == []
    assert (job.organization, job.project, job.template_version) == (cast.org, cast.project, _builtin())
    assert job.inputs == {"product": "Trail runner 2", "features": "Light, grippy sole"}
    assert (job.num_variants, job.max_new_tokens, job.temperature, job.top_p, job.seed) == (2, 80, 0.5, 0.95, 7)
    assert (job.requested_by, job.api_key, job.status) == (cast.editor, None, JobStatus.QUEUED)
    enqueue.assert_called_once_with(job.pk)


@pytest.mark.parametrize("caller", ["session", "key"])
def test_the_201_body_is_what_reading_the_stored_job_returns(cast, client_for, key_for, enqueue, caller):
    # The 201 is built from the job in memory (no read-back): it must match the stored row field for field,
    # integer parameters included (a temperature of 1 reads back as 1.0).
    client = client_for(cast.editor) if caller == "session" else key_for("write")[0]

    created = client.post(JOBS, _job_body(cast, temperature=1, top_p=1), format="json")
    again = client.get(f"{JOBS}{created.json()['id']}/")

    assert created.status_code == 201, created.json()
    assert created.json() == again.json()


def test_job_by_template_id_and_pinned_version_with_a_key(cast, key_for, enqueue):
    client, key, _ = key_for("write")
    version = TemplateVersionFactory(template__organization=cast.org)
    TemplateVersionFactory(template=version.template, version=2)

    response = client.post(
        JOBS,
        _job_body(cast, template=str(version.template_id), template_version=1, inputs={"product": "Bulbs"}),
        format="json",
    )

    assert response.status_code == 201, response.json()
    job = _jobs(cast).get()
    assert (job.template_version, job.api_key, job.requested_by) == (version, key, None)
    assert (response.json()["template_version"], response.json()["template"]) == (1, version.template.slug)


def test_omitted_parameters_take_the_defaults(cast, client_for, enqueue):
    body = {"project": str(cast.project.pk), "template": "product-description", "inputs": {"product": "Bulbs"}}

    response = client_for(cast.editor).post(JOBS, body, format="json")

    assert response.status_code == 201
    job = _jobs(cast).get()
    assert (job.num_variants, job.max_new_tokens) == (1, _builtin().default_max_new_tokens)


def test_same_idempotency_key_and_body_returns_the_first_job(
    cast, client_for, enqueue, django_capture_on_commit_callbacks
):
    client = client_for(cast.editor)

    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(JOBS, _job_body(cast), format="json", HTTP_IDEMPOTENCY_KEY="order-42")
        again = client.post(JOBS, _job_body(cast), format="json", HTTP_IDEMPOTENCY_KEY="order-42")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert _jobs(cast).count() == 1
    assert _jobs(cast).get().idempotency_key == "order-42"
    enqueue.assert_called_once()


def test_same_idempotency_key_with_another_body_is_409(cast, client_for, enqueue):
    client = client_for(cast.editor)
    client.post(JOBS, _job_body(cast), format="json", HTTP_IDEMPOTENCY_KEY="order-42")

    response = client.post(JOBS, _job_body(cast, seed=8), format="json", HTTP_IDEMPOTENCY_KEY="order-42")

    assert response.status_code == 409
    assert assert_error_shape(response)["code"] == "idempotency_key_reused"
    assert _jobs(cast).get().seed == 7


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"inputs": {"product": "Bulbs", "colour": "red"}}, "invalid_inputs", "inputs.colour"),
        ({"inputs": {"features": "Light"}}, "invalid_inputs", "inputs.product"),
        ({"inputs": {"product": "x" * 121}}, "invalid_inputs", "inputs.product"),
        ({"inputs": {"product": "Bulbs\x00"}}, "invalid_inputs", "inputs.product"),
        ({"inputs": ["product"]}, "invalid_inputs", "inputs"),
        ({"num_variants": 99}, "invalid_parameters", "num_variants"),
        ({"max_new_tokens": 100_000}, "invalid_parameters", "max_new_tokens"),
        ({"temperature": 3}, "invalid_parameters", "temperature"),
        ({"template_version": 9}, "unknown_template_version", "template_version"),
        ({"template_version": 0}, "invalid", "template_version"),
        ({"project": "not-a-uuid"}, "invalid", "project"),
    ],
    ids=[
        "unknown-variable",
        "missing-required",
        "too-long",
        "nul",
        "inputs-not-object",
        "too-many-variants",
        "too-many-tokens",
        "temperature",
        "unknown-version",
        "version-zero",
        "bad-project",
    ],
)
def test_invalid_job_is_refused_and_writes_nothing(cast, client_for, enqueue, overrides, code, field):
    response = client_for(cast.editor).post(JOBS, _job_body(cast, **overrides), format="json")

    assert response.status_code in (400, 422), response.json()
    body = assert_error_shape(response)
    assert body["code"] == code
    assert field in body["fields"], body
    assert not _jobs(cast).exists()
    enqueue.assert_not_called()


def test_unknown_template_is_404(cast, client_for, enqueue):
    TemplateVersionFactory(template__organization=cast.outsider_org, template__slug="globex-only")

    for template in ("no-such-template", "globex-only"):
        response = client_for(cast.editor).post(JOBS, _job_body(cast, template=template), format="json")
        assert (response.status_code, response.json()["code"]) == (404, "template_not_found")
    assert not _jobs(cast).exists()


def test_viewer_and_read_key_cannot_submit(cast, client_for, key_for, enqueue):
    read_key, _, _ = key_for("read")

    for client in (client_for(cast.viewer), read_key):
        response = client.post(JOBS, _job_body(cast), format="json")
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
    assert not _jobs(cast).exists()


def test_project_key_submits_only_to_its_project(cast, key_for, enqueue):
    client, _, _ = key_for("write", project=cast.project)

    other = client.post(JOBS, _job_body(cast, project=str(cast.sibling_project.pk)), format="json")
    own = client.post(JOBS, _job_body(cast), format="json")

    assert (other.status_code, other.json()["code"]) == (404, "project_not_found")
    assert own.status_code == 201
    assert list(_jobs(cast).values_list("project_id", flat=True)) == [cast.project.pk]


def test_outsider_cannot_submit_to_an_acme_project(cast, client_for, outsider_key, enqueue):
    for client in (client_for(cast.outsider), outsider_key):
        response = client.post(JOBS, _job_body(cast), format="json")
        assert (response.status_code, response.json()["code"]) == (404, "project_not_found")
    assert not _jobs(cast).exists()


# --- reading jobs ------------------------------------------------------------------------------


def test_job_detail_shows_the_current_variants(cast, client_for):
    job = GenerationJobFactory(project=cast.project, status=JobStatus.SUCCEEDED, completion_tokens=30)
    VariantFactory(job=job, index=0, revision=0, is_current=False, text="Old take")
    VariantFactory(job=job, index=0, revision=1, text="New take", rating=4, approved=True)
    VariantFactory(
        job=job,
        index=1,
        text="Second",
        edited_text="Second, edited",
        finish_reason="length",
        constraints_passed=False,
        brand_fit=0.25,
    )

    response = client_for(cast.viewer).get(f"{JOBS}{job.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["completion_tokens"], body["template"]) == (
        "succeeded",
        30,
        job.template_version.template.slug,
    )
    first, second = body["variants"]
    assert (first["index"], first["revision"], first["text"], first["rating"], first["approved"]) == (
        0,
        1,
        "New take",
        4,
        True,
    )
    assert (second["final_text"], second["edited_text"], second["finish_reason"]) == (
        "Second, edited",
        "Second, edited",
        "length",
    )
    assert (second["constraints_passed"], second["brand_fit"], second["tokens"]) == (False, 0.25, 9)
    assert second["constraint_report"][0]["constraint"] == "max_chars"


def test_job_list_filters(cast, client_for):
    old = GenerationJobFactory(project=cast.project, status=JobStatus.SUCCEEDED, inputs={"product": "Tulips"})
    GenerationJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    queued = GenerationJobFactory(project=cast.project, inputs={"product": "Daffodils"})
    sibling = GenerationJobFactory(
        project=cast.sibling_project, template_version=_builtin(), inputs={"product": "Roses"}
    )
    GenerationJobFactory(project=cast.outsider_project, inputs={"product": "Tulips"})
    client = client_for(cast.viewer)

    def ids(**params):
        response = client.get(JOBS, params)
        assert response.status_code == 200, response.json()
        return {j["id"] for j in response.json()["results"]}

    assert ids() == {str(old.pk), str(queued.pk), str(sibling.pk)}
    assert ids(status="queued") == {str(queued.pk), str(sibling.pk)}
    assert ids(project=str(cast.sibling_project.pk)) == {str(sibling.pk)}
    assert ids(template="product-description") == {str(sibling.pk)}
    assert ids(template=str(old.template_version.template_id)) == {str(old.pk)}
    assert ids(search="tulip") == {str(old.pk)}
    assert ids(created_before=(timezone.now() - timedelta(days=1)).isoformat()) == {str(old.pk)}
    assert ids(created_after=(timezone.now() - timedelta(days=1)).isoformat()) == {str(queued.pk), str(sibling.pk)}


def test_job_list_rejects_a_bad_filter(cast, client_for):
    response = client_for(cast.viewer).get(JOBS, {"status": "exploded"})

    assert response.status_code == 400
    assert "status" in assert_error_shape(response)["fields"]


def test_project_key_lists_only_its_projects_jobs(cast, key_for):
    own = GenerationJobFactory(project=cast.project)
    sibling = GenerationJobFactory(project=cast.sibling_project)
    client, _, _ = key_for("read", project=cast.project)

    listing = client.get(JOBS)
    other = client.get(f"{JOBS}{sibling.pk}/")

    assert [j["id"] for j in listing.json()["results"]] == [str(own.pk)]
    assert other.status_code == 404


# --- cancel ------------------------------------------------------------------------------------


def test_editor_cancels_a_queued_job(cast, client_for):
    job = GenerationJobFactory(project=cast.project, status=JobStatus.QUEUED)

    response = client_for(cast.editor).post(f"{JOBS}{job.pk}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED and job.cancel_requested_at is not None


def test_cancel_of_a_finished_job_is_409(cast, client_for):
    job = GenerationJobFactory(project=cast.project, status=JobStatus.SUCCEEDED)

    response = client_for(cast.editor).post(f"{JOBS}{job.pk}/cancel/")

    assert (response.status_code, response.json()["code"]) == (409, "job_final")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.cancel_requested_at is None


def test_viewer_cannot_cancel(cast, client_for):
    job = GenerationJobFactory(project=cast.project, status=JobStatus.QUEUED)

    response = client_for(cast.viewer).post(f"{JOBS}{job.pk}/cancel/")

    assert response.status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


# --- variants ----------------------------------------------------------------------------------


def test_editor_gives_feedback_on_a_variant(cast, client_for):
    variant = VariantFactory(job__project=cast.project, index=0)

    response = client_for(cast.editor).patch(
        f"/api/v1/variants/{variant.pk}/",
        {"rating": 5, "edited_text": " Bloom on. ", "approved": True},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["rating"], response.json()["final_text"]) == (5, "Bloom on.")
    variant.refresh_from_db()
    assert (variant.rating, variant.edited_text, variant.approved, variant.approved_by) == (
        5,
        "Bloom on.",
        True,
        cast.editor,
    )
    assert variant.approved_at is not None


def test_feedback_with_a_bad_rating_changes_nothing(cast, client_for):
    variant = VariantFactory(job__project=cast.project, index=0)

    response = client_for(cast.editor).patch(
        f"/api/v1/variants/{variant.pk}/", {"rating": 6, "approved": True}, format="json"
    )

    assert response.status_code == 400
    assert "rating" in assert_error_shape(response)["fields"]
    variant.refresh_from_db()
    assert (variant.rating, variant.approved) == (None, False)


def test_read_key_cannot_give_feedback(cast, key_for):
    variant = VariantFactory(job__project=cast.project, index=0)
    client, _, _ = key_for("read")

    response = client.patch(f"/api/v1/variants/{variant.pk}/", {"approved": True}, format="json")

    assert response.status_code == 403
    variant.refresh_from_db()
    assert variant.approved is False


def test_editor_regenerates_a_variant(cast, client_for, django_capture_on_commit_callbacks):
    variant = VariantFactory(job__project=cast.project, index=1)

    with mock.patch("generation.dispatch.regenerate_variant") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(cast.editor).post(f"/api/v1/variants/{variant.pk}/regenerate/")

    assert response.status_code == 202
    assert response.json() == {"job": str(variant.job_id), "index": 1, "revision": 1}
    delay.assert_called_once_with(str(variant.job_id), 1, 1)
    assert Variant.objects.get(pk=variant.pk).is_current  # until the new revision is stored


def test_regenerating_a_variant_of_an_unfinished_job_is_409(cast, client_for):
    variant = VariantFactory(job__project=cast.project, job__status=JobStatus.RUNNING, index=0)

    with mock.patch("generation.dispatch.regenerate_variant") as delay:
        response = client_for(cast.editor).post(f"/api/v1/variants/{variant.pk}/regenerate/")

    assert (response.status_code, response.json()["code"]) == (409, "job_not_succeeded")
    delay.assert_not_called()


def test_a_replaced_revision_is_404(cast, client_for):
    job = GenerationJobFactory(project=cast.project, status=JobStatus.SUCCEEDED)
    old = VariantFactory(job=job, index=0, revision=0, is_current=False)
    VariantFactory(job=job, index=0, revision=1)

    response = client_for(cast.editor).patch(f"/api/v1/variants/{old.pk}/", {"rating": 5}, format="json")

    assert response.status_code == 404
    old.refresh_from_db()
    assert old.rating is None


def test_outsider_gets_404_on_acme_jobs_and_variants(cast, client_for, outsider_key):
    variant = VariantFactory(job__project=cast.project, index=0)

    for client in (client_for(cast.outsider), outsider_key):
        calls = [
            client.get(f"{JOBS}{variant.job_id}/"),
            client.post(f"{JOBS}{variant.job_id}/cancel/"),
            client.get(f"/api/v1/variants/{variant.pk}/"),
            client.patch(f"/api/v1/variants/{variant.pk}/", {"rating": 1}, format="json"),
            client.post(f"/api/v1/variants/{variant.pk}/regenerate/"),
        ]
        assert [c.status_code for c in calls] == [404] * 5
        assert client.get(JOBS).json()["count"] == 0
    variant.refresh_from_db()
    assert variant.rating is None and variant.job.status == JobStatus.SUCCEEDED
