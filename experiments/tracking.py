"""Tracking links and pixels: signed tokens that name an assignment (and, for a link, its target URL),
and the signals that tell a person's click from a bot's, a link scanner's or a browser's prefetch.

A token is ``django.core.signing`` over ``{"a": assignment id, "k": "click"|"open", "u": target}``: nothing
in it can be changed without the secret key, so the redirect only ever leads to a URL this platform
signed, and the host is checked again against the experiment's list when the link is followed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crawlerdetect import CrawlerDetect
from django.core import signing
from django.http import HttpRequest

SALT = "experiments.tracking"
CLICK, OPEN = "click", "open"

#: Headers browsers send on a speculative fetch (Chrome's prerender/prefetch, Firefox, Safari): a page
#: loaded in advance is not a click.
_PREFETCH_HEADERS = ("HTTP_SEC_PURPOSE", "HTTP_PURPOSE", "HTTP_X_PURPOSE", "HTTP_X_MOZ")


class BadToken(Exception):
    """Tampered, foreign (signed with another key) or malformed."""


@dataclass(frozen=True)
class Token:
    assignment_id: str
    kind: str
    target: str


def sign(assignment_id: Any, kind: str, target: str = "") -> str:
    payload = {"a": str(assignment_id), "k": kind}
    if target:
        payload["u"] = target
    return signing.dumps(payload, salt=SALT, compress=True)


def unsign(token: str) -> Token:
    try:
        payload = signing.loads(token, salt=SALT)
    except (signing.BadSignature, ValueError, UnicodeError) as exc:
        raise BadToken(str(exc)) from None
    if not isinstance(payload, dict) or payload.get("k") not in (CLICK, OPEN) or not isinstance(payload.get("a"), str):
        raise BadToken("unexpected payload")
    target = payload.get("u", "")
    if payload["k"] == CLICK and not (isinstance(target, str) and is_web_url(target)):
        raise BadToken("a click token needs an http(s) target")
    return Token(payload["a"], payload["k"], target if isinstance(target, str) else "")


def is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def host_allowed(url: str, allowed: set[str]) -> bool:
    return is_web_url(url) and host_of(url) in allowed


def is_automated(request: HttpRequest) -> bool:
    """A request no person made: HEAD (link checkers), a prefetch, no user agent, or a known bot's."""
    if request.method == "HEAD":
        return True
    if any("prefetch" in request.META.get(h, "").lower() or "prerender" in request.META.get(h, "").lower()
           for h in _PREFETCH_HEADERS):
        return True
    agent = request.META.get("HTTP_USER_AGENT", "").strip()
    if not agent:
        return True
    # A new detector per call: it keeps the last match on the instance (not thread-safe); its
    # compiled patterns are shared, so this costs ~0.3 ms.
    return bool(CrawlerDetect().isCrawler(agent))
