"""Members, invitations and ownership through the API; every change leaves an audit row."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from audit.models import AuditLog
from organizations.models import Invitation, Membership, Role
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db


def _membership(cast, user) -> Membership:
    return Membership.objects.get(organization=cast.org, user=user)


def _actions(cast) -> list[str]:
    return list(AuditLog.objects.filter(organization=cast.org).order_by("id").values_list("action", flat=True))


@pytest.fixture
def invite(cast, client_for, django_capture_on_commit_callbacks):
    """Invite by API as Acme's admin; returns (response, token from the email or None)."""

    def send(email: str, role: str = "editor", by=None):
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(by or cast.admin).post(
                "/api/v1/invitations/", {"email": email, "role": role}, format="json"
            )
        tokens = [re.search(r"/invitations/([^/\s]+)/", m.body).group(1) for m in mail.outbox]
        return response, (tokens[0] if tokens else None)

    return send


# --- Inviting ---------------------------------------------------------------------------------


def test_admin_invites_by_email(cast, invite):
    response, token = invite("New.Person@Example.com", role="editor")

    assert response.status_code == 201, response.json()
    invitation = Invitation.objects.get(organization=cast.org)
    assert response.json()["id"] == str(invitation.pk)
    assert (invitation.email, invitation.role) == ("new.person@example.com", "editor")
    assert invitation.invited_by == cast.admin
    assert response.json()["status"] == "pending"
    assert [m.to for m in mail.outbox] == [["new.person@example.com"]]
    assert token and token not in invitation.token_hash and "token" not in response.json()
    assert _actions(cast) == ["invitation.created"]


def test_duplicate_invitation_is_409(cast, invite):
    invite("new@example.com")

    response, token = invite("NEW@example.com")

    assert response.status_code == 409
    assert response.json()["code"] == "already_invited"
    assert token is None
    assert Invitation.objects.filter(organization=cast.org).count() == 1


def test_inviting_a_member_is_409(cast, invite):
    response, _ = invite("viewer@acme.test")

    assert response.status_code == 409
    assert response.json()["code"] == "already_member"
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("role", ["owner", "superuser", "", None, ["admin"], 3])
def test_invalid_invitation_role_is_400(cast, invite, role):
    response, _ = invite("new@example.com", role=role)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "role" in response.json()["fields"]
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("email", ["not-an-email", "", "a@b", "x" * 250 + "@example.com"])
def test_invalid_invitation_email_is_400(cast, invite, email):
    response, _ = invite(email)

    assert response.status_code == 400
    assert "email" in response.json()["fields"]
    assert not Invitation.objects.exists()


def test_admin_revokes_invitation(cast, invite, client_for):
    response, token = invite("new@example.com")
    invitation_id = response.json()["id"]

    revoked = client_for(cast.admin).delete(f"/api/v1/invitations/{invitation_id}/")

    assert revoked.status_code == 204
    invitation = Invitation.objects.get(pk=invitation_id)
    assert invitation.status == "revoked"
    assert _actions(cast) == ["invitation.created", "invitation.revoked"]
    newcomer = UserFactory(email="new@example.com")
    accepted = client_for(newcomer).post("/api/v1/invitations/accept/", {"token": token}, format="json")
    assert accepted.status_code == 409
    assert accepted.json()["code"] == "invitation_revoked"
    assert not Membership.objects.filter(user=newcomer).exists()


def test_revoked_invitation_frees_the_email_for_a_new_one(cast, invite, client_for):
    first, _ = invite("new@example.com")
    client_for(cast.admin).delete(f"/api/v1/invitations/{first.json()['id']}/")

    second, token = invite("new@example.com")

    assert second.status_code == 201
    assert token


# --- Accepting --------------------------------------------------------------------------------


