"""Who may write what: viewers and read-only keys write nothing, editors edit projects only."""

from __future__ import annotations

import pytest

from apikeys.models import ApiKey
from audit.models import AuditLog
from organizations.models import Invitation, Membership, Role
from projects.models import Project
from tests.api_routes import (
    acme_object,
    assert_error_shape,
    call_id,
    db_state,
    row_of,
    valid_body,
    write_calls,
)

pytestmark = pytest.mark.django_db

#: Writes on the caller's own account rather than on the organization: a signed-in viewer
#: may leave, and may accept an invitation addressed to them. Covered by their own tests.
SELF_SERVICE = {("member-leave", "post"), ("invitation-accept", "post")}

#: Serving calls a read key makes from a customer's site or email sender: bulk assignment is GET assign
#: for a list of units (a body, not a query string), and records exposures as GET assign does.
SERVING = {("experiment-assign-many", "post")}

WRITE_CALLS = [(r, m) for r, m in write_calls() if (r.name, m) not in SERVING]
ORGANIZATION_WRITES = [(r, m) for r, m in WRITE_CALLS if (r.name, m) not in SELF_SERVICE]


def _attempt(client, cast, route, method):
    target = acme_object(cast, route) if route.takes_pk else None
    url = route.url(target.pk) if target is not None else route.url()
    state_before = db_state()
    response = getattr(client, method)(url, valid_body(route, method), format="json")
    return response, target, state_before


def test_sweep_covers_every_kind_of_write():
    names = {(r.name, m) for r, m in WRITE_CALLS}
    assert {("project-list", "post"), ("project-detail", "delete"), ("member-detail", "patch"),
            ("member-transfer-ownership", "post"), ("api-key-list", "post"), ("invitation-list", "post")} <= names


@pytest.mark.parametrize(("route", "method"), ORGANIZATION_WRITES, ids=call_id)
def test_viewer_cannot_write(cast, client_for, route, method):
    response, target, state_before = _attempt(client_for(cast.viewer), cast, route, method)

    assert response.status_code == 403, (response.status_code, response.content)
    assert assert_error_shape(response)["code"] == "permission_denied"
    assert db_state() == state_before
    if target is not None:
        assert row_of(target) is not None


@pytest.mark.parametrize(("route", "method"), WRITE_CALLS, ids=call_id)
def test_read_only_key_cannot_write(cast, key_for, route, method):
    client, _, _ = key_for("read")

    response, target, state_before = _attempt(client, cast, route, method)

    assert response.status_code == 403, (response.status_code, response.content)
    assert assert_error_shape(response)["code"] == "permission_denied"
    assert db_state() == state_before
    if target is not None:
        assert row_of(target) is not None


def test_read_only_key_can_read(cast, key_for):
    client, _, _ = key_for("read")

    projects = client.get("/api/v1/projects/")
    project = client.get(f"/api/v1/projects/{cast.project.pk}/")

    assert projects.status_code == 200
    assert {p["name"] for p in projects.json()["results"]} == {"Spring", "Autumn"}
    assert project.json()["slug"] == "spring"


def test_read_only_key_is_told_why(cast, key_for):
    client, _, _ = key_for("read")

    response = client.post("/api/v1/projects/", {"name": "Nope"}, format="json")

    assert "read-only key" in response.json()["detail"]


def test_viewer_can_leave_the_organization(cast, client_for):
    response = client_for(cast.viewer).post("/api/v1/members/leave/")

    assert response.status_code == 204
    assert not Membership.objects.filter(organization=cast.org, user=cast.viewer).exists()
    assert AuditLog.objects.filter(organization=cast.org, action="membership.left", actor=cast.viewer).count() == 1


def test_viewer_accepting_an_unknown_invitation_gets_404(cast, client_for):
    response = client_for(cast.viewer).post("/api/v1/invitations/accept/", {"token": "made-up"}, format="json")

    assert response.status_code == 404
    assert response.json()["code"] == "invitation_not_found"


# --- Editors ------------------------------------------------------------------------------


