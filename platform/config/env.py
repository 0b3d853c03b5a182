"""Typed, fail-loud settings readers.

Settings come from the environment only. ``environs`` rejects malformed values
(``DEBUG=maybe`` is an error, not ``False``). Secrets may also be given as
``<NAME>_FILE`` pointing at a file (Docker/Kubernetes secrets); the file wins
only when ``<NAME>`` itself is unset, and setting both is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from environs import Env

#: Variables that may be supplied through ``<NAME>_FILE``.
FILE_SECRETS = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "EMAIL_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
)


class SettingsError(RuntimeError):
    pass


def load_file_secrets(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    for name in FILE_SECRETS:
        file_var = f"{name}_FILE"
        path = environ.get(file_var)
        if not path:
            continue
        if environ.get(name):
            raise SettingsError(f"Both {name} and {file_var} are set; set only one.")
        try:
            environ[name] = Path(path).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"{file_var}={path!r} cannot be read: {exc}") from exc


load_file_secrets()
env = Env()
