"""An organization's identity provider and the email domains that route to it.

A domain routes sign-ins to its organization's provider, and grants membership there, only once it is
verified (a DNS TXT record the organization's admin publishes, or an operator's word in the admin); a
domain is verified for at most one organization.
"""

from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from organizations.models import ASSIGNABLE_ROLE_CHOICES, Organization, Role

#: Prefix of the allauth provider id of an organization's provider (``org-<uuid>``); the
#: installation-wide providers from LOOM_OIDC_PROVIDERS may not use it.
ORG_PROVIDER_PREFIX = "org-"
#: The TXT record an admin publishes: ``_loom-verification.<domain>`` = ``loom-verification=<token>``.
DNS_RECORD_PREFIX = "_loom-verification"
DNS_VALUE_PREFIX = "loom-verification="


class IdentityProvider(models.Model):
    """An organization's OpenID Connect provider (Okta, Entra ID, Keycloak, Google Workspace ...)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="identity_provider")
    name = models.CharField(max_length=120, help_text="Shown on the sign-in button.")
    #: The issuer; its ``/.well-known/openid-configuration`` names every endpoint.
    server_url = models.URLField(max_length=500)
    client_id = models.CharField(max_length=255)
    #: Write-only: encrypted (sso.credentials), never shown.
    encrypted_client_secret = models.TextField(editable=False)
    default_role = models.CharField(max_length=16, choices=ASSIGNABLE_ROLE_CHOICES, default=Role.VIEWER)
    groups_claim = models.CharField(max_length=100, default="groups")
    #: ``{"<group in the IdP>": "<role>"}``; the highest role of a user's groups wins.
    group_roles = models.JSONField(default=dict, blank=True)
    #: False: members sign in only through this provider, never with a password.
    password_login_allowed = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.organization})"

    @property
    def provider_id(self) -> str:
        return f"{ORG_PROVIDER_PREFIX}{self.pk}"

    def role_for_groups(self, groups: list[str]) -> Role | None:
        """The highest role the mapping gives any of ``groups``; None when none is mapped."""
        roles = [Role(self.group_roles[g]) for g in groups if g in self.group_roles]
        return max(roles, key=lambda r: r.rank) if roles else None


class VerificationMethod(models.TextChoices):
    DNS = "dns", _("DNS TXT record")
    OPERATOR = "operator", _("Operator")


def new_verification_token() -> str:
    return secrets.token_urlsafe(24)


class EmailDomain(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="email_domains")
    domain = models.CharField(max_length=253)
    verification_token = models.CharField(max_length=64, default=new_verification_token, editable=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.CharField(max_length=16, choices=VerificationMethod.choices, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "domain"], name="email_domain_unique_per_org"),
            # A domain routes to one organization: a second can add it, never verify it too.
            models.UniqueConstraint(
                fields=["domain"], condition=Q(verified_at__isnull=False), name="email_domain_verified_once"
            ),
        ]

    def __str__(self) -> str:
        return self.domain

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None

    @property
    def dns_record_name(self) -> str:
        return f"{DNS_RECORD_PREFIX}.{self.domain}"

    @property
    def dns_record_value(self) -> str:
        return f"{DNS_VALUE_PREFIX}{self.verification_token}"
