from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        _strict_string_fields()


def _strict_string_fields() -> None:
    """Every API string field takes a string, never a number turned into one.

    DRF's ``CharField`` accepts ``{"name": 0}`` as ``"0"``; the schema says the field is
    a string, and a client sending a number has a bug it should hear about (a 400
    naming the field) instead of data stored in a shape it did not mean. Applied to
    the field class so every serializer of every app, including the next one, gets
    it. Form and query values are strings already and pass unchanged.
    """
    from rest_framework import serializers

    lenient = serializers.CharField.to_internal_value
    if getattr(lenient, "strict_strings", False):
        return

    def to_internal_value(self: serializers.CharField, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return lenient(self, data)

    to_internal_value.strict_strings = True  # type: ignore[attr-defined]
    serializers.CharField.to_internal_value = to_internal_value  # type: ignore[method-assign]
