"""Writes for organizations, memberships and invitations.

Each function checks that ``actor`` may do what it asks, runs in one
transaction and writes an audit row for membership and role changes.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext

from audit.services import record
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from organizations.models import (
    ASSIGNABLE_ROLES,
    INVITATION_LIFETIME,
    Invitation,
    Membership,
    Organization,
    Role,
)

if TYPE_CHECKING:
    from accounts.models import User


def membership_for(user: User, organization: Organization) -> Membership:
    """The actor's membership, or NotFound: a non-member must not learn the org exists."""
    try:
        return Membership.objects.select_related("organization").get(user=user, organization=organization)
    except Membership.DoesNotExist:
        raise NotFound(gettext("Organization not found.")) from None


def require_role(user: User, organization: Organization, role: Role) -> Membership:
    membership = membership_for(user, organization)
    if not membership.has_role(role):
        raise Forbidden(
            gettext("This needs the %(lower)s role or higher in %(name)s.")
            % {"lower": role.label.lower(), "name": organization.name}
        )
    return membership


def _unique_slug(name: str) -> str:
    base = slugify(name)[:120] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def create_organization(*, actor: User, name: str) -> Organization:
    name = name.strip()
    if not name:
        raise InvalidInput(gettext("An organization needs a name."), code="name_required")
    organization = Organization.objects.create(name=name, slug=_unique_slug(name))
    Membership.objects.create(organization=organization, user=actor, role=Role.OWNER)
    record("organization.created", organization=organization, actor=actor, target=organization, name=name)
    return organization


@transaction.atomic
def rename_organization(*, actor: User, organization: Organization, name: str) -> Organization:
    require_role(actor, organization, Role.ADMIN)
    name = name.strip()
    if not name:
        raise InvalidInput(gettext("An organization needs a name."), code="name_required")
    old = organization.name
    organization.name = name
    organization.save(update_fields=["name"])
    record("organization.renamed", organization=organization, actor=actor, target=organization, old=old, new=name)
    return organization


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def invite_member(*, actor: User, organization: Organization, email: str, role: str) -> tuple[Invitation, str]:
    """Create an invitation and email its link. Returns the invitation and the raw token."""
    require_role(actor, organization, Role.ADMIN)
    email = email.strip().lower()
    if role not in {r.value for r in ASSIGNABLE_ROLES}:
        raise InvalidInput(
            gettext("Role must be one of %(join)s; ownership moves only by transfer.")
            % {"join": ", ".join(r.value for r in ASSIGNABLE_ROLES)},
            code="invalid_role",
        )
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise Conflict(
            gettext("%(email)s is already a member of %(name)s.") % {"email": email, "name": organization.name},
            code="already_member",
        )
    # An earlier expired invitation still holds the "one open per email" slot.
    Invitation.objects.filter(
        organization=organization,
        email__iexact=email,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__lte=timezone.now(),
    ).update(revoked_at=timezone.now())
    token = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            invitation = Invitation.objects.create(
                organization=organization,
                email=email,
                role=role,
                token_hash=hash_token(token),
                invited_by=actor,
                expires_at=timezone.now() + INVITATION_LIFETIME,
            )
    except IntegrityError:
        raise Conflict(
            gettext("%(email)s already has a pending invitation.") % {"email": email}, code="already_invited"
        ) from None
    record("invitation.created", organization=organization, actor=actor, target=invitation, email=email, role=role)
    transaction.on_commit(lambda: _send_invitation_email(invitation, token))
    return invitation, token


def invitation_url(token: str) -> str:
    return f"{settings.SITE_URL.rstrip('/')}/invitations/{token}/"


