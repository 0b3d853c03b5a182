"""allauth's extension points, where single sign-on meets sign-in.

- ``SocialAccountAdapter`` lists each organization's provider as an ``openid_connect`` app of its own
  (``org-<uuid>``) next to the installation-wide ones from LOOM_OIDC_PROVIDERS, and refuses a sign-in
  through an organization's provider for an address outside that organization's verified domains.
- ``AccountAdapter`` refuses every sign-in but SSO (password, the one after an email confirmation) to
  members of an organization that turned password sign-in off, and after an SSO sign-in grants
  membership just in time and starts the session's re-validation (``sso.sessions``).
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.authentication import get_authentication_records
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialApp, SocialLogin
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from organizations.tenancy import SESSION_KEY
from sso import credentials, services, sessions
from sso.models import ORG_PROVIDER_PREFIX, IdentityProvider


def _org_app(provider: IdentityProvider) -> SocialApp:
    return SocialApp(
        provider="openid_connect",
        provider_id=provider.provider_id,
        name=provider.name,
        client_id=provider.client_id,
        secret=credentials.decrypt(provider.encrypted_client_secret),
        # Hidden: an organization's provider is reached through its email domain, never a button for all.
        settings={"server_url": provider.server_url, "hidden": True},
    )


def _claims(sociallogin: SocialLogin) -> dict[str, Any]:
    data = sociallogin.account.extra_data or {}
    return {**(data.get("id_token") or {}), **(data.get("userinfo") or {})}


def _verified_emails(sociallogin: SocialLogin) -> list[str]:
    return [address.email.lower() for address in sociallogin.email_addresses if address.verified]


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def list_apps(
        self, request: HttpRequest, provider: str | None = None, client_id: str | None = None
    ) -> list[SocialApp]:
        apps = super().list_apps(request, provider=provider, client_id=client_id)
        # Only when asked for one by id: the sign-in page lists the installation's providers, not every
        # organization's (and their secrets stay encrypted until a sign-in needs one).
        if provider and provider.startswith(ORG_PROVIDER_PREFIX):
            org_provider = services.provider_by_id(provider)
            if org_provider is not None and client_id in (None, org_provider.client_id):
                apps.append(_org_app(org_provider))
        return apps

    def can_authenticate_by_email(self, login: SocialLogin, email: str) -> bool:
        org_provider = services.provider_by_id(login.account.provider)
        if org_provider is not None:
            # Signing in to an existing account by its address: only in the provider's own verified domains.
            return services.may_sign_in_through(org_provider, email)
        return super().can_authenticate_by_email(login, email)

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        org_provider = services.provider_by_id(sociallogin.account.provider)
        if org_provider is None:
            return
        emails = _verified_emails(sociallogin)
        if not any(services.may_sign_in_through(org_provider, email) for email in emails):
            raise ImmediateHttpResponse(self._refusal(request, org_provider, emails))

    @staticmethod
    def _refusal(request: HttpRequest, provider: IdentityProvider, emails: list[str]) -> HttpResponse:
        context = {"provider": provider, "emails": emails}
        return render(request, "sso/refused.html", context, status=403)


class AccountAdapter(DefaultAccountAdapter):
    def login(self, request: HttpRequest, user: Any) -> None:
        # Every sign-in passes here, the ones allauth resumes without ``pre_login`` included (the sign-in that
        # follows an email confirmation): all but SSO stop here for members of an SSO-only organization.
        records = get_authentication_records(request, user)
        via_sso = bool(records) and records[-1].get("method") == "socialaccount"
        if not via_sso and (reason := services.password_login_refusal(user.email, user)):
            messages.error(request, reason)
            raise ImmediateHttpResponse(redirect("account_login"))
        super().login(request, user)

    def post_login(
        self, request: HttpRequest, user: Any, *, signal_kwargs: dict[str, Any] | None, **kwargs: Any
    ) -> HttpResponse:
        response = super().post_login(request, user, signal_kwargs=signal_kwargs, **kwargs)
        sociallogin: SocialLogin | None = (signal_kwargs or {}).get("sociallogin")
        if sociallogin is not None:
            sessions.start(request, sociallogin)
            org_provider = services.provider_by_id(sociallogin.account.provider)
            if org_provider is not None:
                membership = services.join_through_sso(user=user, provider=org_provider, claims=_claims(sociallogin))
                if membership is not None:
                    request.session[SESSION_KEY] = str(membership.organization_id)
        return response  # type: ignore[no-any-return]
