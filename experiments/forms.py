"""The dashboard's experiment form: a project, approved variants as arms, an optional control text, the rules."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from experiments import limits
from experiments.models import Policy
from generation.models import Variant
from projects.models import Project

#: Approved variants offered in the form, newest first: more is a list no one reads.
VARIANT_CHOICES = 200


class VariantChoiceField(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Variant) -> str:
        return f"{obj.job.project.name}: {Truncator(obj.final_text).chars(90)}"


class ExperimentForm(forms.Form):
    project = forms.ModelChoiceField(label=_("Project"), queryset=Project.objects.none())
    name = forms.CharField(label=_("Name"), max_length=limits.MAX_NAME_LENGTH)
    variants = VariantChoiceField(
        label=_("Variants"),
        queryset=Variant.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("Approved variants of the project; each is one arm (B, C ... after a control, A, B ... without)."),
    )
    control_text = forms.CharField(
        required=False,
        max_length=limits.MAX_ARM_TEXT_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        label=_("Control text (optional)"),
        help_text=_("Your current copy, as arm A, to measure the variants against."),
    )
    goal_event = forms.CharField(
        label=_("Goal event"), max_length=limits.MAX_EVENT_NAME_LENGTH, initial="click",
        help_text=_("click (tracking links), open (pixel), cart, purchase (ingested events) or a custom event name."),
    )
    policy = forms.ChoiceField(label=_("Policy"), choices=Policy.choices, initial=Policy.FIXED)
    min_share = forms.FloatField(
        min_value=0, max_value=limits.MAX_MIN_SHARE, initial=0.1, label=_("Minimum share per arm (adaptive)")
    )
    stop_probability = forms.FloatField(
        label=_("Stop probability"), min_value=limits.MIN_STOP_PROBABILITY, max_value=limits.MAX_STOP_PROBABILITY,
        initial=0.95, help_text=_("Stop when an arm is best with this probability."),
    )
    min_exposures = forms.IntegerField(label=_("Min exposures"), min_value=0, max_value=limits.MAX_EXPOSURES,
                                       initial=100, help_text=_("Per arm, before stopping on probability."))
    max_exposures = forms.IntegerField(label=_("Max exposures"), min_value=1, max_value=limits.MAX_EXPOSURES,
                                       required=False,
                                       help_text=_("Stop after this many exposures in all (empty: no maximum)."))
    attribution_window_hours = forms.IntegerField(
        label=_("Attribution window hours"),
        min_value=limits.MIN_ATTRIBUTION_HOURS, max_value=limits.MAX_ATTRIBUTION_HOURS, initial=72,
    )
    target_url = forms.URLField(
        label=_("Target url"), required=False, max_length=limits.MAX_URL_LENGTH, assume_scheme="https",
        help_text=_("Where tracking links lead."),
    )

    def __init__(self, *args: Any, projects: QuerySet[Project], variants: QuerySet[Variant], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        project_field = self.fields["project"]
        variant_field = self.fields["variants"]
        assert isinstance(project_field, forms.ModelChoiceField)
        assert isinstance(variant_field, forms.ModelMultipleChoiceField)
        project_field.queryset = projects.order_by("name")
        variant_field.queryset = variants

    def arms(self) -> list[dict[str, Any]]:
        """The service's arms: the control first (as A), then the chosen variants."""
        arms: list[dict[str, Any]] = []
        if self.cleaned_data.get("control_text", "").strip():
            arms.append({"text": self.cleaned_data["control_text"]})
        arms += [{"variant": variant.pk} for variant in self.cleaned_data.get("variants") or []]
        return arms

    def settings(self) -> dict[str, Any]:
        names = ("name", "goal_event", "policy", "min_share", "stop_probability", "min_exposures", "max_exposures",
                 "attribution_window_hours", "target_url")
        return {name: self.cleaned_data[name] for name in names}
