"""Dashboard pages for organizations: create, settings, switch, members and invitations."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.errors import DomainError, InvalidInput, NotFound
from core.mail import mail_is_delivered
from core.web import action_done, action_failed, add_domain_error, form_status, post_data
from organizations import services
from organizations.forms import (
    InviteForm,
    OrganizationForm,
    RoleForm,
    SwitchOrganizationForm,
    TransferOwnershipForm,
)
from organizations.models import ASSIGNABLE_ROLES, Invitation, Membership, Role
from organizations.tenancy import (
    SESSION_KEY,
    Tenant,
    current_tenant,
    memberships_of,
    scoped,
    scoped_or_404,
    tenant_required,
)

_NAME_ERRORS = {"name_required": "name"}
_INVITE_ERRORS = {"already_member": "email", "already_invited": "email", "invalid_role": "role"}


def _select(request: HttpRequest, organization_id: Any) -> None:
    request.session[SESSION_KEY] = str(organization_id)


# --- Organizations ----------------------------------------------------------------------------


@login_required
def organization_create(request: HttpRequest) -> HttpResponse:
    form = OrganizationForm(post_data(request))
    if form.is_bound and form.is_valid():
        try:
            organization = services.create_organization(actor=request.user, name=form.cleaned_data["name"])
        except DomainError as exc:
            add_domain_error(form, exc, _NAME_ERRORS)
        else:
            _select(request, organization.pk)
            messages.success(request, _("%(name)s is ready. Create your first project.") % {"name": organization.name})
            return redirect("dashboard")
    return render(request, "organizations/create.html", {"form": form}, status=form_status(form))


@tenant_required(Role.ADMIN)
def organization_settings(request: HttpRequest) -> HttpResponse:
    organization = current_tenant(request).organization
    form = OrganizationForm(post_data(request), initial={"name": organization.name})
    if form.is_bound and form.is_valid():
        try:
            services.rename_organization(actor=request.user, organization=organization, name=form.cleaned_data["name"])
        except DomainError as exc:
            add_domain_error(form, exc, _NAME_ERRORS)
        else:
            messages.success(request, _("Organization renamed."))
            return redirect("organizations:settings")
    members = scoped(request, Membership).select_related("user")
    admins = members.filter(role__in=[Role.OWNER, Role.ADMIN])
    context = {"form": form, "organization": organization, "admins": admins, "member_count": members.count()}
    return render(request, "organizations/settings.html", context, status=form_status(form))


@require_POST
@login_required
def organization_switch(request: HttpRequest) -> HttpResponse:
    """Make another of the user's organizations the current one; any other id is a 404."""
    form = SwitchOrganizationForm(request.POST)
    if not form.is_valid():
        raise BadRequest("Choose an organization.")
    membership = get_object_or_404(memberships_of(request.user), organization_id=form.cleaned_data["organization"])
    _select(request, membership.organization_id)
    messages.info(request, _("Switched to %(name)s.") % {"name": membership.organization.name})
    return redirect("dashboard")


# --- Members ----------------------------------------------------------------------------------


def _with_permissions(tenant: Tenant, member: Membership) -> Membership:
    """Mark what the current user may do to ``member``, mirroring the rules in the services."""
    is_self = member.user_id == tenant.user.pk
    is_owner = tenant.role == Role.OWNER
    manageable = tenant.has_role(Role.ADMIN) and member.role != Role.OWNER
    member.can_change_role = manageable and (member.role != Role.ADMIN or is_owner or is_self)  # type: ignore[attr-defined]
    member.can_remove = manageable and not is_self and (member.role != Role.ADMIN or is_owner)  # type: ignore[attr-defined]
    member.is_self = is_self  # type: ignore[attr-defined]
    return member


def _members_page(
    request: HttpRequest, *, status: int = 200, invite_form: InviteForm | None = None,
    transfer_form: TransferOwnershipForm | None = None,
) -> HttpResponse:
    tenant = current_tenant(request)
    is_admin = tenant.has_role(Role.ADMIN)
    members = scoped(request, Membership).select_related("user").order_by("created_at")
    context = {
        "members": [_with_permissions(tenant, m) for m in members],
        "invitations": scoped(request, Invitation).pending().select_related("invited_by") if is_admin else [],
        "invite_form": (invite_form or InviteForm()) if is_admin else None,
        "transfer_form": (
            (transfer_form or TransferOwnershipForm(organization=tenant.organization))
            if tenant.role == Role.OWNER else None
        ),
        "role_choices": ASSIGNABLE_ROLES,
    }
    return render(request, "organizations/members.html", context, status=status)


@tenant_required(Role.VIEWER)
def members(request: HttpRequest) -> HttpResponse:
    return _members_page(request)


