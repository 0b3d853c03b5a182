from __future__ import annotations

from typing import Any

from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.account.forms import SignupForm as AllauthSignupForm
from django import forms
from django.core.exceptions import ValidationError
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from organizations.models import ASSIGNABLE_ROLE_CHOICES
from sso import services


class LoginForm(AllauthLoginForm):
    """allauth's password sign-in, refused for members of an organization that signs in only through SSO."""

    def clean(self) -> dict[str, Any]:
        email = str(self.cleaned_data.get("login") or "")
        # By the address first, before the password is checked: whose domain it is tells nothing secret.
        if email and (reason := services.password_login_refusal(email)):
            raise ValidationError(reason, code="sso_required")
        cleaned = super().clean()
        if self.user is not None and (reason := services.password_login_refusal(email, self.user)):
            raise ValidationError(reason, code="sso_required")
        return cleaned  # type: ignore[no-any-return]


class SignupForm(AllauthSignupForm):
    """allauth's sign-up, refused for an address at the verified domain of an organization that signs in only
    through SSO: its people get their account by signing in through the provider."""

    def clean_email(self) -> str:
        email = super().clean_email()
        if email and (reason := services.password_login_refusal(email)):
            raise ValidationError(reason, code="sso_required")
        return email  # type: ignore[no-any-return]


class SsoStartForm(forms.Form):
    email = forms.EmailField(label=_("Work email"), widget=forms.EmailInput(attrs={"autocomplete": "email"}))


class IdentityProviderForm(forms.Form):
    name = forms.CharField(
        label=_("Name"), max_length=120, initial="Company SSO", help_text=_("Shown on the sign-in button."),
    )
    server_url = forms.CharField(
        label=_("Issuer URL"), max_length=500,
        help_text=format_lazy(
            _("Its {path} names the endpoints, e.g. {example}"),
            path="/.well-known/openid-configuration", example="https://login.example.com/realms/acme",
        ),
    )
    client_id = forms.CharField(label=_("Client id"), max_length=255)
    client_secret = forms.CharField(
        label=_("Client secret"), required=False, widget=forms.PasswordInput(render_value=False),
        help_text=_("Stored encrypted and never shown again; leave empty to keep the current one."),
    )
    default_role = forms.ChoiceField(label=_("Default role"), choices=ASSIGNABLE_ROLE_CHOICES, initial="viewer",
                                     help_text=_("The role of a member who joins by signing in."))
    groups_claim = forms.CharField(
        label=_("Groups claim"), max_length=100, initial="groups", help_text=_("The ID token claim that lists groups."),
    )
    group_roles = forms.CharField(
        label=_("Group → role"), required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("One “group = role” per line, e.g. “marketing-leads = editor”. The highest role wins."),
    )
    password_login_allowed = forms.BooleanField(
        label=_("Members may also sign in with a password"), required=False, initial=True,
    )


class DomainForm(forms.Form):
    domain = forms.CharField(
        label=_("Domain"), max_length=253,
        help_text=_("Addresses at this domain sign in through your provider once it is verified."),
    )
