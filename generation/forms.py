"""Forms of the generation pages.

The generate form is built from a template version's declared ``variables``; the service
(``services.validate_inputs``) checks the same rules again, and its errors land on the same fields.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.db.models import QuerySet
from django.utils.html import escape
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from generation import limits
from generation.models import BrandVoice, JobStatus, Template, TemplateVersion
from projects.models import Project

#: Form field names of template variables: ``var_<name>``, so a variable called ``project``
#: or ``temperature`` cannot collide with the job's own settings.
VARIABLE_PREFIX = "var_"


def variable_field_name(name: str) -> str:
    """The form field of a service error's ``inputs.<variable>`` (other names unchanged)."""
    return VARIABLE_PREFIX + name.removeprefix("inputs.") if name.startswith("inputs.") else name


# --- generate --------------------------------------------------------------------------------


def _variable_field(spec: dict[str, Any]) -> forms.Field:
    kind = spec.get("type", "text")
    required = bool(spec.get("required", True))
    # Help text is rendered unescaped by includes/field.html; a custom template's text is user input.
    help_parts = [escape(spec["help"])] if spec.get("help") else []
    common: dict[str, Any] = {"label": spec.get("label") or spec["name"], "required": required}
    if spec.get("default") is not None:
        common["initial"] = spec["default"]
    if kind == "number":
        return forms.FloatField(help_text=" ".join(help_parts), **common)
    if kind == "choice":
        choices = [(c, c) for c in spec.get("choices", [])]
        if not required:
            choices.insert(0, ("", _("Not specified")))
        return forms.ChoiceField(choices=choices, help_text=" ".join(help_parts), **common)
    max_length = spec.get("max_length", limits.DEFAULT_VARIABLE_MAX_LENGTH)
    help_parts.append(f"Up to {max_length:,} characters.")
    widget = forms.Textarea(attrs={"rows": 4}) if kind == "textarea" else forms.TextInput()
    return forms.CharField(max_length=max_length, widget=widget, help_text=" ".join(help_parts), **common)


class GenerateForm(forms.Form):
    """The inputs of one template version plus the job's settings."""

    project = forms.ModelChoiceField(label=_("Project"), queryset=Project.objects.none(), empty_label=None)
    num_variants = forms.IntegerField(
        label=_("Variants"),
        min_value=1,
        max_value=limits.max_variants(),
        initial=2,
        help_text=_("Shown side by side."),
    )
    max_new_tokens = forms.IntegerField(
        label=_("Max new tokens"),
        min_value=1,
        max_value=limits.max_new_tokens(),
        help_text=_("Upper bound per variant."),
    )
    temperature = forms.FloatField(
        label=_("Temperature"),
        min_value=limits.MIN_TEMPERATURE,
        max_value=limits.MAX_TEMPERATURE,
        initial=limits.DEFAULT_TEMPERATURE,
        widget=forms.NumberInput(attrs={"step": "0.1"}),
        help_text=_("Higher is more varied."),
    )
    model = forms.ChoiceField(
        required=False,
        label=_("Model"),
        help_text=_("Default: the template's, else the project's, else the platform's."),
    )
    adapter = forms.ChoiceField(
        required=False,
        choices=[("", _("The project's brand model, if active")), ("base", _("The base model alone"))],
        label=_("Brand model"),
        help_text=_("A brand model is the project's own fine-tuned version of the model."),
    )
    language = forms.ChoiceField(
        required=False,
        choices=[("", _("The project's")), *settings.CONTENT_LANGUAGES],
        label=_("Language"),
        help_text=_("The copy is written in it, and a variant in another language fails its checks."),
    )
    # A fresh key per rendered form: a double submit of the same form queues one job, not two.
    request_id = forms.UUIDField(widget=forms.HiddenInput, required=False)

    def __init__(
        self,
        version: TemplateVersion,
        projects: QuerySet[Project],
        data: Any = None,
        *,
        project: Project | None = None,
        models: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(data, initial={"request_id": uuid.uuid4(), "project": project})
        self.version = version
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        model_field.choices = [("", _("Default"))] + (models or [])
        project_field = self.fields["project"]
        assert isinstance(project_field, forms.ModelChoiceField)
        project_field.queryset = projects.order_by("name")
        self.fields["max_new_tokens"].initial = min(version.default_max_new_tokens, limits.max_new_tokens())
        variables = {VARIABLE_PREFIX + spec["name"]: _variable_field(spec) for spec in version.variables}
        self.fields = {**variables, **self.fields}

    def variable_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(VARIABLE_PREFIX)]

    def setting_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("project", "language", "num_variants", "max_new_tokens", "temperature")]

    def inputs(self) -> dict[str, Any]:
        """The filled-in variables; an empty optional one is left out, so its default applies."""
        values = {}
        for name, value in self.cleaned_data.items():
            if not name.startswith(VARIABLE_PREFIX) or value in (None, ""):
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # "3", not "3.0", in the prompt
            values[name.removeprefix(VARIABLE_PREFIX)] = value
        return values

    def params(self) -> dict[str, Any]:
        params = {name: self.cleaned_data[name] for name in ("num_variants", "max_new_tokens", "temperature")}
        if self.cleaned_data.get("model"):
            params["model"] = self.cleaned_data["model"]
        if self.cleaned_data.get("language"):
            params["language"] = self.cleaned_data["language"]
        if self.cleaned_data.get("adapter"):
            params["adapter"] = self.cleaned_data["adapter"]
        return params

    def idempotency_key(self) -> str:
        request_id = self.cleaned_data.get("request_id")
        return f"web-{request_id}" if request_id else ""

    def renew_request_id(self) -> None:
        """After a refused submit, the re-rendered form must not replay the first key."""
        self.data = self.data.copy()
        self.data["request_id"] = str(uuid.uuid4())


