"""API key lifecycle: create (secret returned once), authenticate, revoke."""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from apikeys.models import ApiKey, Scope
from audit.services import record
from core.errors import Conflict, InvalidInput
from core.memo import ExpiringCache
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
    """The active key matching ``raw_key``, or None.

    Revocation and expiry are read from the database on every call, by one small query on the key's
    own row. The organization and project that come with the key are a per-process copy at most
    ``API_KEY_CACHE_S`` old: loading them with the ORM on every call cost more CPU than the rest of a
    small API call (``bench.experiments``' assign). The subscription is not part of it: admission
    reads it fresh (``billing.loaded_subscription``), so a suspension or plan change is never judged
    by an old copy.
    """
    prefix = parse_key(raw_key)
    if prefix is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_CURRENT_KEY_SQL, [prefix, timezone.now()])
        row = cursor.fetchone()
    if row is None or not hmac.compare_digest(row[3], hash_secret(raw_key)):
        return None
    loaded = _loaded_key(prefix, _KeyRow(*row))
    if loaded is None:  # deleted between the two queries
        return None
    _touch(loaded)
    # The caller's own copies: a subscription or anything else a request caches on its key or
    # organization stays with that request.
    api_key = copy.copy(loaded)
    api_key.organization = copy.copy(loaded.organization)
    if loaded.project is not None:
        api_key.project = copy.copy(loaded.project)
    return api_key


# The key's row, active: parameters are the prefix and now. The same test as ApiKeyQuerySet.active()
# (change both together), as plain SQL compiled once instead of per call; the table name is the
# model's own, nothing from a request.
_CURRENT_KEY_SQL = (
    f"SELECT id, scope, project_id, secret_hash FROM {ApiKey._meta.db_table} "  # noqa: S608
    "WHERE prefix = %s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > %s)"
)


@dataclass(frozen=True)
class _KeyRow:
    id: Any
    scope: str
    project_id: Any
    secret_hash: str


#: Keys loaded with their organization and project, by prefix.
_loaded: ExpiringCache[ApiKey] = ExpiringCache(1024, lambda: settings.API_KEY_CACHE_S)


def _loaded_key(prefix: str, row: _KeyRow) -> ApiKey | None:
    cached = _loaded.get(prefix)
    # The same key (a deleted key's prefix is never reused, but be sure) as its row reads now.
    if cached is not None and (cached.pk, cached.scope, cached.project_id) == (row.id, row.scope, row.project_id):
        return cached
    try:
        api_key = ApiKey.objects.select_related("organization", "project").get(pk=row.id)
    except ApiKey.DoesNotExist:
        return None
    _loaded.put(prefix, api_key)
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
