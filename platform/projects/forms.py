from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from projects.models import Project

_field = Project._meta.get_field


class ProjectForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=_field("name").max_length,
        widget=forms.TextInput(attrs={"placeholder": _("Spring campaign"), "autofocus": True}),
    )
    slug = forms.SlugField(
        label=_("Slug"),
        max_length=_field("slug").max_length, required=False,
        help_text=_("Used in API paths. Leave empty to derive it from the name."),
    )
    description = forms.CharField(
        label=_("Description"),
        max_length=_field("description").max_length, required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": _("Audience, tone of voice, goals…")}),
    )
    default_language = forms.ChoiceField(choices=settings.CONTENT_LANGUAGES, initial="en", label=_("Default language"))

    @classmethod
    def for_project(cls, project: Project, data: object = None) -> ProjectForm:
        initial = {f: getattr(project, f) for f in ("name", "slug", "description", "default_language")}
        form = cls(data, initial=initial)
        form.fields["slug"].help_text = "Used in API paths; clients using the old slug stop finding the project."
        return form
