"""``GET /metrics`` for Prometheus: with ``METRICS_TOKEN`` set, only for ``Authorization: Bearer <token>``;
without it, only for a caller on ``METRICS_ALLOWED_NETWORKS`` (default: this host) that came through no proxy.

A request a reverse proxy forwards arrives from the proxy's address, often this very host: the proxy's
``X-Forwarded-For`` / ``Forwarded`` header is what tells it apart from a local scraper, so a request
carrying one needs the token.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from config.metrics import exposition

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(configured: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in configured)


def refusal(request: HttpRequest) -> str | None:
    """Why ``request`` may not read the metrics; None when it may."""
    token = settings.METRICS_TOKEN
    if token:
        keyword, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if keyword.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return "Send the metrics token: Authorization: Bearer <METRICS_TOKEN>."
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return "Metrics are not served through a proxy without a token: set METRICS_TOKEN."
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return "Metrics are served only to the addresses in METRICS_ALLOWED_NETWORKS, or with METRICS_TOKEN."
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a server bound to [::] sees IPv4 callers as ::ffff:a.b.c.d
    if any(address in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS))):
        return None
    return "Metrics are served only to the addresses in METRICS_ALLOWED_NETWORKS, or with METRICS_TOKEN."


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if (reason := refusal(request)) is not None:
        return JsonResponse({"code": "permission_denied", "detail": reason}, status=403)
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
