"""A serving model's API key, encrypted at rest (``core.sealed``): a worker needs it back to call the
model server."""

from __future__ import annotations

from core.sealed import Sealer

_sealer = Sealer("loom-serving-model-api-keys", "a serving model's API key")
encrypt, decrypt = _sealer.encrypt, _sealer.decrypt
