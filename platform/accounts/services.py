"""Writes to a user's own account."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import User
from core.errors import InvalidInput


@transaction.atomic
def set_language(*, user: User, language: str) -> User:
    """Remember the dashboard language ``user`` chose (one of ``settings.LANGUAGES``)."""
    if language not in dict(settings.LANGUAGES):
        raise InvalidInput(_("Unknown language %(language)r.") % {"language": language}, code="invalid_language")
    user.language = language
    user.save(update_fields=["language"])
    return user
