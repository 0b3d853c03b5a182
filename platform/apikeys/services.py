"""API key lifecycle: create (secret returned once), authenticate, revoke."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from apikeys.models import ApiKey, Scope
from audit.services import record
from core.errors import Conflict, InvalidInput
from organizations.models import Organization, Role
from organizations.services import require_role

if TYPE_CHECKING:
    from accounts.models import User
    from projects.models import Project

_PREFIX_BYTES = 6  # 8 url-safe characters: lookup id, not a secret
_SECRET_BYTES = 32  # 256 bits of entropy, so an unsalted SHA-256 is safe to store
# What follows the type prefix: the lookup prefix (no '_'), '_', then the url-safe secret.
# Checked before any query: a malformed value (a NUL byte, say) never reaches the database.
_KEY_BODY_RE = re.compile(r"([A-Za-z0-9]{1,16})_([A-Za-z0-9_-]{1,128})")
# Writing last_used_at on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # the full key; shown to the user once, never stored


def hash_secret(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _new_prefix() -> str:
    # No '_' inside the prefix, so the key splits unambiguously.
    while True:
        prefix = secrets.token_urlsafe(_PREFIX_BYTES).replace("_", "x").replace("-", "y")
        if not ApiKey.objects.filter(prefix=prefix).exists():
            return prefix


@transaction.atomic
def create_api_key(
    *, actor: User, organization: Organization, name: str, scope: str = Scope.WRITE,
    project: Project | None = None, expires_at: datetime | None = None,
) -> IssuedKey:
    require_role(actor, organization, Role.ADMIN)
    name = (name or "").strip()
    if not name:
        raise InvalidInput(gettext("Give the key a name so you can recognise it later."), code="name_required")
    if scope not in Scope.values:
        raise InvalidInput(
            gettext("Scope must be one of %(join)s.") % {"join": ", ".join(Scope.values)}, code="invalid_scope"
        )
    if project is not None and project.organization_id != organization.pk:
        raise InvalidInput(gettext("That project is not in this organization."), code="invalid_project")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput(gettext("The expiry date must be in the future."), code="invalid_expiry")
    prefix = _new_prefix()
    raw_key = f"{settings.API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    api_key = ApiKey.objects.create(
        organization=organization,
        project=project,
        name=name,
        scope=scope,
        prefix=prefix,
        secret_hash=hash_secret(raw_key),
        created_by=actor,
        expires_at=expires_at,
    )
    record(
        "api_key.created",
        organization=organization,
        actor=actor,
        target=api_key,
        name=name,
        scope=scope,
        project=str(project.pk) if project else None,
        prefix=prefix,
    )
    return IssuedKey(api_key=api_key, secret=raw_key)


def parse_key(raw_key: str) -> str | None:
    """Return the lookup prefix of a well-formed key, else None."""
    if not raw_key.startswith(settings.API_KEY_PREFIX):
        return None
    match = _KEY_BODY_RE.fullmatch(raw_key[len(settings.API_KEY_PREFIX) :])
    return match.group(1) if match else None


def authenticate_key(raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key``, or None. Revocation is read from the DB on every call."""
    prefix = parse_key(raw_key)
    if prefix is None:
        return None
    api_key = (
        ApiKey.objects.active()
        # The subscription and plan come along: every API call's rate limit needs them (billing.ratelimit).
        .select_related("organization__subscription__plan", "project")
        .filter(prefix=prefix)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, hash_secret(raw_key)):
        return None
    _touch(api_key)
    return api_key


#: Where ``authenticate_request_key`` keeps its answer on the request.
_REQUEST_ATTRIBUTE = "_loom_authenticated_key"


def authenticate_request_key(request: Any, raw_key: str) -> ApiKey | None:
    """``authenticate_key``, once per request.

    The rate limiter (a middleware) and DRF's authentication both need the caller's key;
    looking it up twice doubled the per-request database work. The answer is kept on
    Django's request (a DRF ``Request`` wraps it), for this raw key only.
    """
    http_request = getattr(request, "_request", request)
    cached = getattr(http_request, _REQUEST_ATTRIBUTE, None)
    # Plain equality: both strings are this request's own header, there is no secret to time against.
    if cached is not None and cached[0] == raw_key:
        return cached[1]  # type: ignore[no-any-return]
    api_key = authenticate_key(raw_key)
    setattr(http_request, _REQUEST_ATTRIBUTE, (raw_key, api_key))
    return api_key


def _touch(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


@transaction.atomic
def revoke_api_key(*, actor: User, api_key: ApiKey) -> ApiKey:
    require_role(actor, api_key.organization, Role.ADMIN)
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at is not None:
        raise Conflict(gettext("This key is already revoked."), code="already_revoked")
    api_key.revoked_at = timezone.now()
    api_key.revoked_by = actor
    api_key.save(update_fields=["revoked_at", "revoked_by"])
    record("api_key.revoked", organization=api_key.organization, actor=actor, target=api_key, prefix=api_key.prefix)
    return api_key
