"""Single sign-on pages: the sign-in page's "Continue with single sign-on", and the organization's settings."""

from __future__ import annotations

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.providers.base import AuthProcess
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.errors import DomainError, NotFound
from core.web import add_domain_error, form_status, post_data
from organizations.models import Role
from organizations.tenancy import current_tenant, tenant_required
from sso import services
from sso.forms import DomainForm, IdentityProviderForm, SsoStartForm
from sso.models import EmailDomain, IdentityProvider

_PROVIDER_ERRORS = {
    "invalid_server_url": "server_url", "secret_required": "client_secret", "invalid_role": "default_role",
    "invalid_group_roles": "group_roles",
}


@require_POST
def sso_start(request: HttpRequest) -> HttpResponse:
    """Send the address's owner to their organization's provider; only a verified domain routes."""
    form = SsoStartForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Enter your work email address to continue with single sign-on."))
        return redirect("account_login")
    email = form.cleaned_data["email"]
    provider = services.provider_for_email(email)
    if provider is None:
        messages.error(
            request,
            _(
                "No single sign-on is set up for %(domain)s. Sign in with your password, "
                "or ask your organization's admin."
            ) % {"domain": services.email_domain_of(email)},
        )
        return redirect("account_login")
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    social = get_adapter().get_provider(request, provider.provider_id)
    auth_params = {**social.get_auth_params(), "login_hint": email}
    return social.redirect(request, AuthProcess.LOGIN, next_url=next_url or None, auth_params=auth_params)


def _provider_form(request: HttpRequest, provider: IdentityProvider | None) -> IdentityProviderForm:
    initial = {}
    if provider is not None:
        initial = {
            "name": provider.name, "server_url": provider.server_url, "client_id": provider.client_id,
            "default_role": provider.default_role, "groups_claim": provider.groups_claim,
            "group_roles": "\n".join(f"{group} = {role}" for group, role in provider.group_roles.items()),
            "password_login_allowed": provider.password_login_allowed,
        }
    return IdentityProviderForm(post_data(request), initial=initial)


def _page(request: HttpRequest, *, provider_form: IdentityProviderForm | None = None,
          domain_form: DomainForm | None = None, status: int = 200) -> HttpResponse:
    organization = current_tenant(request).organization
    provider = IdentityProvider.objects.filter(organization=organization).first()
    context = {
        "organization": organization,
        "provider": provider,
        "provider_form": provider_form or _provider_form(request, provider),
        "domain_form": domain_form or DomainForm(),
        "domains": EmailDomain.objects.filter(organization=organization),
        "callback_url": request.build_absolute_uri(
            reverse("openid_connect_callback", kwargs={"provider_id": provider.provider_id})
        ) if provider else "",
    }
    return render(request, "sso/settings.html", context, status=status)


@tenant_required(Role.ADMIN)
def sso_settings(request: HttpRequest) -> HttpResponse:
    organization = current_tenant(request).organization
    provider = IdentityProvider.objects.filter(organization=organization).first()
    form = _provider_form(request, provider)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            services.configure_identity_provider(
                actor=request.user, organization=organization,
                name=data["name"], server_url=data["server_url"], client_id=data["client_id"],
                client_secret=data["client_secret"], default_role=data["default_role"],
                groups_claim=data["groups_claim"], group_roles=services.parse_group_roles(data["group_roles"]),
                password_login_allowed=data["password_login_allowed"],
            )
        except DomainError as exc:
            add_domain_error(form, exc, _PROVIDER_ERRORS)
        else:
            messages.success(request, _("Identity provider saved."))
            return redirect("sso:settings")
    return _page(request, provider_form=form, status=form_status(form))


@require_POST
@tenant_required(Role.ADMIN)
def provider_remove(request: HttpRequest) -> HttpResponse:
    try:
        services.remove_identity_provider(actor=request.user, organization=current_tenant(request).organization)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("Identity provider removed: members sign in with their passwords again."))
    return redirect("sso:settings")


@require_POST
@tenant_required(Role.ADMIN)
def domain_add(request: HttpRequest) -> HttpResponse:
    form = DomainForm(request.POST)
    if form.is_valid():
        try:
            services.add_email_domain(
                actor=request.user, organization=current_tenant(request).organization,
                domain=form.cleaned_data["domain"],
            )
        except DomainError as exc:
            add_domain_error(form, exc, {"invalid_domain": "domain", "domain_exists": "domain"})
        else:
            messages.success(request, _("Domain added: publish its TXT record, then verify it."))
            return redirect("sso:settings")
    return _page(request, domain_form=form, status=form_status(form))


@require_POST
@tenant_required(Role.ADMIN)
def domain_verify(request: HttpRequest, pk: str) -> HttpResponse:
    organization = current_tenant(request).organization
    try:
        email_domain = services.verify_email_domain(actor=request.user, organization=organization, domain_id=pk)
    except NotFound:
        raise Http404("Domain not found.") from None
    except DomainError as exc:
        messages.error(request, exc.detail)
        return _page(request, status=exc.status_code)
    messages.success(request, _("%(domain)s is verified.") % {"domain": email_domain.domain})
    return redirect("sso:settings")


@require_POST
@tenant_required(Role.ADMIN)
def domain_remove(request: HttpRequest, pk: str) -> HttpResponse:
    try:
        organization = current_tenant(request).organization
        services.remove_email_domain(actor=request.user, organization=organization, domain_id=pk)
    except NotFound:
        raise Http404("Domain not found.") from None
    messages.success(request, _("Domain removed."))
    return redirect("sso:settings")
