"""An organization's OpenID Connect client secret, encrypted at rest.

The secret cannot be hashed like our own API keys: every login and every session re-validation sends
it to the identity provider. It is encrypted with Fernet under a key derived from ``SECRET_KEY`` and a
purpose label of its own, the scheme of ``generation.credentials`` (which sits above this app, so it
cannot be imported here), so a leaked database alone does not reveal it.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

_PURPOSE = b"loom-sso-client-secrets:"


def _fernet() -> Fernet:
    key = hashlib.sha256(_PURPOSE + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode() if secret else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # SECRET_KEY changed: an admin must enter the secret again
        raise RuntimeError(
            "an identity provider's client secret cannot be decrypted (was SECRET_KEY rotated?)"
        ) from exc
