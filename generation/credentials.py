"""Secrets the platform must send on (a serving model's API key), encrypted at rest.

Such a secret cannot be hashed like our own API keys: a worker needs it back to call the model server.
It is stored encrypted with Fernet under a key derived from ``SECRET_KEY`` and a purpose label, so a
leaked database alone does not reveal it, and a key of one purpose never opens another's secrets.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

_PURPOSE = b"loom-serving-model-api-keys:"


def _fernet() -> Fernet:
    key = hashlib.sha256(_PURPOSE + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(secret: str) -> str:
    """The stored form of ``secret``; an empty secret stays empty (nothing set)."""
    return _fernet().encrypt(secret.encode()).decode() if secret else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # SECRET_KEY changed: an operator must enter the key again
        raise RuntimeError("a serving model's API key cannot be decrypted (was SECRET_KEY rotated?)") from exc
