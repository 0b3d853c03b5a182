from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_owner_lists_own_projects_only(cast, client_for):
    response = client_for(cast.owner).get("/api/v1/projects/")
    assert response.status_code == 200
    names = sorted(p["name"] for p in response.json()["results"])
    assert names == ["Autumn", "Spring"]


def test_key_creates_project(cast, key_for):
    client, _, _ = key_for("write")
    response = client.post("/api/v1/projects/", {"name": "Launch"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["slug"] == "launch"
    assert cast.org.projects.filter(slug="launch").exists()


def test_outsider_gets_404_on_project(cast, outsider_key):
    response = outsider_key.get(f"/api/v1/projects/{cast.project.pk}/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
