"""Who is calling and on behalf of which organization.

The tenant is resolved once per request from the credential:
- an API key carries its organization, an effective role from its scope
  (read -> viewer, write -> editor) and an optional project restriction
  (``TenantCredential``: the key says which tenant it acts as);
- a session user acts in the organization named by the ``X-Organization``
  header (id or slug), else the one chosen in the dashboard's switcher, else
  their first membership.

Dashboard views guard themselves with ``tenant_required`` and reach rows only
through ``scoped`` / ``scoped_or_404`` (the dashboard's half of what
``organizations.api.tenancy.TenantViewSet`` does for the API): another
organization's object is a 404.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Protocol, runtime_checkable

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.validators import slug_re
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext

from core.errors import NotFound
from core.ids import parse_uuid
from organizations.models import Membership, Organization, Role

SESSION_KEY = "current_organization_id"
HEADER = "HTTP_X_ORGANIZATION"

View = Callable[..., HttpResponse]


@dataclass(frozen=True)
class Tenant:
    organization: Organization
    role: Role
    user: Any | None = None  # a User for sessions; None for API keys
    api_key: Any | None = None  # the ApiKey of the call (apikeys sits above this app)
    project_id: uuid.UUID | None = None  # set for project-restricted keys

    def has_role(self, role: Role | str) -> bool:
        """At least ``role``, a ``Role`` or its value (templates say ``"editor"``)."""
        return self.role.at_least(Role(role))


@runtime_checkable
class TenantCredential(Protocol):
    """A credential that acts for one organization by itself: an API key (``apikeys.models.ApiKey``)."""

    def as_tenant(self) -> Tenant: ...


def credential_tenant(request: Any) -> Tenant | None:
    """The tenant the request's credential carries (an API key); None for a session or no credential."""
    auth = getattr(request, "auth", None)
    return auth.as_tenant() if isinstance(auth, TenantCredential) else None


def memberships_of(user: Any) -> Any:
    return Membership.objects.filter(user=user).select_related("organization").order_by("created_at")


def tenant_for_user(request: HttpRequest, user: Any) -> Tenant | None:
    memberships = memberships_of(user)
    wanted = request.META.get(HEADER)
    if wanted:
        org_id = parse_uuid(wanted)
        if org_id is None and not slug_re.match(wanted):
            # Not an id nor a slug (e.g. a NUL byte, which Postgres refuses): no such organization.
            raise NotFound(gettext("Organization not found."), code="organization_not_found")
        lookup = {"organization_id": org_id} if org_id else {"organization__slug": wanted}
        membership = memberships.filter(**lookup).first()
        if membership is None:
            raise NotFound(gettext("Organization not found."), code="organization_not_found")
    else:
        session_org = parse_uuid(request.session.get(SESSION_KEY, "")) if hasattr(request, "session") else None
        membership = (memberships.filter(organization_id=session_org).first() if session_org else None) or (
            memberships.first()
        )
    if membership is None:
        return None
    return Tenant(organization=membership.organization, role=membership.role_enum, user=user)


def resolve_tenant(request: Any) -> Tenant | None:
    """Cached on the request; None when the caller belongs to no organization."""
    if hasattr(request, "_tenant"):
        return request._tenant  # type: ignore[no-any-return]
    auth = getattr(request, "auth", None)
    user = getattr(request, "user", None)
    if isinstance(auth, TenantCredential):
        tenant: Tenant | None = auth.as_tenant()
    elif user is not None and user.is_authenticated:
        tenant = tenant_for_user(request, user)
    else:
        tenant = None
    request._tenant = tenant
    return tenant


def tenant_required(role: Role = Role.VIEWER) -> Callable[[View], View]:
    """Login required, an organization required (else: create one), and at least ``role`` in it.

    ``request.tenant`` is set by ``organizations.middleware.CurrentOrganizationMiddleware``.
    Buttons for what a role cannot do are hidden in templates; this is the check that counts.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            tenant = request.tenant  # type: ignore[attr-defined]
            if not tenant:
                return redirect("organizations:create")
            if not tenant.has_role(role):
                raise PermissionDenied(
                    gettext("This needs the %(lower)s role or higher.") % {"lower": role.label.lower()}
                )
            return view(request, *args, **kwargs)

        return login_required(wrapper)

    return decorator


# --- dashboard querysets ----------------------------------------------------------------------


def current_tenant(request: HttpRequest) -> Tenant:
    """The tenant of a request that passed ``tenant_required`` (set by the middleware)."""
    return request.tenant  # type: ignore[attr-defined, no-any-return]


def current_organization(request: HttpRequest) -> Organization:
    return current_tenant(request).organization


def scoped(
    request: HttpRequest, rows: type[Model] | QuerySet[Any], *, organization_field: str = "organization"
) -> QuerySet[Any]:
    """``rows`` (a model or a queryset of it) of the request's organization only.

    ``organization_field`` is the lookup path from the model to its organization, as on
    ``TenantViewSet`` (``job__organization`` for a variant).
    """
    queryset = rows._default_manager.all() if isinstance(rows, type) else rows
    return queryset.filter(**{organization_field: current_organization(request)})


def scoped_or_404(
    request: HttpRequest,
    rows: type[Model] | QuerySet[Any],
    *,
    organization_field: str = "organization",
    **lookup: Any,
) -> Any:
    """The one row of the request's organization matching ``lookup``; any other organization's is a 404."""
    return get_object_or_404(scoped(request, rows, organization_field=organization_field), **lookup)
