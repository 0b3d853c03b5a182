from __future__ import annotations

from typing import Any

from django import forms

from organizations.models import ASSIGNABLE_ROLES, Membership, Organization, Role

ROLE_CHOICES = [(r.value, r.label) for r in ASSIGNABLE_ROLES]


class OrganizationForm(forms.Form):
    name = forms.CharField(
        max_length=Organization._meta.get_field("name").max_length,
        widget=forms.TextInput(attrs={"placeholder": "Acme Marketing", "autofocus": True}),
    )


class SwitchOrganizationForm(forms.Form):
    organization = forms.UUIDField()


class InviteForm(forms.Form):
    email = forms.EmailField(widget=forms.EmailInput(attrs={"placeholder": "colleague@example.com"}))
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.EDITOR.value)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class TransferOwnershipForm(forms.Form):
    member = forms.ModelChoiceField(queryset=Membership.objects.none(), label="New owner", empty_label=None)
    confirm = forms.BooleanField(label="I understand that I will become an admin of this organization.")

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["member"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = (
            Membership.objects.filter(organization=organization).exclude(role=Role.OWNER).select_related("user")
        )
        field.label_from_instance = lambda m: f"{m.user.display_name} ({m.get_role_display()})"