# --- variant feedback ------------------------------------------------------------------------


class FeedbackForm(forms.Form):
    """One inline action on a variant: a rating, an edit or (un)approval. Absent fields are left alone."""

    rating = forms.IntegerField(
        label=_("Rating"),
        min_value=limits.MIN_RATING,
        max_value=limits.MAX_RATING,
        required=False,
    )
    edited_text = forms.CharField(
        label=_("Edited text"),
        required=False,
        max_length=limits.MAX_EDITED_TEXT_LENGTH,
        strip=False,
        widget=forms.Textarea,
    )
    approved = forms.TypedChoiceField(
        label=_("Approved"),
        choices=[("1", "Approve"), ("0", "Unapprove")],
        coerce=lambda v: v == "1",
        required=False,
        empty_value=None,
    )

    def changes(self) -> dict[str, Any]:
        sent = {name for name in self.fields if name in self.data}
        return {name: self.cleaned_data[name] for name in sent if self.cleaned_data.get(name) is not None}

    def error_text(self) -> str:
        return " ".join(f"{name.replace('_', ' ').capitalize()}: {e}" for name, es in self.errors.items() for e in es)


# --- brand voice -----------------------------------------------------------------------------


def split_words(text: str) -> list[str]:
    """Comma- (or line-) separated words, stripped, blanks and repeats dropped."""
    words: list[str] = []
    for word in re.split(r"[,\n]", text):
        word = word.strip()
        if word and word.casefold() not in {w.casefold() for w in words}:
            words.append(word)
    return words


