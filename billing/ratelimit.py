"""API rate limits: per API key and per organization (from the plan), per client address without credentials.

Every ``/api/v1/`` request is counted by ``ApiRateLimitMiddleware``:

* an API key counts against its own limit (``Plan.api_rate_limit_per_minute``) and
  its organization's (``Plan.org_rate_limit_per_minute``), which all the
  organization's keys and signed-in members share;
* a signed-in member (session) counts against their organization's limit only;
* anything else (no credentials, a wrong key, a member of no organization) counts
  against its client address (``API_RATE_LIMIT_ANONYMOUS_PER_MINUTE``), so guessing
  keys is limited too.

The counters live in Redis through the ``limits`` package with its moving-window
strategy: each limit is a list of the times of the calls it accepted, and a Lua
script checks "fewer than N calls in the last 60 seconds" and records the call in
one atomic step. Concurrent requests cannot both take the last slot (the race of
DRF's read-then-write throttles), and a refused call is not recorded, so a client
retrying while limited does not push its own reset further away. A fixed window
would be one counter instead of a list, but lets 2N calls through around a window
boundary (N at 0:59, N at 1:00); the list costs at most N timestamps per limit.

The limits are checked key first, then organization. One call a key's limit
refuses never reaches the organization's count; one the organization refuses after
the key accepted it stays in the key's count (the moving window has no way to take
a call back), which at worst makes that key wait for calls it made while its
organization was over its limit.

Every API response carries the headers of the tighter limit (the fewer calls left):

* ``X-RateLimit-Limit``: calls allowed per minute;
* ``X-RateLimit-Remaining``: calls left now;
* ``X-RateLimit-Reset``: when the oldest counted call leaves the window, as Unix
  epoch seconds (rounded up): the moment one more call is allowed again;

and a 429 ``{"code": "rate_limited", "detail": ...}`` adds ``Retry-After`` (seconds).
For an API key the plan is a per-process copy at most ``API_KEY_CACHE_S`` old (an
API call spends no query on it; admission still reads the plan fresh before any
work is charged): a changed limit applies within that time (and starts a fresh
window, since counters are keyed by their limit). A signed-in member's plan is
read on each call.
If Redis cannot be reached, calls go through without limits or
headers (logged), rather than the API failing with Redis.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import Counter
from redis.exceptions import RedisError

from apikeys.models import ApiKey
from apikeys.services import authenticate_request_key
from billing.plans import current_plan, loaded_subscription
from core.errors import DomainError
from core.memo import ExpiringCache
from organizations.tenancy import tenant_for_user

if TYPE_CHECKING:
    from billing.models import Plan
    from organizations.models import Organization

logger = logging.getLogger(__name__)

ViewFunc = Callable[..., HttpResponse]

#: Requests under this path are rate limited (the whole versioned API).
API_PATH_PREFIX = "/api/v1/"
#: Redis timeouts: a stuck Redis must not hold API requests (the call goes through unlimited).
REDIS_TIMEOUT_S = 1.0
#: ``tracking``: the public tracking links and pixels (``limit_by_address``), counted apart from the API.
SCOPES = ("key", "organization", "address", "tracking")
#: Calls answered 429, by the scope of the limit that refused them (``GET /metrics``). Each gunicorn
#: process counts its own; /metrics adds them up (prometheus_client's multiprocess mode, which
#: platform/config/gunicorn.py turns on), as it does django-prometheus' request counters.
REFUSALS = Counter("loom_rate_limit_refusals", "API calls refused with 429, by the limit that refused them.", ["scope"])
for _scope in SCOPES:
    REFUSALS.labels(scope=_scope)  # every scope from the start at 0, so a rate() sees its first refusal


@dataclass(frozen=True)
class Limit:
    """One budget a request draws on: ``per_minute`` calls in any 60 seconds."""

    scope: str  # one of SCOPES
    identifier: str
    per_minute: int
    description: str  # for people: "the API key loom_abc…", "the organization Acme"

    @property
    def item(self) -> RateLimitItemPerMinute:
        return RateLimitItemPerMinute(self.per_minute, namespace="api")


@dataclass(frozen=True)
class Outcome:
    """The decision for one request and the numbers its headers report."""

    allowed: bool
    limit: Limit  # the limit that refused the call, else the tighter one
    remaining: int
    reset_at: float  # Unix time

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit.per_minute),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }

    def retry_after(self, now: float | None = None) -> int:
        """Whole seconds until one more call is allowed (at least 1)."""
        return max(math.ceil(self.reset_at - (now if now is not None else time.time())), 1)


# --- which limits a request draws on -------------------------------------------------------------


def limits_for(request: HttpRequest) -> list[Limit]:
    """The limits of the caller, narrowest first. A key's plan comes from ``_plan_for_limits`` (at most
    ``API_KEY_CACHE_S`` old); a signed-in member's is read now."""
    api_key = _api_key(request)
    if api_key is not None:
        plan = _plan_for_limits(api_key.organization)
        return [
            Limit(
                "key", str(api_key.pk), plan.api_rate_limit_per_minute,
                gettext("the API key %(key)s") % {"key": api_key.masked},
            ),
            _organization_limit(api_key.organization, plan),
        ]
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        try:
            tenant = tenant_for_user(request, user)
        except DomainError:  # an X-Organization header naming no organization of theirs: the view answers 404
            tenant = None
        if tenant is not None:
            return [_organization_limit(tenant.organization, current_plan(tenant.organization))]
    address = client_address(request)
    per_minute = settings.API_RATE_LIMIT_ANONYMOUS_PER_MINUTE
    who = gettext("a client without credentials at %(address)s") % {"address": address}
    return [Limit("address", address, per_minute, who)]


