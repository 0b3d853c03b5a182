"""Who is calling and on behalf of which organization.

The tenant is resolved once per request from the credential:
- an API key carries its organization, an effective role from its scope
  (read -> viewer, write -> editor) and an optional project restriction;
- a session user acts in the organization named by the ``X-Organization``
  header (id or slug), else the one chosen in the dashboard's switcher, else
  their first membership.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.core.validators import slug_re
from django.http import HttpRequest

from apikeys.models import ApiKey, Scope
from core.errors import NotFound
from core.ids import parse_uuid
from organizations.models import Membership, Organization, Role

SESSION_KEY = "current_organization_id"
HEADER = "HTTP_X_ORGANIZATION"


@dataclass(frozen=True)
class Tenant:
    organization: Organization
    role: Role
    user: Any | None = None  # a User for sessions; None for API keys
    api_key: ApiKey | None = None
    project_id: uuid.UUID | None = None  # set for project-restricted keys

    def has_role(self, role: Role) -> bool:
        return self.role.at_least(role)


def tenant_for_key(api_key: ApiKey) -> Tenant:
    role = Role.EDITOR if api_key.scope == Scope.WRITE else Role.VIEWER
    return Tenant(
        organization=api_key.organization, role=role, api_key=api_key, project_id=api_key.project_id
    )


def memberships_of(user: Any) -> Any:
    return Membership.objects.filter(user=user).select_related("organization").order_by("created_at")


def tenant_for_user(request: HttpRequest, user: Any) -> Tenant | None:
    memberships = memberships_of(user)
    wanted = request.META.get(HEADER)
    if wanted:
        org_id = parse_uuid(wanted)
        if org_id is None and not slug_re.match(wanted):
            # Not an id nor a slug (e.g. a NUL byte, which Postgres refuses): no such organization.
            raise NotFound("Organization not found.", code="organization_not_found")
        lookup = {"organization_id": org_id} if org_id else {"organization__slug": wanted}
        membership = memberships.filter(**lookup).first()
        if membership is None:
            raise NotFound("Organization not found.", code="organization_not_found")
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
    if isinstance(auth, ApiKey):
        tenant: Tenant | None = tenant_for_key(auth)
    elif user is not None and user.is_authenticated:
        tenant = tenant_for_user(request, user)
    else:
        tenant = None
    request._tenant = tenant
    return tenant
