from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.errors import DomainError
from organizations.models import ASSIGNABLE_ROLES
from sso import credentials, services
from sso.models import EmailDomain, IdentityProvider


class IdentityProviderForm(forms.ModelForm):  # type: ignore[type-arg]
    server_url = forms.URLField(label="Issuer URL", max_length=500, assume_scheme="https")
    client_secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: stored encrypted, never shown. Leave empty to keep the current secret.",
    )

    def clean_group_roles(self) -> dict[str, str]:
        mapping = self.cleaned_data["group_roles"] or {}
        allowed = {role.value for role in ASSIGNABLE_ROLES}
        if not isinstance(mapping, dict) or any(role not in allowed for role in mapping.values()):
            roles = ", ".join(sorted(allowed))
            raise forms.ValidationError(f"A JSON object of group to role, each role one of {roles}.")
        return mapping

    class Meta:
        model = IdentityProvider
        fields = ["organization", "name", "server_url", "client_id", "default_role", "groups_claim",
                  "group_roles", "password_login_allowed"]


@admin.register(IdentityProvider)
class IdentityProviderAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = IdentityProviderForm
    list_display = ["name", "organization", "server_url", "client_id", "password_login_allowed", "updated_at"]
    search_fields = ["name", "organization__name", "server_url", "client_id"]
    list_select_related = ["organization"]
    autocomplete_fields = ["organization"]

    def save_model(self, request: HttpRequest, obj: IdentityProvider, form: Any, change: bool) -> None:
        if secret := form.cleaned_data.get("client_secret"):
            obj.encrypted_client_secret = credentials.encrypt(secret)
        super().save_model(request, obj, form, change)


@admin.register(EmailDomain)
class EmailDomainAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["domain", "organization", "verified_at", "verified_by", "created_at"]
    list_filter = ["verified_by", "verified_at"]
    search_fields = ["domain", "organization__name"]
    list_select_related = ["organization"]
    readonly_fields = ["verification_token", "verified_at", "verified_by", "created_at"]
    autocomplete_fields = ["organization"]
    actions = ["mark_verified"]

    @admin.action(description="Mark verified (the operator vouches for the domain)")
    def mark_verified(self, request: HttpRequest, queryset: QuerySet[EmailDomain]) -> None:
        for email_domain in queryset.select_related("organization"):
            try:
                services.operator_verify_email_domain(actor=request.user, email_domain=email_domain)
            except DomainError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
            else:
                self.message_user(request, f"{email_domain.domain} is verified for {email_domain.organization}.")
