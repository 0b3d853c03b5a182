"""Members page and invitation links: the role rules of the services, reached through the dashboard."""

from __future__ import annotations

import pytest
from django.core import mail

from organizations.models import Invitation, Membership
from organizations.services import invite_member
from organizations.tenancy import SESSION_KEY
from tests.support.factories import InvitationFactory, UserFactory

pytestmark = pytest.mark.django_db


def _membership(cast, user):
    return Membership.objects.get(organization=cast.org, user=user)


# --- Listing ------------------------------------------------------------------------------------


def test_members_page_lists_members_and_pending_invitations(cast, client_for):
    InvitationFactory(organization=cast.org, email="new@acme.test")
    InvitationFactory(organization=cast.outsider_org, email="spy@globex.test")
    body = client_for(cast.admin).get("/members/").content.decode()
    for email in ["owner@acme.test", "admin@acme.test", "editor@acme.test", "viewer@acme.test", "new@acme.test"]:
        assert email in body
    assert "outsider@globex.test" not in body and "spy@globex.test" not in body


def test_viewer_sees_members_but_not_invitations(cast, client_for):
    InvitationFactory(organization=cast.org, email="new@acme.test")
    body = client_for(cast.viewer).get("/members/").content.decode()
    assert "editor@acme.test" in body and "new@acme.test" not in body
    assert "Leave organization" in body


# --- Inviting -------------------------------------------------------------------------------------


def test_admin_invites_member_by_email(cast, client_for, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.admin).post("/members/invite/", {"email": "New@Acme.test", "role": "editor"})
    assert response.status_code == 302
    invitation = Invitation.objects.get(organization=cast.org)
    assert (invitation.email, invitation.role, invitation.invited_by) == ("new@acme.test", "editor", cast.admin)
    assert mail.outbox[-1].to == ["new@acme.test"] and "/invitations/" in mail.outbox[-1].body


def test_inviting_a_member_is_409_with_message(cast, client_for):
    response = client_for(cast.admin).post("/members/invite/", {"email": "editor@acme.test", "role": "viewer"})
    assert response.status_code == 409
    assert "already a member" in response.content.decode()
    assert not Invitation.objects.exists()


