"""Domain errors raised by services and mapped to HTTP by the edges.

Every error carries a stable machine ``code`` and a human ``detail`` so the API
can answer ``{"code": ..., "detail": ...}`` and the dashboard can show the same
message.
"""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    code = "invalid"
    #: Seconds a client should wait before retrying (sent as ``Retry-After``); None: not a retry case.
    retry_after: int | None = None

    def __init__(self, detail: str, *, code: str | None = None, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields or {}
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    status_code = 400
    code = "invalid"


class Forbidden(DomainError):
    status_code = 403
    code = "permission_denied"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"
