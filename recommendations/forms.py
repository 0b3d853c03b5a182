"""Forms of the recommendations pages. The services check the same rules again; their errors land here."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from core.errors import InvalidInput
from experiments import limits as experiment_limits
from experiments.models import Experiment
from generation.models import Template
from projects.models import Project
from recommendations import limits, services
from recommendations.importing import FIELDS, validate_mapping


def _project_field() -> forms.ModelChoiceField:  # type: ignore[type-arg]
    return forms.ModelChoiceField(queryset=Project.objects.none(), empty_label=None)


class _ProjectForm(forms.Form):
    project = _project_field()

    def __init__(self, *args: Any, projects: QuerySet[Project], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["project"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = projects.order_by("name")


class ImportForm(_ProjectForm):
    file = forms.FileField(label=_("File"), help_text=_("CSV, UTF-8, comma-separated, with a header row."))
    mapping = forms.CharField(
        label=_("Mapping"),
        required=False,
        max_length=limits.MAX_FORM_TEXT_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": '{"customer": "CustomerID", "sku": "StockCode"}'}),
        help_text=format_lazy(
            _(
                "Optional: a JSON object of field → column. Fields: {fields}. Left empty, the Online Retail "
                "columns or customer_id, sku, timestamp are recognised."
            ),
            fields=", ".join([*FIELDS, "customer.&lt;name&gt;", "item.&lt;name&gt;"]),
        ),
    )
    exclude_skus = forms.CharField(
        required=False,
        max_length=limits.MAX_FORM_TEXT_LENGTH,
        label=_("SKUs that are no products"),
        help_text=_("Optional, comma-separated (postage, fees). For the Online Retail format its own codes are used."),
    )

    def clean_mapping(self) -> dict[str, str] | None:
        text = self.cleaned_data["mapping"].strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError('Write the mapping as JSON, e.g. {"customer": "CustomerID"}.') from None
        try:
            return validate_mapping(value)
        except InvalidInput as exc:
            raise forms.ValidationError(exc.detail) from None

    def clean_exclude_skus(self) -> list[str] | None:
        text = self.cleaned_data["exclude_skus"]
        skus = [sku.strip() for sku in text.split(",") if sku.strip()]
        return skus or None


class StartJobForm(_ProjectForm):
    k = forms.IntegerField(
        label=_("Recommendations per customer"), min_value=1, max_value=limits.MAX_K, initial=10
    )
    holdout_days = forms.IntegerField(
        label=_("Days held out for evaluation"),
        min_value=1,
        max_value=limits.MAX_HOLDOUT_DAYS,
        initial=28,
        help_text=_(
            "The model is also trained without the most recent days and scored on them, against a popularity baseline."
        ),
    )


class SettingsForm(forms.Form):
    exclude_purchased = forms.BooleanField(
        required=False, label=_("Never recommend an item the customer already bought")
    )


class CustomerFilterForm(forms.Form):
    project = forms.ModelChoiceField(
        label=_("Project"),
        queryset=Project.objects.none(),
        required=False,
        empty_label=_("All projects"),
    )
    q = forms.CharField(required=False, max_length=limits.MAX_EXTERNAL_ID_LENGTH, label=_("Customer id"))
    country = forms.CharField(label=_("Country"), required=False, max_length=limits.MAX_SEGMENT_NAME_LENGTH)

    def __init__(self, *args: Any, projects: QuerySet[Project], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["project"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = projects.order_by("name")

    def filters(self) -> dict[str, Any]:
        if not self.is_valid():
            return {}
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}


def campaign_templates(templates: QuerySet[Template]) -> list[Template]:
    """Templates a campaign can fill: their latest version has a product or products variable."""
    usable = []
    for template in templates.prefetch_related("versions"):
        latest = max(template.versions.all(), key=lambda v: v.version, default=None)
        if latest is not None and services._products_variable(latest) is not None:
            usable.append(template)
    return usable


class CampaignForm(_ProjectForm):
    name = forms.CharField(label=_("Name"), max_length=limits.MAX_CAMPAIGN_NAME_LENGTH)
    template = forms.ChoiceField(label=_("Template"), help_text=_("Templates with a product (or products) variable."))
    countries = forms.CharField(
        label=_("Countries"),
        required=False, max_length=2000, help_text=_("Comma-separated, e.g. France, Germany. Empty: every country.")
    )
    purchased_within_days = forms.IntegerField(
        label=_("Purchased within days"),
        required=False,
        min_value=1,
        max_value=limits.MAX_PURCHASED_WITHIN_DAYS,
        help_text=_("Bought something in the N days before the latest event."),
    )
    min_purchases = forms.IntegerField(
        label=_("Minimum purchases"),
        required=False,
        min_value=1,
        max_value=limits.MAX_MIN_PURCHASES,
    )
    limit = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=limits.max_campaign_customers(),
        label=_("At most this many customers"),
        help_text=format_lazy(
            _("The most recent buyers first; a campaign reaches at most {count}."),
            count=limits.max_campaign_customers(),
        ),
    )
    items_per_customer = forms.IntegerField(
        label=_("Items per customer"),
        min_value=1,
        max_value=limits.MAX_ITEMS_PER_CUSTOMER,
        initial=3,
    )
    inputs = forms.CharField(
        required=False,
        max_length=limits.MAX_FORM_TEXT_LENGTH,
        label=_("Other template inputs"),
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": _("audience: gift shoppers")}),
        help_text=_("One per line, <code>variable: value</code>, the same for every customer."),
    )
    experiment = forms.ModelChoiceField(
        label=_("Run as an experiment"),
        queryset=Experiment.objects.none(),
        required=False,
        empty_label=_("No: write each customer's copy"),
        help_text=_("A running experiment of the project: each customer gets one arm's text, nothing is generated."),
    )
    landing_url = forms.URLField(
        label=_("Landing URL"),
        required=False,
        max_length=experiment_limits.MAX_URL_LENGTH,
        assume_scheme="https",
        help_text=_("Where an experiment campaign's tracking links lead. Empty: the experiment's target URL."),
    )

    def __init__(
        self,
        *args: Any,
        projects: QuerySet[Project],
        templates: list[Template],
        experiments: QuerySet[Experiment] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, projects=projects, **kwargs)
        field = self.fields["template"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(t.slug if t.is_builtin else str(t.pk), t.display_name) for t in templates]
        if any(t.slug == "personalized-recommendation" and t.is_builtin for t in templates):
            field.initial = "personalized-recommendation"
        chosen = self.fields["experiment"]
        assert isinstance(chosen, forms.ModelChoiceField)
        # The caller passes the organization's running experiments; the service checks the project.
        chosen.queryset = experiments if experiments is not None else Experiment.objects.none()
        chosen.label_from_instance = lambda e: f"{e.name} ({e.project.name})"

    def clean_inputs(self) -> dict[str, str]:
        values = {}
        for number, line in enumerate(self.cleaned_data["inputs"].splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise forms.ValidationError(_("Line %(number)s: write variable: value.") % {"number": number})
            values[name.strip()] = value.strip()
        return values

    def segment(self) -> dict[str, Any]:
        data = self.cleaned_data
        segment: dict[str, Any] = {}
        countries = [c.strip() for c in data.get("countries", "").split(",") if c.strip()]
        if countries:
            segment["countries"] = countries
        for name in ("purchased_within_days", "min_purchases", "limit"):
            if data.get(name) is not None:
                segment[name] = data[name]
        return segment
