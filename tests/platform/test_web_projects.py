"""Project pages: editors create and edit, admins delete, viewers only read; other orgs are a 404."""

from __future__ import annotations

import pytest

from projects.models import Project

pytestmark = pytest.mark.django_db


def test_editor_creates_project(cast, client_for):
    response = client_for(cast.editor).post(
        "/projects/new/", {"name": "Summer launch", "description": "Beach wear", "default_language": "de"}
    )
    project = cast.org.projects.get(slug="summer-launch")
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.pk}/"
    assert (project.name, project.default_language, project.created_by) == ("Summer launch", "de", cast.editor)


def test_viewer_cannot_create_project(cast, client_for):
    response = client_for(cast.viewer).post("/projects/new/", {"name": "Nope", "default_language": "en"})
    assert response.status_code == 403
    assert not Project.objects.filter(name="Nope").exists()


def test_blank_name_is_rerendered_with_400(cast, client_for):
    response = client_for(cast.editor).post("/projects/new/", {"name": "  ", "default_language": "en"})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert cast.org.projects.count() == 2


def test_unknown_language_is_400(cast, client_for):
    response = client_for(cast.editor).post("/projects/new/", {"name": "X", "default_language": "klingon"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not cast.org.projects.filter(name="X").exists()


def test_taken_slug_is_a_409_form_error(cast, client_for):
    response = client_for(cast.editor).post(
        "/projects/new/", {"name": "Another spring", "slug": "spring", "default_language": "en"}
    )
    assert response.status_code == 409
    assert "already exists" in response.content.decode()
    assert cast.org.projects.count() == 2


def test_editor_edits_project(cast, client_for):
    response = client_for(cast.editor).post(
        f"/projects/{cast.project.pk}/edit/",
        {"name": "Spring 2026", "slug": "", "description": "New brief", "default_language": "fr"},
    )
    assert response.status_code == 302
    cast.project.refresh_from_db()
    assert (cast.project.name, cast.project.slug, cast.project.description) == ("Spring 2026", "spring", "New brief")
    assert cast.project.default_language == "fr"


def test_edit_form_is_prefilled(cast, client_for):
    body = client_for(cast.editor).get(f"/projects/{cast.project.pk}/edit/").content.decode()
    assert 'value="Spring"' in body and 'value="spring"' in body


def test_edit_to_taken_slug_keeps_project(cast, client_for):
    response = client_for(cast.editor).post(
        f"/projects/{cast.project.pk}/edit/", {"name": "Spring", "slug": "autumn", "default_language": "en"}
    )
    assert response.status_code == 409
    cast.project.refresh_from_db()
    assert cast.project.slug == "spring"


def test_viewer_cannot_edit_project(cast, client_for):
    response = client_for(cast.viewer).post(
        f"/projects/{cast.project.pk}/edit/", {"name": "Hacked", "default_language": "en"}
    )
    assert response.status_code == 403
    cast.project.refresh_from_db()
    assert cast.project.name == "Spring"


def test_admin_deletes_project_after_confirming(cast, client_for):
    client = client_for(cast.admin)
    assert "Delete Spring?" in client.get(f"/projects/{cast.project.pk}/delete/").content.decode()
    response = client.post(f"/projects/{cast.project.pk}/delete/")
    assert response.status_code == 302
    assert response["Location"] == "/projects/"
    assert not Project.objects.filter(pk=cast.project.pk).exists()


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_non_admin_cannot_delete_project(cast, client_for, role):
    response = client_for(getattr(cast, role)).post(f"/projects/{cast.project.pk}/delete/")
    assert response.status_code == 403
    assert Project.objects.filter(pk=cast.project.pk).exists()


@pytest.mark.parametrize("suffix", ["", "edit/", "delete/"])
def test_outsider_gets_404_on_project_pages(cast, client_for, suffix):
    client = client_for(cast.outsider)
    path = f"/projects/{cast.project.pk}/{suffix}"
    assert client.get(path).status_code == 404
    assert client.post(path, {"name": "Pwned", "default_language": "en"}).status_code == 404
    cast.project.refresh_from_db()
    assert cast.project.name == "Spring"


def test_project_list_shows_only_current_organization(cast, client_for):
    body = client_for(cast.viewer).get("/projects/").content.decode()
    assert "Spring" in body and "Autumn" in body
    assert "Secret" not in body
