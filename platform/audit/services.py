from __future__ import annotations

from typing import Any

from django.db import models

from audit.models import AuditLog


def record(
    action: str,
    *,
    organization: Any | None,
    actor: Any | None = None,
    api_key: Any | None = None,
    target: models.Model | None = None,
    **data: Any,
) -> AuditLog:
    """Write one audit row. Call inside the transaction of the change it records."""
    return AuditLog.objects.create(
        organization=organization,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        api_key=api_key,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        data=data,
    )
