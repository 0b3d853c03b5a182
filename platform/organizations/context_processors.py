from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from organizations.tenancy import memberships_of


def organization(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    tenant = getattr(request, "tenant", None)
    return {
        "current_tenant": tenant if tenant else None,
        "current_organization": tenant.organization if tenant else None,
        "user_memberships": memberships_of(user),
    }
