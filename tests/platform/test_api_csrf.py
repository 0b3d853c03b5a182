"""A signed-in browser session must prove same-origin (CSRF token) to write through the API."""

from __future__ import annotations

import secrets
import string

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from organizations.models import Membership, Role
from projects.models import Project

pytestmark = pytest.mark.django_db


def _session(user, *, csrf_token: str | None = None) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    if csrf_token is not None:
        client.cookies[settings.CSRF_COOKIE_NAME] = csrf_token
        client.credentials(HTTP_X_CSRFTOKEN=csrf_token)
    return client


def _token() -> str:
    """A CSRF secret as Django issues it: 32 letters and digits."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))


def test_session_post_without_csrf_token_is_refused(cast):
    response = _session(cast.editor).post("/api/v1/projects/", {"name": "Forged"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "CSRF" in response.json()["detail"]
    assert not Project.objects.filter(name="Forged").exists()


def test_session_post_with_csrf_token_works(cast):
    response = _session(cast.editor, csrf_token=_token()).post("/api/v1/projects/", {"name": "Real"}, format="json")

    assert response.status_code == 201, response.json()
    assert Project.objects.filter(organization=cast.org, name="Real", created_by=cast.editor).exists()


def test_session_post_with_wrong_csrf_token_is_refused(cast):
    client = _session(cast.editor, csrf_token=_token())
    client.credentials(HTTP_X_CSRFTOKEN=_token())  # the header no longer matches the cookie

    response = client.post("/api/v1/projects/", {"name": "Forged"}, format="json")

    assert response.status_code == 403
    assert not Project.objects.filter(name="Forged").exists()


def test_session_patch_and_delete_need_csrf_token(cast):
    client = _session(cast.owner)

    patched = client.patch(f"/api/v1/projects/{cast.project.pk}/", {"name": "Forged"}, format="json")
    deleted = client.delete(f"/api/v1/projects/{cast.sibling_project.pk}/")

    assert (patched.status_code, deleted.status_code) == (403, 403)
    cast.project.refresh_from_db()
    assert cast.project.name == "Spring"
    assert Project.objects.filter(pk=cast.sibling_project.pk).exists()


def test_session_role_change_needs_csrf_token(cast):
    viewer = Membership.objects.get(organization=cast.org, user=cast.viewer)

    response = _session(cast.owner).patch(f"/api/v1/members/{viewer.pk}/", {"role": "admin"}, format="json")

    assert response.status_code == 403
    viewer.refresh_from_db()
    assert viewer.role == Role.VIEWER


def test_session_reads_need_no_csrf_token(cast):
    response = _session(cast.viewer).get("/api/v1/projects/")

    assert response.status_code == 200


def test_api_key_writes_need_no_csrf_token(cast, key_for):
    _, _, secret = key_for("write")
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    response = client.post("/api/v1/projects/", {"name": "From CI"}, format="json")

    assert response.status_code == 201
    assert Project.objects.filter(organization=cast.org, name="From CI").exists()
