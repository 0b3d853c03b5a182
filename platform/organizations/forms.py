from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from organizations.models import ASSIGNABLE_ROLES, Membership, Organization, Role

ROLE_CHOICES = [(r.value, r.label) for r in ASSIGNABLE_ROLES]


class OrganizationForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=Organization._meta.get_field("name").max_length,
        widget=forms.TextInput(attrs={"placeholder": _("Acme Marketing"), "autofocus": True}),
    )


class SwitchOrganizationForm(forms.Form):
    organization = forms.UUIDField(label=_("Organization"))


class InviteForm(forms.Form):
    email = forms.EmailField(
        label=_("Email"),
        widget=forms.EmailInput(attrs={"placeholder": _("colleague@example.com")}),
    )
    role = forms.ChoiceField(label=_("Role"), choices=ROLE_CHOICES, initial=Role.EDITOR.value)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=ROLE_CHOICES)


class TransferOwnershipForm(forms.Form):
    member = forms.ModelChoiceField(queryset=Membership.objects.none(), label=_("New owner"), empty_label=None)
    confirm = forms.BooleanField(label=_("I understand that I will become an admin of this organization."))

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["member"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = (
            Membership.objects.filter(organization=organization).exclude(role=Role.OWNER).select_related("user")
        )
        field.label_from_instance = lambda m: f"{m.user.display_name} ({m.get_role_display()})"
