"""Shared API machinery: the error format, file downloads, validation.

The tenant-scoped base viewset is ``organizations.api.tenancy.TenantViewSet``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponse
from django.utils.translation import gettext
from rest_framework import exceptions, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.mediatypes import media_type_matches
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import DomainError

logger = logging.getLogger(__name__)

def _text(value: Any) -> str:
    """A message safe to render. Messages may quote the input (a ChoiceField's "... is not a valid
    choice"), and a lone surrogate there would make the UTF-8 JSON renderer raise: a 500, not a 400."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _flatten_field_errors(data: Any) -> dict[str, list[str]]:
    if isinstance(data, dict):
        return {_text(k): [_text(m) for m in (v if isinstance(v, list) else [v])] for k, v in data.items()}
    return {"non_field_errors": [_text(m) for m in (data if isinstance(data, list) else [data])]}


def _first_message(fields: dict[str, list[str]]) -> str:
    for field, messages in fields.items():
        if messages:
            return messages[0] if field == "non_field_errors" else f"{field}: {messages[0]}"
    return gettext("Invalid input.")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error is ``{"code": ..., "detail": ...}``, plus ``fields`` for validation errors."""
    if isinstance(exc, DomainError):
        body: dict[str, Any] = {"code": exc.code, "detail": _text(exc.detail)}
        if exc.fields:
            body["fields"] = exc.fields
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return Response(body, status=exc.status_code, headers=headers)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten_field_errors(exc.detail)
        response.data = {"code": "invalid", "detail": _first_message(fields), "fields": fields}
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        response.data = {"code": code, "detail": _text(exc.detail)}
    return response


def download_negotiation(media_type: str) -> type[DefaultContentNegotiation]:
    """The content negotiation of an action that answers a file of ``media_type`` (a PDF, a CSV export).

    DRF answers 406 to an Accept that none of the view's renderers (JSON) matches, before
    the view runs; but the file is not rendered by them, and a client generated from the
    schema asks for the media type the schema names for it. So an Accept that takes the
    file's type is served; errors are still JSON (the first renderer); any other Accept
    (``application/xml``) is still a 406.
    Use: ``@action(..., content_negotiation_class=download_negotiation("application/pdf"))``.
    """

    class DownloadNegotiation(DefaultContentNegotiation):
        def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
            try:
                return super().select_renderer(request, renderers, format_suffix)
            except exceptions.NotAcceptable:
                accepted = [entry.split(";")[0].strip() for entry in self.get_accept_list(request)]
                if not any(media_type_matches(entry, media_type) for entry in accepted):
                    raise
                return renderers[0], renderers[0].media_type

    return DownloadNegotiation


def no_content() -> Response:
    return Response(status=status.HTTP_204_NO_CONTENT)


def validated(serializer_class: type[serializers.Serializer[Any]], data: Any, **kwargs: Any) -> Any:
    """The bound serializer, validated: invalid input raises (a 400 with the fields that failed)."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer


def download(body: str, content_type: str, filename: str) -> HttpResponse:
    """A UTF-8 file to save as ``filename``, never cached (exports hold the organization's data)."""
    response = HttpResponse(body.encode("utf-8"), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