def test_editor_creates_project(cast, client_for):
    response = client_for(cast.editor).post(
        "/api/v1/projects/", {"name": "Summer sale", "default_language": "de"}, format="json"
    )

    assert response.status_code == 201, response.json()
    project = Project.objects.get(organization=cast.org, slug="summer-sale")
    assert response.json()["id"] == str(project.pk)
    assert (project.name, project.default_language, project.created_by) == ("Summer sale", "de", cast.editor)


def test_editor_edits_project(cast, client_for):
    response = client_for(cast.editor).patch(
        f"/api/v1/projects/{cast.project.pk}/", {"description": "Tulips"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["description"] == "Tulips"
    cast.project.refresh_from_db()
    assert cast.project.description == "Tulips"


def test_editor_replaces_project_with_put(cast, client_for):
    response = client_for(cast.editor).put(
        f"/api/v1/projects/{cast.project.pk}/",
        {"name": "Spring 2", "slug": "spring-2", "description": "", "default_language": "fr"},
        format="json",
    )

    assert response.status_code == 200
    cast.project.refresh_from_db()
    assert (cast.project.name, cast.project.slug, cast.project.default_language) == ("Spring 2", "spring-2", "fr")


def test_editor_cannot_delete_project(cast, client_for):
    response = client_for(cast.editor).delete(f"/api/v1/projects/{cast.project.pk}/")

    assert response.status_code == 403
    assert "admin role" in response.json()["detail"]
    assert Project.objects.filter(pk=cast.project.pk).exists()


def test_admin_deletes_project(cast, client_for):
    response = client_for(cast.admin).delete(f"/api/v1/projects/{cast.project.pk}/")

    assert response.status_code == 204
    assert not Project.objects.filter(pk=cast.project.pk).exists()


def test_write_key_cannot_delete_project(cast, key_for):
    client, _, _ = key_for("write")

    response = client.delete(f"/api/v1/projects/{cast.project.pk}/")

    assert response.status_code == 403
    assert Project.objects.filter(pk=cast.project.pk).exists()


def test_editor_cannot_change_roles(cast, client_for):
    viewer = Membership.objects.get(organization=cast.org, user=cast.viewer)

    response = client_for(cast.editor).patch(f"/api/v1/members/{viewer.pk}/", {"role": "admin"}, format="json")

    assert response.status_code == 403
    viewer.refresh_from_db()
    assert viewer.role == Role.VIEWER


def test_editor_cannot_remove_members(cast, client_for):
    viewer = Membership.objects.get(organization=cast.org, user=cast.viewer)

    response = client_for(cast.editor).delete(f"/api/v1/members/{viewer.pk}/")

    assert response.status_code == 403
    assert Membership.objects.filter(pk=viewer.pk).exists()


def test_editor_cannot_take_ownership(cast, client_for):
    own = Membership.objects.get(organization=cast.org, user=cast.editor)

    response = client_for(cast.editor).post(f"/api/v1/members/{own.pk}/transfer-ownership/")

    assert response.status_code == 403
    assert Membership.objects.get(organization=cast.org, role=Role.OWNER).user == cast.owner


def test_editor_cannot_see_or_create_keys(cast, client_for):
    client = client_for(cast.editor)

    listing = client.get("/api/v1/api-keys/")
    created = client.post("/api/v1/api-keys/", {"name": "Mine"}, format="json")

    assert (listing.status_code, created.status_code) == (403, 403)
    assert not ApiKey.objects.filter(organization=cast.org).exists()


def test_editor_cannot_see_or_send_invitations(cast, client_for):
    client = client_for(cast.editor)

    listing = client.get("/api/v1/invitations/")
    created = client.post("/api/v1/invitations/", {"email": "friend@example.com", "role": "viewer"}, format="json")

    assert (listing.status_code, created.status_code) == (403, 403)
    assert not Invitation.objects.filter(organization=cast.org).exists()


def test_editor_lists_members(cast, client_for):
    response = client_for(cast.editor).get("/api/v1/members/")

    assert response.status_code == 200
    assert sorted(m["email"] for m in response.json()["results"]) == [
        "admin@acme.test", "editor@acme.test", "owner@acme.test", "viewer@acme.test",
    ]
