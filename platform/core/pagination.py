from __future__ import annotations

import re
from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


class Pagination(pagination.LimitOffsetPagination):
    """Its own module: DRF imports the pagination class while ``rest_framework.generics`` loads.

    ``limit`` and ``offset`` are checked, not silently replaced: DRF's default turns
    ``limit=abc`` or ``limit=500`` into another page size than asked for, and the
    schema says they are integers in a range. A bad value is a 400 naming it.
    """

    default_limit = 50
    max_limit = 200

    def get_limit(self, request: Request) -> int:
        return self._whole_number(request, self.limit_query_param, self.default_limit, 1, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return self._whole_number(request, self.offset_query_param, 0, 0, None)

    @staticmethod
    def _whole_number(request: Request, name: str, default: int, low: int, high: int | None) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        value = int(raw) if _WHOLE_NUMBER.fullmatch(raw) else None
        if value is None or value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise ValidationError({name: [f"A whole number {bounds}."]})
        return value

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_limit, default=self.default_limit)
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"].update(minimum=0, maximum=10**18 - 1, default=0)
        return parameters
