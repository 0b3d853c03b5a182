"""The dashboard's start form: the defaults, with the few knobs an expert may change."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from finetune.training import FLOAT_KNOBS, INT_KNOBS, TrainConfig

_DEFAULTS = TrainConfig()


def _default(value: Any) -> forms.NumberInput:
    # The default shows as the placeholder: an empty field keeps it.
    return forms.NumberInput(attrs={"placeholder": value, "step": "any"})


class StartRunForm(forms.Form):
    epochs = forms.IntegerField(
        label=_("Epochs"),
        min_value=INT_KNOBS["epochs"][0],
        max_value=INT_KNOBS["epochs"][1],
        required=False,
        widget=_default(_DEFAULTS.epochs),
        help_text=_("Passes over the training examples."),
    )
    learning_rate = forms.FloatField(
        label=_("Learning rate"),
        min_value=FLOAT_KNOBS["learning_rate"][0],
        max_value=FLOAT_KNOBS["learning_rate"][1],
        required=False,
        widget=_default(_DEFAULTS.learning_rate),
    )
    rank = forms.IntegerField(
        label=_("LoRA rank"),
        min_value=INT_KNOBS["rank"][0],
        max_value=INT_KNOBS["rank"][1],
        required=False,
        widget=_default(_DEFAULTS.rank),
        help_text=_("The adapter's size: higher learns more and needs more data."),
    )
    alpha = forms.IntegerField(
        label=_("LoRA alpha"),
        min_value=INT_KNOBS["alpha"][0],
        max_value=INT_KNOBS["alpha"][1],
        required=False,
        widget=_default(_DEFAULTS.alpha),
    )

    def config(self) -> dict[str, Any]:
        """Only the knobs set: the rest are the defaults (``TrainConfig.from_dict``)."""
        return {key: value for key, value in self.cleaned_data.items() if value is not None}
