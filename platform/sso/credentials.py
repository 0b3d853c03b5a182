"""An organization's OpenID Connect client secret, encrypted at rest (``core.sealed``): every login and
every session re-validation sends it to the identity provider."""

from __future__ import annotations

from core.sealed import Sealer

_sealer = Sealer("loom-sso-client-secrets", "an identity provider's client secret")
encrypt, decrypt = _sealer.encrypt, _sealer.decrypt
