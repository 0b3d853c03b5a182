"""Single sign-on: which provider an address goes to, and the writes (an organization's identity
provider, its email domains, and the membership a sign-in through that provider grants).

Configuration changes need the admin role and write an audit row; so does every membership or role
a sign-in grants.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from audit.services import record
from core.errors import Conflict, InvalidInput, NotFound
from core.ids import parse_uuid
from organizations.models import ASSIGNABLE_ROLES, Membership, Organization, Role
from organizations.services import require_role
from sso import credentials
from sso.models import DNS_VALUE_PREFIX, ORG_PROVIDER_PREFIX, EmailDomain, IdentityProvider, VerificationMethod

if TYPE_CHECKING:
    from accounts.models import User

# RFC 1035 labels, at least two of them; IDNs are entered in their ASCII (xn--) form.
_DOMAIN_RE = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
_ROLE_VALUES = {r.value for r in ASSIGNABLE_ROLES}


def email_domain_of(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower().rstrip(".") if "@" in email else ""


# --- reading --------------------------------------------------------------------------------------


def verified_domain(domain: str) -> EmailDomain | None:
    return EmailDomain.objects.select_related("organization").filter(domain=domain, verified_at__isnull=False).first()


def provider_for_email(email: str) -> IdentityProvider | None:
    """The provider a sign-in with ``email`` goes to: its domain's, when that domain is verified."""
    domain = verified_domain(email_domain_of(email))
    if domain is None:
        return None
    return IdentityProvider.objects.select_related("organization").filter(organization=domain.organization).first()


def provider_by_id(provider_id: str) -> IdentityProvider | None:
    """The organization's provider an allauth provider id (``org-<uuid>``) names; None for any other id."""
    if not provider_id.startswith(ORG_PROVIDER_PREFIX):
        return None
    pk = parse_uuid(provider_id.removeprefix(ORG_PROVIDER_PREFIX))
    return IdentityProvider.objects.select_related("organization").filter(pk=pk).first() if pk else None


def may_sign_in_through(provider: IdentityProvider, email: str) -> bool:
    """An organization's provider vouches only for addresses in that organization's verified domains:
    another organization's provider must never reach an account of this one by asserting its address."""
    domain = verified_domain(email_domain_of(email))
    return domain is not None and domain.organization_id == provider.organization_id


def password_login_refusal(email: str, user: Any | None = None) -> str | None:
    """Why ``email`` (or ``user``) may not sign in with a password, or None when it may.

    Refused when an organization of theirs, or the one that verified their email domain, signs in
    only through its identity provider.
    """
    strict = IdentityProvider.objects.filter(password_login_allowed=False).select_related("organization")
    provider = None
    if user is not None and getattr(user, "pk", None):
        provider = strict.filter(organization__memberships__user=user).first()
    if provider is None and (domain := verified_domain(email_domain_of(email))):
        provider = strict.filter(organization=domain.organization).first()
    if provider is None:
        return None
    return gettext(
        "%(organization)s signs in through %(provider)s: use “Continue with single sign-on” "
        "with your work email. Password sign-in is turned off for its members."
    ) % {"organization": provider.organization.name, "provider": provider.name}


# --- the identity provider ------------------------------------------------------------------------


def parse_group_roles(text: str) -> dict[str, str]:
    """``group = role`` lines (blank lines and ``#`` comments ignored) into the stored mapping."""
    mapping: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        group, sep, role = (part.strip() for part in line.rpartition("="))
        if not sep or not group or role not in _ROLE_VALUES:
            raise InvalidInput(
                gettext("Line %(number)s of the group mapping should read “group = role” with a role of %(roles)s.")
                % {"number": number, "roles": ", ".join(sorted(_ROLE_VALUES))},
                code="invalid_group_roles",
            )
        mapping[group] = role
    return mapping


def _check_server_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.netloc:
        raise InvalidInput(
            gettext("The issuer URL must be an http(s) URL, e.g. %(example)s.") % {"example": "https://login.example.com"},
            code="invalid_server_url",
        )
    if parts.scheme == "http" and not settings.DEBUG and parts.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise InvalidInput(
            gettext("The issuer URL must use %(scheme)s.") % {"scheme": "https"}, code="invalid_server_url"
        )
    return url