def test_accepting_with_another_email_is_403(cast, invite, client_for):
    _, token = invite("new@example.com")

    response = client_for(cast.outsider).post("/api/v1/invitations/accept/", {"token": token}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "invitation_email_mismatch"
    assert not Membership.objects.filter(organization=cast.org, user=cast.outsider).exists()
    assert Invitation.objects.get(organization=cast.org).status == "pending"


def test_accepting_with_the_invited_email_joins_with_the_role(cast, invite, client_for):
    _, token = invite("new@example.com", role="viewer")
    newcomer = UserFactory(email="new@example.com")

    response = client_for(newcomer).post("/api/v1/invitations/accept/", {"token": token}, format="json")

    assert response.status_code == 200, response.json()
    membership = _membership(cast, newcomer)
    assert response.json() == {
        "id": str(membership.pk), "email": "new@example.com", "name": newcomer.display_name, "role": "viewer",
        "created_at": response.json()["created_at"],
    }
    invitation = Invitation.objects.get(organization=cast.org)
    assert (invitation.status, invitation.accepted_by) == ("accepted", newcomer)
    assert _actions(cast) == ["invitation.created", "membership.created"]


def test_accepting_twice_is_409(cast, invite, client_for):
    _, token = invite("new@example.com")
    newcomer = client_for(UserFactory(email="new@example.com"))
    newcomer.post("/api/v1/invitations/accept/", {"token": token}, format="json")

    response = newcomer.post("/api/v1/invitations/accept/", {"token": token}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "invitation_accepted"
    assert Membership.objects.filter(organization=cast.org).count() == 5


def test_expired_invitation_cannot_be_accepted_and_can_be_resent(cast, invite, client_for):
    _, token = invite("new@example.com")
    Invitation.objects.filter(organization=cast.org).update(expires_at=timezone.now() - timedelta(seconds=1))
    newcomer = client_for(UserFactory(email="new@example.com"))

    expired = newcomer.post("/api/v1/invitations/accept/", {"token": token}, format="json")
    resent, new_token = invite("new@example.com")
    accepted = newcomer.post("/api/v1/invitations/accept/", {"token": new_token}, format="json")

    assert (expired.status_code, expired.json()["code"]) == (409, "invitation_expired")
    assert (resent.status_code, accepted.status_code) == (201, 200)
    assert Membership.objects.filter(organization=cast.org, user__email="new@example.com").count() == 1


def test_api_key_cannot_accept_invitations(cast, invite, key_for):
    _, token = invite("new@example.com")
    client, _, _ = key_for("write")

    response = client.post("/api/v1/invitations/accept/", {"token": token}, format="json")

    assert response.status_code == 403
    assert Invitation.objects.get(organization=cast.org).status == "pending"


# --- Roles, removal, leaving --------------------------------------------------------------------


def test_admin_changes_a_role(cast, client_for):
    viewer = _membership(cast, cast.viewer)

    response = client_for(cast.admin).patch(f"/api/v1/members/{viewer.pk}/", {"role": "editor"}, format="json")

    assert response.status_code == 200
    assert response.json()["role"] == "editor"
    viewer.refresh_from_db()
    assert viewer.role == Role.EDITOR
    log = AuditLog.objects.get(organization=cast.org)
    assert (log.action, log.actor, log.data["old"], log.data["new"]) == ("membership.role_changed", cast.admin,
                                                                          "viewer", "editor")


def test_nobody_becomes_owner_by_role_change(cast, client_for):
    viewer = _membership(cast, cast.viewer)

    response = client_for(cast.owner).patch(f"/api/v1/members/{viewer.pk}/", {"role": "owner"}, format="json")

    assert response.status_code == 400
    viewer.refresh_from_db()
    assert viewer.role == Role.VIEWER
    assert _actions(cast) == []


def test_owner_role_cannot_be_changed(cast, client_for):
    owner = _membership(cast, cast.owner)

    response = client_for(cast.admin).patch(f"/api/v1/members/{owner.pk}/", {"role": "viewer"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "owner_role_locked"
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_admin_cannot_remove_the_owner(cast, client_for):
    owner = _membership(cast, cast.owner)

    response = client_for(cast.admin).delete(f"/api/v1/members/{owner.pk}/")

    assert response.status_code == 403
    assert response.json()["code"] == "owner_cannot_be_removed"
    assert Membership.objects.filter(pk=owner.pk, role=Role.OWNER).exists()
    assert _actions(cast) == []


def test_admin_removes_an_editor(cast, client_for):
    editor = _membership(cast, cast.editor)

    response = client_for(cast.admin).delete(f"/api/v1/members/{editor.pk}/")

    assert response.status_code == 204
    assert not Membership.objects.filter(pk=editor.pk).exists()
    log = AuditLog.objects.get(organization=cast.org)
    assert (log.action, log.actor, log.data["user"]) == ("membership.removed", cast.admin, "editor@acme.test")


def test_admin_cannot_remove_another_admin(cast, client_for):
    other_admin = Membership.objects.create(organization=cast.org, user=UserFactory(), role=Role.ADMIN)

    response = client_for(cast.admin).delete(f"/api/v1/members/{other_admin.pk}/")

    assert response.status_code == 403
    assert Membership.objects.filter(pk=other_admin.pk).exists()


@pytest.mark.parametrize("how", ["leave", "delete-own-membership"])
def test_owner_cannot_leave(cast, client_for, how):
    client = client_for(cast.owner)
    own = _membership(cast, cast.owner)

    if how == "leave":
        response = client.post("/api/v1/members/leave/")
    else:
        response = client.delete(f"/api/v1/members/{own.pk}/")

    assert response.status_code == 403
    assert response.json()["code"] == "owner_cannot_leave"
    assert Membership.objects.filter(pk=own.pk, role=Role.OWNER).exists()
    assert _actions(cast) == []


def test_member_leaves_by_deleting_own_membership(cast, client_for):
    own = _membership(cast, cast.editor)

    response = client_for(cast.editor).delete(f"/api/v1/members/{own.pk}/")

    assert response.status_code == 204
    assert not Membership.objects.filter(pk=own.pk).exists()
    assert _actions(cast) == ["membership.left"]


# --- Ownership ----------------------------------------------------------------------------------


def test_owner_transfers_ownership(cast, client_for):
    admin = _membership(cast, cast.admin)

    response = client_for(cast.owner).post(f"/api/v1/members/{admin.pk}/transfer-ownership/")

    assert response.status_code == 200
    assert response.json()["role"] == "owner"
    owners = list(Membership.objects.filter(organization=cast.org, role=Role.OWNER).values_list("user", flat=True))
    assert owners == [cast.admin.pk]
    assert _membership(cast, cast.owner).role == Role.ADMIN
    log = AuditLog.objects.get(organization=cast.org)
    assert (log.action, log.actor, log.data) == (
        "organization.ownership_transferred", cast.owner,
        {"old_owner": "owner@acme.test", "new_owner": "admin@acme.test"},
    )


def test_new_owner_can_transfer_back(cast, client_for):
    client_for(cast.owner).post(f"/api/v1/members/{_membership(cast, cast.viewer).pk}/transfer-ownership/")

    response = client_for(cast.viewer).post(f"/api/v1/members/{_membership(cast, cast.owner).pk}/transfer-ownership/")

    assert response.status_code == 200
    assert list(Membership.objects.filter(organization=cast.org, role=Role.OWNER)) == [_membership(cast, cast.owner)]
    assert _actions(cast) == ["organization.ownership_transferred", "organization.ownership_transferred"]


def test_transfer_to_self_is_400(cast, client_for):
    own = _membership(cast, cast.owner)

    response = client_for(cast.owner).post(f"/api/v1/members/{own.pk}/transfer-ownership/")

    assert response.status_code == 400
    assert response.json()["code"] == "already_owner"
    assert _membership(cast, cast.owner).role == Role.OWNER


def test_admin_cannot_transfer_ownership(cast, client_for):
    own = _membership(cast, cast.admin)

    response = client_for(cast.admin).post(f"/api/v1/members/{own.pk}/transfer-ownership/")

    assert response.status_code == 403
    assert Membership.objects.get(organization=cast.org, role=Role.OWNER).user == cast.owner
    assert _actions(cast) == []


def test_key_cannot_manage_members(cast, key_for):
    client, _, _ = key_for("write")
    viewer = _membership(cast, cast.viewer)

    responses = [
        client.patch(f"/api/v1/members/{viewer.pk}/", {"role": "admin"}, format="json"),
        client.delete(f"/api/v1/members/{viewer.pk}/"),
        client.post(f"/api/v1/members/{viewer.pk}/transfer-ownership/"),
        client.post("/api/v1/invitations/", {"email": "x@example.com", "role": "viewer"}, format="json"),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403, 403]
    viewer.refresh_from_db()
    assert viewer.role == Role.VIEWER
    assert _actions(cast) == ["api_key.created"]
