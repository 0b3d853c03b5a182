"""Projects through the API: slugs, validation, and which organization a session acts in."""

from __future__ import annotations

import pytest

from organizations.models import Role
from projects.models import Project
from tests.support.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("slug", [None, ""], ids=["missing", "blank"])
def test_project_without_slug_gets_one_from_its_name(cast, client_for, slug):
    body = {"name": "Black Friday"} | ({} if slug is None else {"slug": slug})

    response = client_for(cast.editor).post("/api/v1/projects/", body, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["slug"] == "black-friday"
    assert Project.objects.filter(organization=cast.org, slug="black-friday").exists()


def test_slug_from_a_taken_name_is_made_unique(cast, client_for):
    response = client_for(cast.editor).post("/api/v1/projects/", {"name": "Spring"}, format="json")

    assert response.status_code == 201
    assert response.json()["slug"] == "spring-2"
    assert Project.objects.filter(organization=cast.org, name="Spring").count() == 2


def test_explicit_taken_slug_is_409(cast, client_for):
    response = client_for(cast.editor).post("/api/v1/projects/", {"name": "Other", "slug": "spring"}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "slug_taken"
    assert not Project.objects.filter(name="Other").exists()


def test_renaming_slug_to_a_taken_one_is_409(cast, client_for):
    response = client_for(cast.editor).patch(f"/api/v1/projects/{cast.project.pk}/", {"slug": "autumn"}, format="json")

    assert response.status_code == 409
    cast.project.refresh_from_db()
    assert cast.project.slug == "spring"


def test_same_slug_in_another_organization_is_fine(cast, client_for):
    response = client_for(cast.outsider).post("/api/v1/projects/", {"name": "Spring", "slug": "spring"}, format="json")

    assert response.status_code == 201
    assert Project.objects.filter(slug="spring").count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"name": "Ok", "slug": "not a slug!"}, "slug"),
        ({"name": "Ok", "default_language": "klingon"}, "default_language"),
        ({"name": "Ok", "description": "d" * 2001}, "description"),
        ({"name": None}, "name"),
    ],
)
def test_invalid_project_is_400_naming_the_field(cast, client_for, body, field):
    response = client_for(cast.editor).post("/api/v1/projects/", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["fields"]
    assert Project.objects.filter(organization=cast.org).count() == 2


def test_read_only_fields_are_ignored(cast, client_for):
    response = client_for(cast.editor).patch(
        f"/api/v1/projects/{cast.project.pk}/",
        {
            "id": str(cast.outsider_project.pk),
            "created_by": "owner@acme.test",
            "organization": str(cast.outsider_org.pk),
        },
        format="json",
    )

    assert response.status_code == 200
    cast.project.refresh_from_db()
    assert cast.project.organization == cast.org
    assert response.json()["id"] == str(cast.project.pk)


# --- Which organization a session acts in --------------------------------------------------------


def test_member_of_two_organizations_picks_one_with_the_header(cast, client_for):
    MembershipFactory(organization=cast.outsider_org, user=cast.editor, role=Role.VIEWER)
    client = client_for(cast.editor)

    by_slug = client.get("/api/v1/projects/", HTTP_X_ORGANIZATION="globex")
    by_id = client.get("/api/v1/projects/", HTTP_X_ORGANIZATION=str(cast.org.pk))

    assert [p["slug"] for p in by_slug.json()["results"]] == ["secret"]
    assert sorted(p["slug"] for p in by_id.json()["results"]) == ["autumn", "spring"]


def test_viewer_role_applies_in_the_organization_picked(cast, client_for):
    MembershipFactory(organization=cast.outsider_org, user=cast.editor, role=Role.VIEWER)

    response = client_for(cast.editor).post(
        "/api/v1/projects/", {"name": "Sneaky"}, format="json", HTTP_X_ORGANIZATION="globex"
    )

    assert response.status_code == 403
    assert not Project.objects.filter(name="Sneaky").exists()


@pytest.mark.parametrize("header", ["globex", "{outsider_org_id}", "nope", "ac\x00me", "x" * 500])
def test_header_naming_an_organization_one_is_not_in_is_404(cast, client_for, header):
    response = client_for(cast.editor).get(
        "/api/v1/projects/", HTTP_X_ORGANIZATION=header.format(outsider_org_id=cast.outsider_org.pk)
    )

    assert response.status_code == 404
    assert response.json()["code"] == "organization_not_found"


def test_user_without_organization_is_told_to_create_one(cast, client_for):
    response = client_for(UserFactory()).get("/api/v1/projects/")

    assert response.status_code == 403
    assert "create one" in response.json()["detail"]
