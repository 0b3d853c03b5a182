from __future__ import annotations

import uuid
from typing import Any


def parse_uuid(value: Any) -> uuid.UUID | None:
    """The UUID in ``value``, or None: for lookups that accept an id or a slug."""
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError):
        return None
