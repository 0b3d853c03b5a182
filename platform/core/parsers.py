"""Request body parsers of the API.

Its own module, importing nothing of the project, so that settings may name it in
DEFAULT_PARSER_CLASSES: DRF resolves that setting while ``rest_framework.views``
is still loading (the same reason ``core.pagination`` stands alone).
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, parsers

#: Deepest JSON nesting an API body may have. Real bodies are flat objects (depth 1-2);
#: a cap far below Python's recursion limit keeps hostile nesting from reaching code
#: that walks the data recursively (error messages repr() a bad value).
MAX_JSON_DEPTH = 32


def json_depth(data: Any) -> int:
    """Nesting depth of parsed JSON, computed without recursion; stops counting past the cap."""
    depth, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            depth = max(depth, level)
            if level > MAX_JSON_DEPTH:
                break
            stack.extend((item, level + 1) for item in value)
    return depth


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, but a deeply nested body is a 400 ``parse_error``, never a RecursionError (500)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        too_deep = exceptions.ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if json_depth(data) > MAX_JSON_DEPTH:
            raise too_deep
        return data


#: The API's parsers, as the settings' DEFAULT_PARSER_CLASSES name them.
API_PARSER_CLASSES = (JSONParser, parsers.FormParser, parsers.MultiPartParser)
