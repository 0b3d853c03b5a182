"""Secrets the platform must send on, encrypted at rest (a serving model's API key, an identity
provider's client secret).

Such a secret cannot be hashed like our own API keys: a worker or a login needs it back. It is stored
encrypted with Fernet under a key derived from ``SECRET_KEY`` and a purpose label, so a leaked database
alone does not reveal it, and a key of one purpose never opens another's secrets.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class Sealer:
    """Encrypts and decrypts the secrets of one purpose; ``what`` names them in the error an operator sees."""

    def __init__(self, purpose: str, what: str) -> None:
        self.purpose = purpose.encode() + b":"
        self.what = what

    def _fernet(self) -> Fernet:
        key = hashlib.sha256(self.purpose + settings.SECRET_KEY.encode()).digest()
        return Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, secret: str) -> str:
        """The stored form of ``secret``; an empty secret stays empty (nothing set)."""
        return self._fernet().encrypt(secret.encode()).decode() if secret else ""

    def decrypt(self, token: str) -> str:
        if not token:
            return ""
        try:
            return self._fernet().decrypt(token.encode()).decode()
        except InvalidToken as exc:  # SECRET_KEY changed: an operator must enter the secret again
            raise RuntimeError(f"{self.what} cannot be decrypted (was SECRET_KEY rotated?)") from exc