@transaction.atomic
def configure_identity_provider(
    *,
    actor: User,
    organization: Organization,
    name: str,
    server_url: str,
    client_id: str,
    client_secret: str,
    default_role: str = Role.VIEWER,
    groups_claim: str = "groups",
    group_roles: dict[str, str] | None = None,
    password_login_allowed: bool = True,
) -> IdentityProvider:
    """Create or change the organization's provider. An empty ``client_secret`` keeps the stored one."""
    require_role(actor, organization, Role.ADMIN)
    if default_role not in _ROLE_VALUES:
        raise InvalidInput(gettext("The default role must be admin, editor or viewer."), code="invalid_role")
    if any(role not in _ROLE_VALUES for role in (group_roles or {}).values()):
        raise InvalidInput(gettext("A group maps to admin, editor or viewer."), code="invalid_group_roles")
    if not name.strip() or not client_id.strip():
        raise InvalidInput(gettext("A provider needs a name and a client id."), code="invalid")
    provider = IdentityProvider.objects.select_for_update().filter(organization=organization).first()
    if provider is None and not client_secret:
        raise InvalidInput(gettext("Enter the client secret the provider issued."), code="secret_required")
    provider = provider or IdentityProvider(organization=organization)
    provider.name = name.strip()
    provider.server_url = _check_server_url(server_url)
    provider.client_id = client_id.strip()
    if client_secret:
        provider.encrypted_client_secret = credentials.encrypt(client_secret)
    provider.default_role = default_role
    provider.groups_claim = groups_claim.strip() or "groups"
    provider.group_roles = dict(group_roles or {})
    provider.password_login_allowed = password_login_allowed
    created = provider._state.adding
    provider.save()
    record(
        "sso.provider_created" if created else "sso.provider_changed",
        organization=organization, actor=actor, target=provider, server_url=provider.server_url,
        client_id=provider.client_id, password_login_allowed=password_login_allowed,
    )
    return provider


@transaction.atomic
def remove_identity_provider(*, actor: User, organization: Organization) -> None:
    require_role(actor, organization, Role.ADMIN)
    provider = IdentityProvider.objects.filter(organization=organization).first()
    if provider is None:
        raise NotFound(gettext("This organization has no identity provider."), code="provider_not_found")
    record("sso.provider_removed", organization=organization, actor=actor, target=provider)
    provider.delete()


# --- email domains --------------------------------------------------------------------------------


@transaction.atomic
def add_email_domain(*, actor: User, organization: Organization, domain: str) -> EmailDomain:
    require_role(actor, organization, Role.ADMIN)
    domain = domain.strip().lower().rstrip(".").removeprefix("@")
    if not _DOMAIN_RE.match(domain):
        raise InvalidInput(
            gettext("“%(domain)s” is not a domain name, e.g. %(example)s.")
            % {"domain": domain, "example": "example.com"},
            code="invalid_domain",
        )
    if EmailDomain.objects.filter(organization=organization, domain=domain).exists():
        raise Conflict(gettext("%(domain)s is already listed.") % {"domain": domain}, code="domain_exists")
    email_domain = EmailDomain.objects.create(organization=organization, domain=domain)
    record("sso.domain_added", organization=organization, actor=actor, target=email_domain, domain=domain)
    return email_domain


def _mark_verified(email_domain: EmailDomain, method: VerificationMethod) -> None:
    email_domain.verified_at = timezone.now()
    email_domain.verified_by = method
    try:
        with transaction.atomic():
            email_domain.save(update_fields=["verified_at", "verified_by"])
    except IntegrityError:
        raise Conflict(
            gettext("%(domain)s is verified by another organization. Ask your Loom operator if it should move.")
            % {"domain": email_domain.domain},
            code="domain_taken",
        ) from None