#: Organization id -> its plan as last read.
_known_plans: ExpiringCache[Plan] = ExpiringCache(4096, lambda: settings.API_KEY_CACHE_S)


def _plan_for_limits(organization: Organization) -> Plan:
    """The organization's plan as its rate limits read it: read again once ``API_KEY_CACHE_S`` old."""
    plan = _known_plans.get(organization.pk)
    if plan is None:
        plan = current_plan(organization, subscription=loaded_subscription(organization))
        _known_plans.put(organization.pk, plan)
    return plan


def _organization_limit(organization: Organization, plan: Plan) -> Limit:
    return Limit(
        "organization", str(organization.pk), plan.org_rate_limit_per_minute,
        gettext("the organization %(name)s") % {"name": organization.name},
    )


def _api_key(request: HttpRequest) -> ApiKey | None:
    """The valid key in ``Authorization: Bearer ...``, read as ``ApiKeyAuthentication`` reads it."""
    keyword, _, raw_key = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if keyword.lower() != "bearer" or not raw_key.strip():
        return None
    return authenticate_request_key(request, raw_key.strip())


def client_address(request: HttpRequest) -> str:
    """The caller's IP: the socket's peer, or the entry ``API_RATE_LIMIT_TRUSTED_PROXIES`` hops back in
    X-Forwarded-For (what the last trusted proxy saw; entries further left are the client's to forge)."""
    trusted = settings.API_RATE_LIMIT_TRUSTED_PROXIES
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if trusted > 0 and len(forwarded) >= trusted:
        return forwarded[-trusted][:64]
    return str(request.META.get("REMOTE_ADDR") or "unknown")[:64]


# --- counting ------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _storage(url: str, prefix: str) -> RedisStorage:
    # One pooled client per process and Redis URL (tests point REDIS_URL elsewhere for a moment).
    return RedisStorage(url, key_prefix=prefix, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)


def _limiter() -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(_storage(settings.REDIS_URL, settings.RATE_LIMIT_KEY_PREFIX))


