"""CSRF on session posts, and the htmx header that carries the token."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apikeys.models import ApiKey
from organizations.models import Membership
from projects.models import Project
from tests.support.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def strict_client(cast):
    """A browser-like client: the owner's session, CSRF checks on."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.owner)
    return client


def _page_token(client, path="/"):
    body = client.get(path).content.decode()
    return re.search(r'"X-CSRFToken": "([^"]+)"', body).group(1)


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/projects/new/", {"name": "Forged", "default_language": "en"}),
        ("/api-keys/", {"name": "Forged", "scope": "write"}),
        ("/members/invite/", {"email": "forged@evil.test", "role": "admin"}),
        ("/settings/", {"name": "Forged"}),
    ],
)
def test_session_post_without_csrf_token_is_403(strict_client, cast, path, data):
    response = strict_client.post(path, data)
    assert response.status_code == 403
    assert "reload the page" in response.content.decode()
    cast.org.refresh_from_db()
    assert cast.org.name == "Acme"
    assert not Project.objects.filter(name="Forged").exists()
    assert not ApiKey.objects.exists()
    assert not cast.org.invitations.exists()


def test_forged_member_removal_is_403(strict_client, cast):
    membership = Membership.objects.get(organization=cast.org, user=cast.viewer)
    assert strict_client.post(f"/members/{membership.pk}/remove/").status_code == 403
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_post_with_form_token_succeeds(strict_client, cast):
    body = strict_client.get("/projects/new/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
    response = strict_client.post(
        "/projects/new/", {"name": "Genuine", "default_language": "en", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert cast.org.projects.filter(name="Genuine").exists()


def test_htmx_header_token_from_layout_is_accepted(strict_client, cast):
    api_key = ApiKeyFactory(organization=cast.org)
    token = _page_token(strict_client, "/api-keys/")
    response = strict_client.post(
        f"/api-keys/{api_key.pk}/revoke/", headers={"HX-Request": "true", "X-CSRFToken": token}
    )
    assert response.status_code == 200
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_logout_by_get_does_not_sign_out(strict_client):
    strict_client.get("/accounts/logout/")
    assert strict_client.get("/").status_code == 200
