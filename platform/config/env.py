"""Typed, fail-loud settings readers.

Settings come from the environment only. ``environs`` rejects malformed values
(``DEBUG=maybe`` is an error, not ``False``). Secrets may also be given as
``<NAME>_FILE`` pointing at a file (Docker/Kubernetes secrets); the file wins
only when ``<NAME>`` itself is unset, and setting both is an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_email_url
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


def email_settings(url: str, base_dir: Path) -> dict[str, Any]:
    """Django's EMAIL_* settings from an ``EMAIL_URL``, refusing a URL that names no mail backend.

    dj-email-url returns no ``EMAIL_BACKEND`` for a scheme it does not know (``consolemail://`` is not
    one), and Django then falls back to SMTP on localhost: every page that sends mail answers 500.
    A relative ``file://`` path is taken from the checkout, not from wherever the process started.
    """
    parsed = dj_email_url.parse(url)
    if "EMAIL_BACKEND" not in parsed:
        schemes = ", ".join(f"{scheme}://" for scheme in sorted(dj_email_url.SCHEMES))
        raise SettingsError(f"EMAIL_URL={url.split(':', 1)[0]}://... names no mail backend; use one of {schemes}")
    if parsed["EMAIL_BACKEND"].endswith("filebased.EmailBackend"):
        if not parsed["EMAIL_FILE_PATH"]:
            raise SettingsError("EMAIL_URL=file://... needs a folder, e.g. file:///var/mail")
        parsed["EMAIL_FILE_PATH"] = str(base_dir / parsed["EMAIL_FILE_PATH"])
    return parsed