def hit(limits: list[Limit]) -> Outcome:
    """Count one call against every limit, narrowest first; stop at the first that refuses it."""
    limiter = _limiter()
    for limit in limits:
        if not limiter.hit(limit.item, limit.scope, limit.identifier):
            stats = limiter.get_window_stats(limit.item, limit.scope, limit.identifier)
            return Outcome(allowed=False, limit=limit, remaining=0, reset_at=stats.reset_time)
    windows = [(limit, limiter.get_window_stats(limit.item, limit.scope, limit.identifier)) for limit in limits]
    limit, stats = min(windows, key=lambda pair: (pair[1].remaining, pair[0].per_minute))
    return Outcome(allowed=True, limit=limit, remaining=stats.remaining, reset_at=stats.reset_time)


def clear() -> int:
    """Forget every counter under ``RATE_LIMIT_KEY_PREFIX`` (tests, and an operator's reset); returns how many."""
    storage = _storage(settings.REDIS_URL, settings.RATE_LIMIT_KEY_PREFIX)
    client = storage.get_connection()
    keys = list(client.scan_iter(match=storage.prefixed_key("*"), count=1000))
    return int(client.delete(*keys)) if keys else 0


def refusal(outcome: Outcome) -> JsonResponse:
    """The 429 for a refused call: which limit, and when it lets the next call through."""
    wait = outcome.retry_after()
    resets = datetime.fromtimestamp(math.ceil(outcome.reset_at), UTC)
    detail = gettext(
        "Rate limit exceeded: %(who)s may make %(limit)s API calls "
        "per minute. The next call is allowed in %(wait)s s, at %(resets)s UTC."
    ) % {
        "who": outcome.limit.description, "limit": outcome.limit.per_minute, "wait": wait,
        "resets": f"{resets:%Y-%m-%d %H:%M:%S}",
    }
    response = JsonResponse({"code": "rate_limited", "detail": detail}, status=429)
    response["Retry-After"] = str(wait)
    return response


def limit_by_address(scope: str, per_minute_setting: str) -> Callable[[ViewFunc], ViewFunc]:
    """A view decorator for public pages outside the API (tracking links, pixels): each request counts
    against its client address's limit (the setting ``per_minute_setting``), under ``scope``'s own
    counters; over the limit a plain-text 429 with ``Retry-After``, and the view does not run.

    Same strategy and storage as the API's limits; if Redis cannot be reached the request goes through.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown rate-limit scope {scope!r}")

    def decorate(view: ViewFunc) -> ViewFunc:
        @wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            address = client_address(request)
            who = gettext("a client without credentials at %(address)s") % {"address": address}
            try:
                outcome = hit([Limit(scope, address, getattr(settings, per_minute_setting), who)])
            except RedisError:
                logger.exception("%s rate limit not applied: Redis is unavailable", scope)
                return view(request, *args, **kwargs)
            if outcome.allowed:
                return view(request, *args, **kwargs)
            REFUSALS.labels(scope=scope).inc()
            response = HttpResponse(
                "Too many requests from your address; try again in a minute.", status=429, content_type="text/plain"
            )
            response["Retry-After"] = str(outcome.retry_after())
            response["Cache-Control"] = "no-store"
            return response

        return limited

    return decorate


class ApiRateLimitMiddleware:
    """Counts every ``/api/v1/`` request, refuses it with 429 over a limit, and adds the headers to every answer.

    A middleware rather than a DRF throttle: throttles run after authentication and
    permission checks, so 401s, 403s and unrouted 404s would go uncounted and
    without headers.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PATH_PREFIX):
            return self.get_response(request)
        limits = limits_for(request)
        try:
            outcome = hit(limits)
        except RedisError:
            logger.exception("rate limits not applied: Redis is unavailable")
            return self.get_response(request)
        if outcome.allowed:
            response = self.get_response(request)
        else:
            REFUSALS.labels(scope=outcome.limit.scope).inc()
            response = refusal(outcome)
        for name, value in outcome.headers().items():
            response[name] = value
        return response