def lookup_txt_records(name: str) -> list[str]:
    """The TXT strings at ``name``; [] when there are none. Raises ``InvalidInput`` when DNS cannot answer.

    SSO_DNS_NAMESERVER (``host[:port]``) sends the query to one server instead of the system's
    resolvers: split-horizon DNS, and the tests' own server.
    """
    import dns.exception  # imported here: the DNS client is needed only by this check, not by every request
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=not settings.SSO_DNS_NAMESERVER)
    if settings.SSO_DNS_NAMESERVER:
        host, _, port = settings.SSO_DNS_NAMESERVER.partition(":")
        resolver.nameservers = [host]
        resolver.port = int(port or 53)
    resolver.lifetime = settings.SSO_DNS_TIMEOUT_S
    try:
        answer = resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise InvalidInput(
            gettext("DNS did not answer for %(name)s (%(error)s); try again later.")
            % {"name": name, "error": type(exc).__name__},
            code="dns_unavailable",
        ) from exc
    return [b"".join(rdata.strings).decode(errors="replace") for rdata in answer]


@transaction.atomic
def verify_email_domain(*, actor: User, organization: Organization, domain_id: Any) -> EmailDomain:
    """Verify a domain by the TXT record its admin published."""
    require_role(actor, organization, Role.ADMIN)
    email_domain = EmailDomain.objects.select_for_update().filter(organization=organization, pk=domain_id).first()
    if email_domain is None:
        raise NotFound(gettext("Domain not found."), code="domain_not_found")
    if email_domain.is_verified:
        return email_domain
    values = lookup_txt_records(email_domain.dns_record_name)
    if email_domain.dns_record_value not in values:
        found = ", ".join(v for v in values if v.startswith(DNS_VALUE_PREFIX)) or gettext("no Loom record")
        raise InvalidInput(
            gettext(
                "No TXT record %(name)s = %(value)s yet (found: %(found)s). DNS changes can take a while to spread."
            ) % {"name": email_domain.dns_record_name, "value": email_domain.dns_record_value, "found": found},
            code="not_verified",
        )
    _mark_verified(email_domain, VerificationMethod.DNS)
    record("sso.domain_verified", organization=organization, actor=actor, target=email_domain, method="dns")
    return email_domain


@transaction.atomic
def operator_verify_email_domain(*, actor: User, email_domain: EmailDomain) -> EmailDomain:
    """An operator vouches for the domain (the admin's action): no DNS record needed."""
    if not email_domain.is_verified:
        _mark_verified(email_domain, VerificationMethod.OPERATOR)
        record(
            "sso.domain_verified", organization=email_domain.organization, actor=actor, target=email_domain,
            method="operator",
        )
    return email_domain


@transaction.atomic
def remove_email_domain(*, actor: User, organization: Organization, domain_id: Any) -> None:
    require_role(actor, organization, Role.ADMIN)
    email_domain = EmailDomain.objects.filter(organization=organization, pk=domain_id).first()
    if email_domain is None:
        raise NotFound(gettext("Domain not found."), code="domain_not_found")
    record(
        "sso.domain_removed", organization=organization, actor=actor, target=email_domain, domain=email_domain.domain
    )
    email_domain.delete()


# --- sign-in --------------------------------------------------------------------------------------


def _groups_from(claims: dict[str, Any], claim: str) -> list[str]:
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    return [str(g) for g in value] if isinstance(value, list) else []


@transaction.atomic
def join_through_sso(*, user: User, provider: IdentityProvider, claims: dict[str, Any]) -> Membership | None:
    """Just-in-time membership after a sign-in through ``provider``.

    Only for an address in the organization's verified domains. A new member gets the role the IdP
    groups map to, else the default role; an existing member's role follows the mapping when one of
    their groups is mapped (never the owner's). Returns the membership, or None when none is granted.
    """
    if not may_sign_in_through(provider, user.email):
        return None
    organization = provider.organization
    groups = _groups_from(claims, provider.groups_claim)
    mapped = provider.role_for_groups(groups)
    membership = Membership.objects.select_for_update().filter(organization=organization, user=user).first()
    if membership is None:
        role = mapped or Role(provider.default_role)
        membership = Membership.objects.create(organization=organization, user=user, role=role)
        record(
            "membership.created", organization=organization, actor=user, target=membership, role=role, via="sso",
            groups=groups,
        )
    elif mapped and membership.role not in {Role.OWNER, mapped}:
        old = membership.role
        membership.role = mapped
        membership.save(update_fields=["role"])
        record(
            "membership.role_changed", organization=organization, actor=user, target=membership, user=user.email,
            old=old, new=mapped, via="sso", groups=groups,
        )
    return membership