def split_examples(text: str) -> list[str]:
    """Example texts: blocks separated by a blank line."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").strip())
    return [block.strip() for block in blocks if block.strip()]


class BrandVoiceForm(forms.Form):
    tone = forms.CharField(
        label=_("Tone"),
        max_length=limits.MAX_TONE_LENGTH,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": _("Warm, playful, confident")}),
    )
    audience = forms.CharField(
        label=_("Audience"),
        max_length=limits.MAX_AUDIENCE_LENGTH,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": _("Young families shopping online")}),
    )
    words_to_use = forms.CharField(
        label=_("Words to use"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=format_lazy(_("Comma-separated; at most {count}."), count=limits.MAX_WORDS),
    )
    words_to_avoid = forms.CharField(
        label=_("Words to avoid"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=format_lazy(
            _("Comma-separated; at most {count}. Each one lowers the brand-fit score."), count=limits.MAX_WORDS
        ),
    )
    example_texts = forms.CharField(
        label=_("Example texts"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text=format_lazy(
            _("Copy that sounds like the brand. Separate examples with a blank line; at most {count}."),
            count=limits.MAX_EXAMPLES,
        ),
    )

    @classmethod
    def for_voice(cls, voice: BrandVoice | None, data: Any = None, *, read_only: bool = False) -> BrandVoiceForm:
        initial = {}
        if voice is not None:
            initial = {
                "tone": voice.tone,
                "audience": voice.audience,
                "words_to_use": ", ".join(voice.words_to_use),
                "words_to_avoid": ", ".join(voice.words_to_avoid),
                "example_texts": "\n\n".join(voice.example_texts),
            }
        form = cls(data, initial=initial)
        if read_only:
            for field in form.fields.values():
                field.disabled = True
        return form

    def _words(self, name: str) -> list[str]:
        words = split_words(self.cleaned_data[name])
        if len(words) > limits.MAX_WORDS:
            raise forms.ValidationError(
                gettext("At most %(limit)s words (got %(count)s).") % {"limit": limits.MAX_WORDS, "count": len(words)}
            )
        too_long = [w for w in words if len(w) > limits.MAX_WORD_LENGTH]
        if too_long:
            raise forms.ValidationError(
                gettext("Words are at most %(limit)s characters: %(word)s…")
                % {"limit": limits.MAX_WORD_LENGTH, "word": too_long[0][:20]}
            )
        return words

    def clean_words_to_use(self) -> list[str]:
        return self._words("words_to_use")

    def clean_words_to_avoid(self) -> list[str]:
        return self._words("words_to_avoid")

    def clean_example_texts(self) -> list[str]:
        examples = split_examples(self.cleaned_data["example_texts"])
        if len(examples) > limits.MAX_EXAMPLES:
            raise forms.ValidationError(
                gettext("At most %(limit)s examples (got %(count)s).")
                % {"limit": limits.MAX_EXAMPLES, "count": len(examples)}
            )
        for number, example in enumerate(examples, start=1):
            if len(example) > limits.MAX_EXAMPLE_LENGTH:
                raise forms.ValidationError(
                    gettext("Example %(number)s has %(length)s characters; at most %(limit)s.")
                    % {"number": number, "length": f"{len(example):,}", "limit": f"{limits.MAX_EXAMPLE_LENGTH:,}"}
                )
        return examples


# --- history ---------------------------------------------------------------------------------


class JobFilterForm(forms.Form):
    """The history page's filters (GET). An invalid filter is shown as such and not applied."""

    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=limits.MAX_SEARCH_LENGTH,
        widget=forms.SearchInput(attrs={"placeholder": _("Search inputs…")}),
    )
    status = forms.ChoiceField(label=_("Status"), choices=[("", _("Any status")), *JobStatus.choices], required=False)
    project = forms.ModelChoiceField(
        label=_("Project"), queryset=Project.objects.none(), required=False, empty_label=_("All projects")
    )
    template = forms.ModelChoiceField(
        label=_("Template"), queryset=Template.objects.none(), required=False, empty_label=_("All templates")
    )

    def __init__(self, data: Any, *, projects: QuerySet[Project], templates: QuerySet[Template]) -> None:
        super().__init__(data)
        for name, queryset in (("project", projects.order_by("name")), ("template", templates)):
            field = self.fields[name]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = queryset

    def filters(self) -> dict[str, Any]:
        self.is_valid()
        return {k: v for k, v in getattr(self, "cleaned_data", {}).items() if v not in (None, "")}


# --- bulk ------------------------------------------------------------------------------------


class BulkUploadForm(forms.Form):
    project = forms.ModelChoiceField(label=_("Project"), queryset=Project.objects.none(), empty_label=None)
    template = forms.ModelChoiceField(label=_("Template"), queryset=Template.objects.none(), empty_label=None)
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_("One row per job; the header names the template's variables."),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
    num_variants = forms.IntegerField(
        label=_("Variants per row"), min_value=1, max_value=limits.max_variants(), initial=1
    )
    max_new_tokens = forms.IntegerField(
        label=_("Max new tokens"),
        min_value=1,
        max_value=limits.max_new_tokens(),
        required=False,
        help_text=_("Per variant. Leave empty for the template's default."),
    )

    def __init__(
        self,
        data: Any = None,
        files: Any = None,
        *,
        projects: QuerySet[Project],
        templates: QuerySet[Template],
        initial: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(data, files, initial=initial)
        for name, queryset in (("project", projects.order_by("name")), ("template", templates)):
            field = self.fields[name]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = queryset

    def params(self) -> dict[str, Any]:
        names = ("num_variants", "max_new_tokens")
        return {name: self.cleaned_data[name] for name in names if self.cleaned_data[name] is not None}


# --- models --------------------------------------------------------------------------------------


class ProjectModelForm(forms.Form):
    """The project's default model: a usable model's slug, or empty for the installation's default."""

    default_model = forms.ChoiceField(
        label=_("Default model"),
        required=False,
        help_text=_("Jobs of this project run on it unless the job or its template names another."),
    )

    def __init__(self, *args: Any, choices: list[tuple[str, str]], global_default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["default_model"]
        field.choices = [("", f"Installation default ({global_default})"), *choices]  # type: ignore[attr-defined]
