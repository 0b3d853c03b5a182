"""Creating, renaming and switching organizations from the dashboard."""

from __future__ import annotations

import pytest

from organizations.models import Membership, Organization
from organizations.tenancy import SESSION_KEY
from tests.support.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_new_user_creates_organization_and_becomes_owner(client):
    user = UserFactory()
    client.force_login(user)
    response = client.post("/organizations/new/", {"name": "Initech"})
    organization = Organization.objects.get(name="Initech")
    assert response.status_code == 302 and response["Location"] == "/"
    assert Membership.objects.get(organization=organization, user=user).role == "owner"
    assert client.session[SESSION_KEY] == str(organization.pk)
    assert "Initech" in client.get("/").content.decode()


def test_blank_organization_name_is_400(client):
    client.force_login(UserFactory())
    response = client.post("/organizations/new/", {"name": "   "})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not Organization.objects.exists()


def test_empty_post_is_400_not_a_fresh_form(client):
    client.force_login(UserFactory())
    assert client.post("/organizations/new/", {}).status_code == 400


def test_switch_to_own_organization(cast, client_for):
    MembershipFactory(organization=cast.outsider_org, user=cast.editor, role="viewer")
    client = client_for(cast.editor)
    response = client.post("/organizations/switch/", {"organization": str(cast.outsider_org.pk)})
    assert response.status_code == 302
    assert client.session[SESSION_KEY] == str(cast.outsider_org.pk)
    assert "Secret" in client.get("/projects/").content.decode()


def test_switch_to_foreign_organization_is_404(cast, client_for):
    client = client_for(cast.editor)
    response = client.post("/organizations/switch/", {"organization": str(cast.outsider_org.pk)})
    assert response.status_code == 404
    assert SESSION_KEY not in client.session
    assert "Secret" not in client.get("/projects/").content.decode()


def test_switch_with_garbage_is_400(cast, client_for):
    assert client_for(cast.editor).post("/organizations/switch/", {"organization": "x"}).status_code == 400


def test_switch_needs_post(cast, client_for):
    assert client_for(cast.editor).get("/organizations/switch/").status_code == 405


def test_admin_renames_organization(cast, client_for):
    response = client_for(cast.admin).post("/settings/", {"name": "Acme Corp"})
    assert response.status_code == 302
    cast.org.refresh_from_db()
    assert cast.org.name == "Acme Corp"


def test_settings_lists_admins(cast, client_for):
    body = client_for(cast.admin).get("/settings/").content.decode()
    assert "owner@acme.test" in body and "admin@acme.test" in body
    assert "viewer@acme.test" not in body


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_non_admin_cannot_rename(cast, client_for, role):
    response = client_for(getattr(cast, role)).post("/settings/", {"name": "Pwned"})
    assert response.status_code == 403
    cast.org.refresh_from_db()
    assert cast.org.name == "Acme"


def test_rename_to_blank_is_400(cast, client_for):
    response = client_for(cast.admin).post("/settings/", {"name": ""})
    assert response.status_code == 400
    cast.org.refresh_from_db()
    assert cast.org.name == "Acme"
