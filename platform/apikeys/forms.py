from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from apikeys.models import ApiKey, Scope
from organizations.models import Organization
from projects.models import Project


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=ApiKey._meta.get_field("name").max_length,
        widget=forms.TextInput(attrs={"placeholder": _("Website generator")}),
        help_text=_("Something that tells you later where this key is used."),
    )
    scope = forms.ChoiceField(
        label=_("Scope"),
        choices=Scope.choices,
        initial=Scope.READ.value,
        widget=forms.RadioSelect,
    )
    project = forms.ModelChoiceField(
        queryset=Project.objects.none(), required=False, empty_label=_("All projects"),
        label=_("Project restriction"), help_text=_("A restricted key can only reach this project."),
    )

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["project"]
        assert isinstance(field, forms.ModelChoiceField)
        # Only this organization's projects are valid choices: another one's id is a form error.
        field.queryset = Project.objects.filter(organization=organization).order_by("name")
