"""API fields every app's serializers use: JSON that Postgres can store, typed JSON objects, files
that are not empty. The schema each one documents is part of its contract (drf-spectacular)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.text import storable_text

# The schema says what shape these JSON values have (the services check their content and answer with
# their own error codes); a bare JSONField would be documented as "any value, null included", which
# client generators cannot type. A key is typed only where the service refuses another type: a schema
# stricter than the service would be a promise the API does not keep (tests/platform/test_api_schemathesis.py).
JSON_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


def _storable(data: Any) -> bool:
    """Every string in a JSON value (keys too) can be stored by Postgres; iterative, no recursion."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if not storable_text(value):
                return False
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return True


class StorableJSONField(serializers.JSONField):
    """JSON stored as is (template variables, constraints): no NUL or unpaired surrogate anywhere in it."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not _storable(value):
            raise serializers.ValidationError(gettext("contains a NUL or an unpaired surrogate character"))
        return value


@extend_schema_field(JSON_OBJECT)
class JSONObjectField(serializers.JSONField):
    pass


@extend_schema_field({"type": "string", "format": "binary", "minLength": 1})
class NonEmptyFileField(serializers.FileField):
    """A file with content: an empty upload is refused (400), and the schema says so."""
