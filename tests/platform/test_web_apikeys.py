"""API key pages: admins create (secret shown once) and revoke; nobody else reaches them."""

from __future__ import annotations

import pytest

from apikeys.models import ApiKey
from apikeys.services import authenticate_key
from tests.support.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db


def _create(client, **data):
    return client.post("/api-keys/", {"name": "Website", "scope": "read", **data})


def test_admin_creates_key_and_sees_secret_once(cast, client_for):
    client = client_for(cast.admin)
    # when
    response = _create(client, project=str(cast.project.pk))
    # then: the page shows a working secret, uncached
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    secret = response.context["secret"]
    assert secret.startswith("loom_") and secret in response.content.decode()
    api_key = authenticate_key(secret)
    assert api_key is not None
    assert (api_key.organization, api_key.project, api_key.scope) == (cast.org, cast.project, "read")
    # and never again: the list shows the masked key only
    listing = client.get("/api-keys/").content.decode()
    assert secret not in listing
    assert f"loom_{api_key.prefix}_" in listing
    assert secret.split("_", 2)[2] not in listing


def test_key_for_all_projects_by_default(cast, client_for):
    _create(client_for(cast.owner), name="Everything", scope="write")
    api_key = ApiKey.objects.get(name="Everything")
    assert api_key.project is None and api_key.scope == "write"


def test_blank_name_is_400(cast, client_for):
    response = _create(client_for(cast.admin), name=" ")
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_another_organizations_project_is_a_form_error(cast, client_for):
    response = _create(client_for(cast.admin), project=str(cast.outsider_project.pk))
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_unknown_scope_is_400(cast, client_for):
    response = _create(client_for(cast.admin), scope="admin")
    assert response.status_code == 400
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_non_admin_cannot_create_key(cast, client_for, role):
    response = _create(client_for(getattr(cast, role)))
    assert response.status_code == 403
    assert "loom_" not in response.content.decode()
    assert not ApiKey.objects.exists()


def test_list_shows_scope_project_and_status(cast, client_for):
    ApiKeyFactory(organization=cast.org, name="Blog bot", scope="read", project=cast.project)
    ApiKeyFactory(organization=cast.outsider_org, name="Globex bot")
    body = client_for(cast.admin).get("/api-keys/").content.decode()
    assert "Blog bot" in body and "Read only" in body and "Spring" in body and "Active" in body
    assert "Globex bot" not in body


def test_admin_revokes_key(cast, client_for):
    api_key = ApiKeyFactory(organization=cast.org)
    response = client_for(cast.admin).post(f"/api-keys/{api_key.pk}/revoke/")
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and api_key.revoked_by == cast.admin


def test_htmx_revoke_returns_the_updated_row(cast, client_for):
    api_key = ApiKeyFactory(organization=cast.org, name="Inline")
    response = client_for(cast.admin).post(f"/api-keys/{api_key.pk}/revoke/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert f'id="key-{api_key.pk}"' in body and "Revoked" in body
    assert 'hx-swap-oob="true"' in body and "stops working immediately" in body


def test_revoking_twice_is_409_not_500(cast, client_for):
    api_key = ApiKeyFactory(organization=cast.org)
    client = client_for(cast.admin)
    client.post(f"/api-keys/{api_key.pk}/revoke/")
    response = client.post(f"/api-keys/{api_key.pk}/revoke/")
    assert response.status_code == 409
    assert "already revoked" in response.content.decode()


def test_editor_cannot_revoke_key(cast, client_for):
    api_key = ApiKeyFactory(organization=cast.org)
    assert client_for(cast.editor).post(f"/api-keys/{api_key.pk}/revoke/").status_code == 403
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_outsider_gets_404_revoking_key(cast, client_for):
    api_key = ApiKeyFactory(organization=cast.org)
    assert client_for(cast.outsider).post(f"/api-keys/{api_key.pk}/revoke/").status_code == 404
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_revoke_needs_post(cast, client_for):
    api_key = ApiKeyFactory(organization=cast.org)
    assert client_for(cast.admin).get(f"/api-keys/{api_key.pk}/revoke/").status_code == 405