def _send_invitation_email(invitation: Invitation, token: str) -> None:
    context = {
        "invitation": invitation,
        "organization": invitation.organization,
        "url": invitation_url(token),
    }
    send_mail(
        subject=gettext("You are invited to %(name)s") % {"name": invitation.organization.name},
        message=render_to_string("organizations/email/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )


def find_invitation(token: str) -> Invitation:
    try:
        return Invitation.objects.select_related("organization").get(token_hash=hash_token(token))
    except Invitation.DoesNotExist:
        raise NotFound(gettext("This invitation link is not valid."), code="invitation_not_found") from None


@transaction.atomic
def accept_invitation(*, actor: User, token: str) -> Membership:
    invitation = find_invitation(token)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.status != "pending":
        raise Conflict(
            gettext("This invitation is %(status)s.") % {"status": invitation.status},
            code=f"invitation_{invitation.status}",
        )
    if invitation.email.lower() != actor.email.lower():
        raise Forbidden(
            gettext("This invitation was sent to %(email)s; sign in with that address to accept it.")
            % {"email": invitation.email},
            code="invitation_email_mismatch",
        )
    membership, created = Membership.objects.get_or_create(
        organization=invitation.organization, user=actor, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = actor
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    if created:
        record(
            "membership.created",
            organization=invitation.organization,
            actor=actor,
            target=membership,
            role=membership.role,
            via="invitation",
        )
    return membership


@transaction.atomic
def revoke_invitation(*, actor: User, invitation: Invitation) -> None:
    require_role(actor, invitation.organization, Role.ADMIN)
    if invitation.status != "pending":
        raise Conflict(
            gettext("This invitation is already %(status)s.") % {"status": invitation.status},
            code="invitation_not_pending",
        )
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    record("invitation.revoked", organization=invitation.organization, actor=actor, target=invitation)


def _locked(membership: Membership) -> Membership:
    return Membership.objects.select_for_update().select_related("organization", "user").get(pk=membership.pk)


@transaction.atomic
def change_role(*, actor: User, membership: Membership, role: str) -> Membership:
    membership = _locked(membership)
    actor_membership = require_role(actor, membership.organization, Role.ADMIN)
    if role not in {r.value for r in ASSIGNABLE_ROLES}:
        raise InvalidInput(
            gettext("Role must be one of %(join)s; use transfer ownership to make someone the owner.")
            % {"join": ", ".join(r.value for r in ASSIGNABLE_ROLES)},
            code="invalid_role",
        )
    if membership.role == Role.OWNER:
        raise Forbidden(gettext("The owner's role changes only by transferring ownership."), code="owner_role_locked")
    if membership.role == Role.ADMIN and actor_membership.role != Role.OWNER and membership.pk != actor_membership.pk:
        raise Forbidden(gettext("Only the owner can change another admin's role."), code="admin_change_needs_owner")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    record(
        "membership.role_changed",
        organization=membership.organization,
        actor=actor,
        target=membership,
        user=membership.user.email,
        old=old,
        new=role,
    )
    return membership


@transaction.atomic
def remove_member(*, actor: User, membership: Membership) -> None:
    membership = _locked(membership)
    if membership.user_id == actor.pk:
        leave_organization(actor=actor, organization=membership.organization)
        return
    actor_membership = require_role(actor, membership.organization, Role.ADMIN)
    if membership.role == Role.OWNER:
        raise Forbidden(
            gettext("The owner cannot be removed; transfer ownership first."), code="owner_cannot_be_removed"
        )
    if membership.role == Role.ADMIN and actor_membership.role != Role.OWNER:
        raise Forbidden(gettext("Only the owner can remove an admin."), code="admin_removal_needs_owner")
    record(
        "membership.removed",
        organization=membership.organization,
        actor=actor,
        target=membership,
        user=membership.user.email,
        role=membership.role,
    )
    membership.delete()


@transaction.atomic
def leave_organization(*, actor: User, organization: Organization) -> None:
    membership = _locked(membership_for(actor, organization))
    if membership.role == Role.OWNER:
        raise Forbidden(
            gettext("The owner cannot leave; transfer ownership to another member first."), code="owner_cannot_leave"
        )
    record("membership.left", organization=organization, actor=actor, target=membership, role=membership.role)
    membership.delete()


@transaction.atomic
def transfer_ownership(*, actor: User, organization: Organization, new_owner: Membership) -> Membership:
    """Make ``new_owner`` the owner; the previous owner becomes an admin."""
    current = _locked(require_role(actor, organization, Role.OWNER))
    new_owner = _locked(new_owner)
    if new_owner.organization_id != organization.pk:
        raise NotFound(gettext("Member not found."))
    if new_owner.pk == current.pk:
        raise InvalidInput(gettext("You already own this organization."), code="already_owner")
    # Demote first: the one-owner constraint is checked per statement.
    current.role = Role.ADMIN
    current.save(update_fields=["role"])
    new_owner.role = Role.OWNER
    new_owner.save(update_fields=["role"])
    record(
        "organization.ownership_transferred",
        organization=organization,
        actor=actor,
        target=new_owner,
        old_owner=current.user.email,
        new_owner=new_owner.user.email,
    )
    return new_owner
