"""A key restricted to one project sees that project only, and nothing organization-wide."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apikeys.models import ApiKey
from organizations.models import Membership
from projects.models import Project
from tests.api_routes import db_state, row_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def spring_key(cast, key_for):
    """A write key of Acme restricted to the Spring project (Autumn is its sibling)."""
    client, _, _ = key_for("write", project=cast.project)
    return client


def test_lists_only_its_project(cast, spring_key):
    response = spring_key.get("/api/v1/projects/")

    assert response.status_code == 200
    assert [p["id"] for p in response.json()["results"]] == [str(cast.project.pk)]
    assert response.json()["count"] == 1


def test_reads_and_edits_its_project(cast, spring_key):
    read = spring_key.get(f"/api/v1/projects/{cast.project.pk}/")
    edited = spring_key.patch(f"/api/v1/projects/{cast.project.pk}/", {"description": "Bulbs"}, format="json")

    assert read.status_code == 200
    assert edited.status_code == 200
    cast.project.refresh_from_db()
    assert cast.project.description == "Bulbs"


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("get", None),
        ("patch", {"name": "Taken over"}),
        ("put", {"name": "Taken over", "slug": "taken-over"}),
        ("delete", None),
    ],
)
def test_sibling_project_is_404(cast, spring_key, method, body):
    before = row_of(cast.sibling_project)

    response = getattr(spring_key, method)(f"/api/v1/projects/{cast.sibling_project.pk}/", body, format="json")

    assert response.status_code == 404, (response.status_code, response.content)
    assert response.json()["code"] == "not_found"
    assert row_of(cast.sibling_project) == before


def test_cannot_create_projects(cast, spring_key):
    response = spring_key.post("/api/v1/projects/", {"name": "Winter"}, format="json")

    assert response.status_code == 403
    assert "restricted to one project" in response.json()["detail"]
    assert not Project.objects.filter(name="Winter").exists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/members/", None),
        ("get", "/api/v1/members/{member}/", None),
        ("patch", "/api/v1/members/{member}/", {"role": "admin"}),
        ("delete", "/api/v1/members/{member}/", None),
        ("post", "/api/v1/members/{member}/transfer-ownership/", None),
        ("post", "/api/v1/members/leave/", None),
        ("get", "/api/v1/invitations/", None),
        ("post", "/api/v1/invitations/", {"email": "x@example.com", "role": "viewer"}),
        ("get", "/api/v1/api-keys/", None),
        ("post", "/api/v1/api-keys/", {"name": "Escalate"}),
    ],
)
def test_cannot_reach_organization_resources(cast, spring_key, method, path, body):
    member = Membership.objects.get(organization=cast.org, user=cast.viewer)
    before = db_state()

    response = getattr(spring_key, method)(path.format(member=member.pk), body, format="json")

    assert response.status_code == 403, (response.status_code, response.content)
    assert response.json()["code"] == "permission_denied"
    assert db_state() == before


def test_me_shows_the_restriction(cast, spring_key):
    body = spring_key.get("/api/v1/me/").json()

    assert body["api_key"]["project"] == str(cast.project.pk)
    assert body["user"] is None
    assert body["organization"]["id"] == str(cast.org.pk)


def test_key_cannot_be_restricted_to_another_organizations_project(cast, client_for):
    response = client_for(cast.admin).post(
        "/api/v1/api-keys/", {"name": "Cross", "project": str(cast.outsider_project.pk)}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_project"
    assert not ApiKey.objects.filter(name="Cross").exists()


def test_admin_creates_restricted_key_that_works(cast, client_for):
    created = client_for(cast.admin).post(
        "/api/v1/api-keys/", {"name": "Spring only", "project": str(cast.project.pk), "scope": "read"}, format="json"
    )
    assert created.status_code == 201, created.json()
    key = ApiKey.objects.get(pk=created.json()["id"])
    assert (key.project, key.scope) == (cast.project, "read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.json()['key']}")
    assert [p["slug"] for p in client.get("/api/v1/projects/").json()["results"]] == ["spring"]
