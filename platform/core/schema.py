"""OpenAPI generation: the error answers and rate-limit headers of every API operation, documented once.

Every ``/api/v1/`` operation can answer 401 (no valid credentials), 403 (the
role or key scope is too low), 404 (the object, or the organization named by
``X-Organization``, is not the caller's) and 429 (a rate limit, with
``Retry-After``); operations that read input can answer 400, and writes 409
(the current state forbids it: a final job, an idempotency key reused with
another body, the last owner leaving). Each is the same JSON error body
(``core.api.exception_handler``). Declaring them per view would be forgotten on
the next view, and schemathesis (``tests/platform/test_api_schemathesis.py``) fails on
any status code the schema does not list.

Codes only some operations give (402 for a used-up quota, 413, 422) are declared
on those views with ``extend_schema(responses=...)``, using ``error_response``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.plumbing import force_instance
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

API_PATH_PREFIX = "/api/v1/"
#: Some character that ``str.strip`` keeps (ECMA regex, as OpenAPI patterns are).
NOT_BLANK = r"[^\s\x1c-\x1f]"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ErrorSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `not_found`, `rate_limited`.")
    detail = serializers.CharField(help_text="What went wrong, for people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors per field (400 only).",
    )


def error_response(description: str) -> OpenApiResponse:
    """An error answer for ``extend_schema(responses={402: error_response("...")})``."""
    return OpenApiResponse(ErrorSerializer, description=description)


#: The answer of an operation that returns a CSV file (an export, a batch's results).
CSV_FILE = OpenApiResponse(OpenApiTypes.STR, description="A CSV file (UTF-8).")

COMMON_ERRORS = {
    "401": "No valid credentials: a missing, malformed, revoked or expired API key, or no session.",
    "403": "The caller's role or key scope does not allow this.",
    "404": "Not found: the object does not exist or belongs to another organization "
    "(or X-Organization names no organization of the caller's).",
    "429": "A rate limit was exceeded; retry after `Retry-After` seconds.",
}
INPUT_ERROR = ("400", "Invalid input; `fields` names each invalid field or parameter.")
UNSUPPORTED_BODY = ("415", "The body's Content-Type is not one this operation reads, or the body is malformed.")
#: Pagination parameters are checked strictly (core.pagination): an empty value is a 400.
PAGING = frozenset({"limit", "offset"})
WRITE_CONFLICT = ("409", "The current state does not allow this (for example the job is already final).")

RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": ("integer", "Calls allowed per minute under the tighter of the caller's limits."),
    "X-RateLimit-Remaining": ("integer", "Calls left in the current minute."),
    "X-RateLimit-Reset": ("integer", "Unix time (seconds) when one more call is allowed again."),
}


class AutoSchema(openapi.AutoSchema):
    def map_parsers(self) -> list[Any]:
        """JSON bodies are documented as JSON only; multipart only where a file is uploaded.

        The API also parses form bodies (the browsable forms of DRF, old clients), but a
        nested body (job inputs, template variables) has no faithful form encoding, so the
        schema does not offer one: clients generated from it send JSON.
        """
        media_types = super().map_parsers()
        serializer = self.get_request_serializer()
        if isinstance(serializer, dict):  # extend_schema(request={"multipart/form-data": ...}) names its own
            return media_types
        serializer = force_instance(serializer)
        fields = serializer.fields if isinstance(serializer, serializers.Serializer) else {}
        if any(isinstance(field, serializers.FileField) for field in fields.values()):
            return [m for m in media_types if m == "multipart/form-data"] or media_types
        return [m for m in media_types if m == "application/json"] or media_types

    def _map_serializer_field(self, field: Any, direction: str, bypass_extensions: bool = False) -> dict[str, Any]:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # ``EmailField(source="created_by.email", read_only=True, default=None)`` answers null when the
        # source is missing (a deleted user); drf-spectacular only marks allow_null fields nullable.
        if field.read_only and getattr(field, "default", serializers.empty) is None and "$ref" not in schema:
            schema["nullable"] = True
        # A bare JSONField is documented as "any value", null included, but it refuses null unless allow_null.
        # (Each kind is a complete schema: client generators drop an operation with an array lacking items.)
        if (
            direction == "request"
            and isinstance(field, serializers.JSONField)
            and not field.allow_null
            and not {"type", "anyOf", "oneOf", "allOf", "$ref"} & set(schema)
        ):
            schema["anyOf"] = [
                {"type": "object", "additionalProperties": True},
                {"type": "array", "items": {}},
                *({"type": kind} for kind in ("string", "number", "boolean")),
            ]
        # A required text is trimmed before the blank check: "  " is blank, so the schema asks for one
        # character that is not whitespace to Python (``str.isspace`` also covers \x1c-\x1f).
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and not field.allow_blank
            and field.trim_whitespace
            and schema.get("type") == "string"
            and "pattern" not in schema
            and "format" not in schema
            and "enum" not in schema
        ):
            schema["pattern"] = NOT_BLANK
        return schema

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None or not self.path.startswith(API_PATH_PREFIX):
            return operation
        responses = operation["responses"]
        errors = dict(COMMON_ERRORS)
        takes_input = "requestBody" in operation or any(p["in"] in ("query", "header") for p in operation.get(
            "parameters", []
        ))
        if takes_input or self.method in {"POST", "PUT", "PATCH"}:
            errors.setdefault(*INPUT_ERROR)
        if "requestBody" in operation:
            errors.setdefault(*UNSUPPORTED_BODY)
        for parameter in operation.get("parameters", []):
            # DRF reads an empty optional query value (``?status=``) as the parameter left out.
            if parameter["in"] == "query" and not parameter.get("required") and parameter["name"] not in PAGING:
                parameter["allowEmptyValue"] = True
        if self.method in WRITE_METHODS:
            errors.setdefault(*WRITE_CONFLICT)
        for code, description in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    error_response(description), code, ["application/json"], "response"
                )
        for code, response in responses.items():
            headers = response.setdefault("headers", {})
            for name, (kind, description) in RATE_LIMIT_HEADERS.items():
                headers.setdefault(name, {"schema": {"type": kind}, "description": description})
            if code == "429":
                headers.setdefault(
                    "Retry-After",
                    {"schema": {"type": "integer"}, "required": True, "description": "Seconds to wait."},
                )
        operation["responses"] = dict(sorted(responses.items()))
        return operation
