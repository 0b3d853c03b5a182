"""The dashboard's start form: the defaults, with the few knobs an expert may change."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from finetune.training import FLOAT_KNOBS, INT_KNOBS, TrainConfig

_DEFAULTS = TrainConfig()


def _knob(name: str, label: Any, help_text: Any = "") -> forms.Field:
    """The field of one ``TrainConfig`` knob: the bounds ``from_dict`` checks, the default as placeholder
    (an empty field keeps it)."""
    if name in INT_KNOBS:
        field, (low, high) = forms.IntegerField, INT_KNOBS[name]
    else:
        field, (low, high) = forms.FloatField, FLOAT_KNOBS[name]
    return field(
        label=label,
        min_value=low,
        max_value=high,
        required=False,
        widget=forms.NumberInput(attrs={"placeholder": getattr(_DEFAULTS, name), "step": "any"}),
        help_text=help_text,
    )


class StartRunForm(forms.Form):
    epochs = _knob("epochs", _("Epochs"), _("Passes over the training examples."))
    learning_rate = _knob("learning_rate", _("Learning rate"))
    rank = _knob("rank", _("LoRA rank"), _("The adapter's size: higher learns more and needs more data."))
    alpha = _knob("alpha", _("LoRA alpha"))

    def config(self) -> dict[str, Any]:
        """Only the knobs set: the rest are the defaults (``TrainConfig.from_dict``)."""
        return {key: value for key, value in self.cleaned_data.items() if value is not None}
