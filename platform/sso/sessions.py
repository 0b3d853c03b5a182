"""A session signed in through an identity provider lives only as long as the provider agrees.

At sign-in the provider's tokens are kept (allauth's ``SocialToken``: access token, refresh token,
expiry) and the session remembers which account it came from. Every ``SSO_REVALIDATE_S`` seconds the
next request refreshes the tokens at the provider's token endpoint; a provider that refuses (the user
was removed or deactivated there, the grant revoked, the provider removed here) ends the session.
A provider that cannot be reached does not sign anyone out: the check is retried at the next interval.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta

import requests
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

logger = logging.getLogger(__name__)

ACCOUNT_KEY = "sso_account_id"
CHECKED_KEY = "sso_checked_at"
#: OAuth 2.0 errors (RFC 6749 5.2) that mean the grant is gone for good, not that the provider is unwell.
REFUSALS = {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied"}
#: The provider's discovery document, reused between checks (one HTTP round trip fewer per check).
DISCOVERY_CACHE_S = 600
HTTP_TIMEOUT_S = 10


def start(request: HttpRequest, sociallogin: SocialLogin) -> None:
    request.session[ACCOUNT_KEY] = sociallogin.account.pk
    request.session[CHECKED_KEY] = time.time()


def is_due(request: HttpRequest) -> bool:
    if ACCOUNT_KEY not in request.session:
        return False
    return time.time() - float(request.session.get(CHECKED_KEY, 0)) >= settings.SSO_REVALIDATE_S


def _token_endpoint(request: HttpRequest, app: SocialApp) -> tuple[str, bool]:
    """The provider's token endpoint and whether it wants the client's credentials in HTTP Basic auth."""
    # By issuer, not provider id: an organization that points its provider elsewhere is not sent to the old one.
    key = "sso:discovery:" + hashlib.sha256(f"{app.provider_id}|{app.settings['server_url']}".encode()).hexdigest()
    found = cache.get(key)
    if found is None:
        adapter = OpenIDConnectOAuth2Adapter(request, app.provider_id)
        found = (adapter.access_token_url, adapter.basic_auth)
        cache.set(key, found, DISCOVERY_CACHE_S)
    return found[0], found[1]


def _refresh(request: HttpRequest, account: SocialAccount, token: SocialToken) -> bool | None:
    """True: refreshed; False: the provider refused; None: the provider could not be asked."""
    try:
        app: SocialApp = get_adapter().get_provider(request, account.provider).app
    except SocialApp.DoesNotExist:
        return False  # the organization removed its provider: nothing vouches for this session any more
    data = {"grant_type": "refresh_token", "refresh_token": token.token_secret}
    try:
        url, basic = _token_endpoint(request, app)
        auth = (app.client_id, app.secret) if basic else None
        if not basic:
            data |= {"client_id": app.client_id, "client_secret": app.secret}
        with get_adapter().get_requests_session() as session:
            response = session.post(url, data=data, auth=auth, timeout=HTTP_TIMEOUT_S)
    except requests.RequestException as exc:
        logger.warning("sso: %s unreachable for a session check: %s", account.provider, exc)
        return None
    if response.status_code == 200:
        body = response.json()
        token.token = body.get("access_token", token.token)
        token.token_secret = body.get("refresh_token") or token.token_secret  # rotated, or kept
        if expires_in := body.get("expires_in"):
            token.expires_at = timezone.now() + timedelta(seconds=int(expires_in))
        token.save(update_fields=["token", "token_secret", "expires_at"])
        return True
    try:
        error = response.json().get("error", "")
    except ValueError:
        error = ""
    if response.status_code in {400, 401} and error in REFUSALS:
        logger.info("sso: %s refused the session of %s (%s)", account.provider, account.user_id, error)
        return False
    logger.warning("sso: %s answered %s to a session check", account.provider, response.status_code)
    return None


def still_valid(request: HttpRequest) -> bool:
    """Check the session with its provider; False means sign it out. Only call when ``is_due``."""
    account_id = request.session.get(ACCOUNT_KEY)
    with transaction.atomic():
        # Locked: two requests of one session checking at once would both spend the same refresh token,
        # and a provider that rotates refresh tokens treats the second as a replay.
        token = (
            SocialToken.objects.select_for_update()
            .select_related("account")
            .filter(account_id=account_id, account__user_id=request.user.pk)
            .first()
        )
        if token is None:
            return False
        if not token.token_secret:
            # No refresh token was issued: the session lasts as long as the access token.
            ok: bool | None = token.expires_at is None or token.expires_at > timezone.now()
        else:
            ok = _refresh(request, token.account, token)
        if ok is False:
            token.delete()
            return False
    request.session[CHECKED_KEY] = time.time()
    return True