@require_POST
@tenant_required(Role.ADMIN)
def member_invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invitation, token = services.invite_member(
                actor=request.user, organization=current_tenant(request).organization, **form.cleaned_data
            )
        except DomainError as exc:
            add_domain_error(form, exc, _INVITE_ERRORS)
        else:
            if mail_is_delivered():
                messages.success(request, _("Invitation sent to %(email)s.") % {"email": invitation.email})
            else:
                messages.warning(
                    request,
                    _(
                        "Invitation created for %(email)s, but this installation does not deliver email "
                        "(EMAIL_URL is not set): send them this link yourself: %(url)s"
                    ) % {"email": invitation.email, "url": services.invitation_url(token)},
                )
            return redirect("organizations:members")
    return _members_page(request, invite_form=form, status=form_status(form))


@require_POST
@tenant_required(Role.ADMIN)
def invitation_revoke(request: HttpRequest, pk: Any) -> HttpResponse:
    invitation = scoped_or_404(request, Invitation.objects.select_related("organization"), pk=pk)
    try:
        services.revoke_invitation(actor=request.user, invitation=invitation)
    except DomainError as exc:
        return action_failed(request, exc, _members_page)
    return action_done(request, f"Invitation for {invitation.email} revoked.", redirect_to="organizations:members")


@require_POST
@tenant_required(Role.ADMIN)
def member_role(request: HttpRequest, pk: Any) -> HttpResponse:
    membership = scoped_or_404(request, Membership.objects.select_related("user"), pk=pk)
    form = RoleForm(request.POST)
    try:
        if not form.is_valid():
            raise InvalidInput(_("Choose one of the listed roles."), code="invalid_role")
        membership = services.change_role(actor=request.user, membership=membership, role=form.cleaned_data["role"])
    except DomainError as exc:
        return action_failed(request, exc, _members_page)
    return action_done(
        request, f"{membership.user.display_name} is now {membership.get_role_display().lower()}.",
        redirect_to="organizations:members", fragment="organizations/_member_row.html",
        context={"member": _with_permissions(current_tenant(request), membership), "role_choices": ASSIGNABLE_ROLES},
    )


@require_POST
@tenant_required(Role.ADMIN)
def member_remove(request: HttpRequest, pk: Any) -> HttpResponse:
    membership = scoped_or_404(request, Membership.objects.select_related("user"), pk=pk)
    if membership.user_id == request.user.pk:
        return action_failed(
            request, InvalidInput(_("Use “Leave organization” to remove yourself."), code="use_leave"), _members_page
        )
    try:
        services.remove_member(actor=request.user, membership=membership)
    except DomainError as exc:
        return action_failed(request, exc, _members_page)
    return action_done(
        request, f"{membership.user.display_name} was removed.", redirect_to="organizations:members"
    )


@require_POST
@tenant_required(Role.VIEWER)
def members_leave(request: HttpRequest) -> HttpResponse:
    organization = current_tenant(request).organization
    try:
        services.leave_organization(actor=request.user, organization=organization)
    except DomainError as exc:
        return action_failed(request, exc, _members_page)
    request.session.pop(SESSION_KEY, None)
    messages.success(request, _("You left %(name)s.") % {"name": organization.name})
    return redirect("dashboard")


@require_POST
@tenant_required(Role.OWNER)
def members_transfer(request: HttpRequest) -> HttpResponse:
    organization = current_tenant(request).organization
    form = TransferOwnershipForm(request.POST, organization=organization)
    if form.is_valid():
        new_owner = form.cleaned_data["member"]
        try:
            services.transfer_ownership(actor=request.user, organization=organization, new_owner=new_owner)
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            messages.success(
                request,
                _("%(user)s now owns %(name)s.") % {"user": new_owner.user.display_name, "name": organization.name},
            )
            return redirect("organizations:members")
    return _members_page(request, transfer_form=form, status=form_status(form))


# --- Invitation links -------------------------------------------------------------------------


@login_required
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The page behind the emailed link: shows the organization and role; POST accepts."""
    try:
        invitation = services.find_invitation(token)
    except NotFound:
        raise Http404("This invitation link is not valid.") from None
    status = 200
    if request.method == "POST":
        try:
            membership = services.accept_invitation(actor=request.user, token=token)
        except DomainError as exc:
            messages.error(request, exc.detail)
            status = exc.status_code
            invitation.refresh_from_db()
        else:
            _select(request, membership.organization_id)
            messages.success(request, _("Welcome to %(name)s.") % {"name": membership.organization.name})
            return redirect("dashboard")
    email_matches = invitation.email.lower() == request.user.email.lower()  # type: ignore[union-attr]
    context = {"invitation": invitation, "email_matches": email_matches}
    return render(request, "organizations/invitation_accept.html", context, status=status)
