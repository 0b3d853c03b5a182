"""What a client reaches by the names it already has: a template by its slug, a job's variants by the job."""

from __future__ import annotations

import uuid

import pytest

from tests.api_routes import assert_error_shape
from tests.support.generation_factories import GenerationJobFactory, TemplateVersionFactory, VariantFactory

pytestmark = pytest.mark.django_db

TEMPLATES = "/api/v1/templates/"
VARIANTS = "/api/v1/variants/"


def _ids(response):
    return [row["id"] for row in response.json()["results"]]


# --- templates by slug ---------------------------------------------------------------------------


def test_template_detail_by_slug_and_by_id_is_the_same_template(cast, client_for):
    template = TemplateVersionFactory(template__organization=cast.org, template__slug="spring-tagline").template
    viewer = client_for(cast.viewer)

    by_slug = viewer.get(f"{TEMPLATES}spring-tagline/")
    by_id = viewer.get(f"{TEMPLATES}{template.pk}/")

    assert by_slug.status_code == 200, by_slug.content
    assert by_slug.json()["id"] == str(template.pk)
    assert by_slug.json() == by_id.json()
    assert [v["version"] for v in by_slug.json()["versions"]] == [1]


def test_template_versions_by_slug(cast, client_for):
    version = TemplateVersionFactory(template__organization=cast.org, template__slug="spring-tagline")

    response = client_for(cast.viewer).get(f"{TEMPLATES}spring-tagline/versions/")

    assert response.status_code == 200
    assert [v["id"] for v in response.json()] == [str(version.pk)]


def test_a_shared_template_is_found_by_its_slug(cast, client_for):
    shared = TemplateVersionFactory(template__organization=None, template__slug="shared-teaser").template

    response = client_for(cast.viewer).get(f"{TEMPLATES}shared-teaser/")

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["is_builtin"]) == (str(shared.pk), True)


def test_the_organizations_own_template_wins_over_a_shared_one_of_the_same_slug(cast, client_for):
    # as a job naming the slug gets the organization's own (generation.services.resolve_version)
    TemplateVersionFactory(template__organization=None, template__slug="teaser")
    own = TemplateVersionFactory(template__organization=cast.org, template__slug="teaser").template

    response = client_for(cast.viewer).get(f"{TEMPLATES}teaser/")

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["is_builtin"]) == (str(own.pk), False)


def test_outsider_gets_404_for_acmes_template_slug(cast, client_for, outsider_key):
    TemplateVersionFactory(template__organization=cast.org, template__slug="acme-secret")

    for client in (client_for(cast.outsider), outsider_key):
        response = client.get(f"{TEMPLATES}acme-secret/")
        versions = client.get(f"{TEMPLATES}acme-secret/versions/")
        missing = client.get(f"{TEMPLATES}no-such-template/")

        assert response.status_code == 404 and versions.status_code == 404
        assert assert_error_shape(response)["code"] == "not_found"
        assert response.json() == missing.json()  # nothing tells the slug exists


def test_adding_a_version_by_slug(cast, client_for):
    template = TemplateVersionFactory(template__organization=cast.org, template__slug="spring-tagline").template
    body = {"variables": [{"name": "product"}], "prompt": "Now {product}.", "changelog": "shorter"}

    response = client_for(cast.editor).post(f"{TEMPLATES}spring-tagline/versions/", body, format="json")

    assert response.status_code == 201, response.content
    latest = template.versions.order_by("-version").first()
    assert (latest.version, latest.prompt, latest.changelog) == (2, "Now {product}.", "shorter")
    assert response.json()["id"] == str(latest.pk)


# --- variants, listed --------------------------------------------------------------------------


def test_variants_of_one_job_in_index_order_current_revisions_only(cast, client_for):
    job = GenerationJobFactory(project=cast.project)
    VariantFactory(job=job, index=0, revision=0, is_current=False)  # replaced by a regeneration
    second, first = VariantFactory(job=job, index=1), VariantFactory(job=job, index=0, revision=1)
    VariantFactory(job__project=cast.project, index=0)  # another job's

    response = client_for(cast.viewer).get(VARIANTS, {"job": str(job.pk)})

    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert _ids(response) == [str(first.pk), str(second.pk)]
    assert {row["job"] for row in response.json()["results"]} == {str(job.pk)}


def test_variants_list_without_a_job_has_every_current_variant_of_the_organization_only(cast, client_for):
    ours = [VariantFactory(job__project=cast.project, index=0), VariantFactory(job__project=cast.sibling_project)]
    VariantFactory(job__project=cast.outsider_project, index=0)

    response = client_for(cast.viewer).get(VARIANTS)

    assert response.status_code == 200
    assert sorted(_ids(response)) == sorted(str(v.pk) for v in ours)


def test_outsider_lists_no_variant_of_acmes_job(cast, client_for, outsider_key):
    job = VariantFactory(job__project=cast.project, index=0).job

    for client in (client_for(cast.outsider), outsider_key):
        response = client.get(VARIANTS, {"job": str(job.pk)})
        everything = client.get(VARIANTS)

        assert response.status_code == 200
        assert response.json()["count"] == 0 and response.json()["results"] == []
        assert str(job.pk) not in everything.content.decode()


def test_project_key_lists_only_its_projects_variants(cast, key_for):
    mine = VariantFactory(job__project=cast.project, index=0)
    sibling = VariantFactory(job__project=cast.sibling_project, index=0)
    client, _, _ = key_for("read", project=cast.project)

    everything = client.get(VARIANTS)
    siblings_job = client.get(VARIANTS, {"job": str(sibling.job_id)})
    detail = client.get(f"{VARIANTS}{sibling.pk}/")

    assert _ids(everything) == [str(mine.pk)]
    assert siblings_job.json()["count"] == 0
    assert detail.status_code == 404


@pytest.mark.parametrize("job", ["not-a-job", "12345", str(uuid.uuid4())[:-1]])
def test_a_malformed_job_id_is_a_400_naming_it(cast, client_for, job):
    response = client_for(cast.viewer).get(VARIANTS, {"job": job})

    assert response.status_code == 400
    body = assert_error_shape(response)
    assert body["code"] == "invalid"
    assert list(body["fields"]) == ["job"] and "UUID" in body["detail"]


def test_an_unknown_job_lists_nothing(cast, client_for):
    VariantFactory(job__project=cast.project, index=0)

    response = client_for(cast.viewer).get(VARIANTS, {"job": str(uuid.uuid4())})

    assert (response.status_code, response.json()["count"]) == (200, 0)


def test_variant_detail(cast, client_for, outsider_key):
    variant = VariantFactory(job__project=cast.project, index=0, text="Bloom now.")

    mine = client_for(cast.viewer).get(f"{VARIANTS}{variant.pk}/")
    theirs = outsider_key.get(f"{VARIANTS}{variant.pk}/")

    assert (mine.status_code, mine.json()["id"], mine.json()["text"]) == (200, str(variant.pk), "Bloom now.")
    assert theirs.status_code == 404
