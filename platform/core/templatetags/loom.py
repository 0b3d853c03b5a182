"""Template helpers for the dashboard shell."""

from __future__ import annotations

from typing import Any

from django import template
from django.http import HttpRequest

register = template.Library()

#: Generation pages by navigation entry; the rest belong to "Generate".
_GENERATION_SECTIONS = {
    "history": "history",
    "job": "history",
    "bulk": "bulk",
    "batch": "bulk",
    "brand_voice": "projects",
}
_ORGANIZATION_SECTIONS = {"settings": "settings", "create": "", "switch": "", "invitation-accept": ""}


@register.filter
def has_role(tenant: Any, role: str) -> bool:
    """``{% if current_tenant|has_role:"editor" %}``: whether to show a button. The view checks again."""
    return bool(tenant) and tenant.has_role(role)


@register.simple_tag
def nav_section(request: HttpRequest) -> str:
    """Which top-navigation entry the current page belongs to."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return ""
    if match.namespace == "organizations":
        # A new organization or an invitation belongs to no tab of the current organization.
        return _ORGANIZATION_SECTIONS.get(match.url_name or "", "members")
    if match.namespace == "generation":
        return _GENERATION_SECTIONS.get(match.url_name or "", "generate")
    return match.namespace or match.url_name or ""