def test_invalid_invitation_input_is_400(cast, client_for):
    response = client_for(cast.admin).post("/members/invite/", {"email": "not-an-email", "role": "owner"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Enter a valid email address." in body and "Select a valid choice" in body
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_non_admin_cannot_invite(cast, client_for, role):
    response = client_for(getattr(cast, role)).post("/members/invite/", {"email": "x@acme.test", "role": "viewer"})
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_admin_revokes_invitation_inline(cast, client_for):
    invitation = InvitationFactory(organization=cast.org)
    response = client_for(cast.admin).post(
        f"/members/invitations/{invitation.pk}/revoke/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert f'id="invitation-{invitation.pk}"' not in response.content.decode()
    invitation.refresh_from_db()
    assert invitation.status == "revoked"


def test_outsider_gets_404_revoking_invitation(cast, client_for):
    invitation = InvitationFactory(organization=cast.org)
    assert client_for(cast.outsider).post(f"/members/invitations/{invitation.pk}/revoke/").status_code == 404
    invitation.refresh_from_db()
    assert invitation.status == "pending"


# --- Roles and removal ----------------------------------------------------------------------------


def test_admin_changes_editor_to_viewer(cast, client_for):
    membership = _membership(cast, cast.editor)
    response = client_for(cast.admin).post(f"/members/{membership.pk}/role/", {"role": "viewer"})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == "viewer"


def test_htmx_role_change_returns_the_row(cast, client_for):
    membership = _membership(cast, cast.editor)
    response = client_for(cast.owner).post(
        f"/members/{membership.pk}/role/", {"role": "admin"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(f'<tr id="member-{membership.pk}">')
    assert 'value="admin" selected' in body
    assert 'id="messages"' in body and "is now admin" in body


def test_row_of_new_admin_is_locked_for_other_admins(cast, client_for):
    membership = _membership(cast, cast.editor)
    response = client_for(cast.admin).post(
        f"/members/{membership.pk}/role/", {"role": "admin"}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert '<span class="badge badge-admin">Admin</span>' in body
    assert "<select" not in body and "/remove/" not in body


def test_admin_cannot_change_another_admins_role(cast, client_for):
    other_admin = UserFactory()
    membership = Membership.objects.create(organization=cast.org, user=other_admin, role="admin")
    response = client_for(cast.admin).post(f"/members/{membership.pk}/role/", {"role": "viewer"})
    assert response.status_code == 403
    assert "Only the owner" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == "admin"


def test_htmx_refusal_swaps_only_the_message(cast, client_for):
    membership = _membership(cast, cast.owner)
    response = client_for(cast.admin).post(
        f"/members/{membership.pk}/role/", {"role": "viewer"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 403
    assert response["HX-Reswap"] == "none"
    assert "transferring ownership" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == "owner"


def test_invalid_role_is_400(cast, client_for):
    membership = _membership(cast, cast.editor)
    response = client_for(cast.admin).post(f"/members/{membership.pk}/role/", {"role": "owner"})
    assert response.status_code == 400
    membership.refresh_from_db()
    assert membership.role == "editor"


def test_viewer_cannot_change_roles(cast, client_for):
    membership = _membership(cast, cast.editor)
    assert client_for(cast.viewer).post(f"/members/{membership.pk}/role/", {"role": "admin"}).status_code == 403
    membership.refresh_from_db()
    assert membership.role == "editor"


def test_admin_removes_viewer(cast, client_for):
    membership = _membership(cast, cast.viewer)
    response = client_for(cast.admin).post(f"/members/{membership.pk}/remove/")
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_owner_cannot_be_removed(cast, client_for):
    membership = _membership(cast, cast.owner)
    response = client_for(cast.admin).post(f"/members/{membership.pk}/remove/")
    assert response.status_code == 403
    assert Membership.objects.filter(pk=membership.pk).exists()


@pytest.mark.parametrize("action", ["role", "remove"])
def test_outsider_gets_404_on_member_actions(cast, client_for, action):
    membership = _membership(cast, cast.viewer)
    response = client_for(cast.outsider).post(f"/members/{membership.pk}/{action}/", {"role": "admin"})
    assert response.status_code == 404
    membership.refresh_from_db()
    assert membership.role == "viewer"


# --- Leaving and ownership ---------------------------------------------------------------------------


def test_viewer_leaves_organization(cast, client_for):
    client = client_for(cast.viewer)
    response = client.post("/members/leave/")
    assert response.status_code == 302
    assert not Membership.objects.filter(organization=cast.org, user=cast.viewer).exists()
    assert client.get("/")["Location"] == "/organizations/new/"


def test_owner_cannot_leave(cast, client_for):
    response = client_for(cast.owner).post("/members/leave/")
    assert response.status_code == 403
    assert "transfer ownership" in response.content.decode()
    assert _membership(cast, cast.owner).role == "owner"


def test_owner_transfers_ownership(cast, client_for):
    admin_membership = _membership(cast, cast.admin)
    response = client_for(cast.owner).post(
        "/members/transfer-ownership/", {"member": str(admin_membership.pk), "confirm": "on"}
    )
    assert response.status_code == 302
    assert _membership(cast, cast.admin).role == "owner"
    assert _membership(cast, cast.owner).role == "admin"


def test_transfer_needs_confirmation(cast, client_for):
    admin_membership = _membership(cast, cast.admin)
    response = client_for(cast.owner).post("/members/transfer-ownership/", {"member": str(admin_membership.pk)})
    assert response.status_code == 400
    assert _membership(cast, cast.owner).role == "owner"


def test_transfer_to_outsider_is_rejected(cast, client_for):
    outsider_membership = Membership.objects.get(user=cast.outsider)
    response = client_for(cast.owner).post(
        "/members/transfer-ownership/", {"member": str(outsider_membership.pk), "confirm": "on"}
    )
    assert response.status_code == 400
    assert _membership(cast, cast.owner).role == "owner"
    assert outsider_membership.role == Membership.objects.get(pk=outsider_membership.pk).role


def test_admin_cannot_transfer_ownership(cast, client_for):
    editor_membership = _membership(cast, cast.editor)
    response = client_for(cast.admin).post(
        "/members/transfer-ownership/", {"member": str(editor_membership.pk), "confirm": "on"}
    )
    assert response.status_code == 403
    assert _membership(cast, cast.owner).role == "owner"


# --- Invitation links -----------------------------------------------------------------------------


@pytest.fixture
def invited(cast):
    """A pending invitation to Acme for a user who already has an account, with its raw token."""
    user = UserFactory(email="newbie@example.com")
    invitation, token = invite_member(actor=cast.admin, organization=cast.org, email=user.email, role="editor")
    return user, invitation, token


def test_invitation_link_asks_anonymous_to_sign_in(client, invited):
    _, _, token = invited
    response = client.get(f"/invitations/{token}/")
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/invitations/{token}/"


def test_invitation_page_shows_organization_and_role(client, invited):
    user, _, token = invited
    client.force_login(user)
    body = client.get(f"/invitations/{token}/").content.decode()
    assert "Join Acme" in body and "Editor" in body


def test_accepting_invitation_joins_and_switches(client, cast, invited):
    user, invitation, token = invited
    client.force_login(user)
    response = client.post(f"/invitations/{token}/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert Membership.objects.get(organization=cast.org, user=user).role == "editor"
    assert client.session[SESSION_KEY] == str(cast.org.pk)
    invitation.refresh_from_db()
    assert invitation.status == "accepted"


def test_invitation_for_another_address_is_403(cast, client_for, invited):
    _, _, token = invited
    response = client_for(cast.outsider).post(f"/invitations/{token}/")
    assert response.status_code == 403
    assert "sign in with that address" in response.content.decode()
    assert not Membership.objects.filter(organization=cast.org, user=cast.outsider).exists()


def test_used_invitation_is_409(client, invited):
    user, _, token = invited
    client.force_login(user)
    client.post(f"/invitations/{token}/")
    response = client.post(f"/invitations/{token}/")
    assert response.status_code == 409
    assert "accepted" in response.content.decode()


def test_unknown_invitation_token_is_404(cast, client_for):
    assert client_for(cast.outsider).get("/invitations/not-a-real-token/").status_code == 404
