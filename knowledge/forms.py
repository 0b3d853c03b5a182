from __future__ import annotations

from typing import Any

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from knowledge import limits


class SourceForm(forms.Form):
    title = forms.CharField(
        label=_("Title"), required=False, max_length=limits.MAX_TITLE_LENGTH, help_text=_("Default: the file's name."),
    )
    file = forms.FileField(label=_("File"), required=False, help_text=_("Plain text, Markdown, HTML or PDF."))
    text = forms.CharField(
        label=_("Text"),
        required=False,
        max_length=limits.MAX_PASTED_TEXT_CHARS,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("Or paste the text instead of a file."),
    )
    sku = forms.CharField(
        required=False, max_length=limits.MAX_SKU_LENGTH, label=_("Product SKU"),
        help_text=_("When it is about one product."),
    )
    language = forms.CharField(
        label=_("Language"), required=False, max_length=limits.MAX_LANGUAGE_LENGTH,
        help_text=format_lazy(_("e.g. {examples}."), examples="en, de"),
    )
    tags = forms.CharField(
        label=_("Tags"), required=False, max_length=1000,
        help_text=format_lazy(_("Comma-separated, e.g. {examples}."), examples="summer, outdoor"),
    )
    valid_from = forms.DateField(label=_("Valid from"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    valid_until = forms.DateField(
        label=_("Valid until"), required=False, widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if bool(cleaned.get("file")) == bool((cleaned.get("text") or "").strip()):
            raise forms.ValidationError(_("Upload a file or paste a text (one of them)."))
        return cleaned


class SearchForm(forms.Form):
    q = forms.CharField(
        required=False, max_length=2000, label=_("Brief"), help_text=_("What would a job retrieve for this?"),
    )
    sku = forms.CharField(required=False, max_length=1000, label=_("SKUs"), help_text=_("Comma-separated filter."))
