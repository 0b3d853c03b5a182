"""Typed, fail-loud settings readers.

Settings come from the environment only. ``environs`` rejects malformed values
(``DEBUG=maybe`` is an error, not ``False``). Secrets may also be given as
``<NAME>_FILE`` pointing at a file (Docker/Kubernetes secrets); the file wins
only when ``<NAME>`` itself is unset, and setting both is an error.
"""

from __future__ import annotations

import json
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
    "LOOM_OIDC_PROVIDERS",
    "METRICS_TOKEN",
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


#: Keys one LOOM_OIDC_PROVIDERS entry may have; the first four are required.
_OIDC_REQUIRED = ("id", "server_url", "client_id", "secret")
_OIDC_OPTIONAL = ("name", "email_authentication")


def oidc_apps(raw: str) -> list[dict[str, Any]]:
    """allauth ``openid_connect`` apps from LOOM_OIDC_PROVIDERS, a JSON list of installation-wide providers.

    ``[{"id": "corp", "name": "Corp SSO", "server_url": "https://login.example.com", "client_id": "...",
    "secret": "...", "email_authentication": false}]``. ``email_authentication`` true lets the provider
    sign in an existing account whose address it asserts (trust it only with addresses it owns). The
    ``org-`` prefix is reserved for organizations' own providers (platform/sso/).
    """
    if not raw.strip():
        return []
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"LOOM_OIDC_PROVIDERS is not JSON: {exc}") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SettingsError("LOOM_OIDC_PROVIDERS must be a JSON list of objects")
    apps, seen = [], set()
    for n, entry in enumerate(entries):
        missing = [k for k in _OIDC_REQUIRED if not isinstance(entry.get(k), str) or not entry[k]]
        unknown = sorted(set(entry) - set(_OIDC_REQUIRED) - set(_OIDC_OPTIONAL))
        if missing or unknown:
            raise SettingsError(
                f"LOOM_OIDC_PROVIDERS[{n}]: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}"
            )
        provider_id = entry["id"]
        if provider_id.startswith("org-") or not provider_id.replace("-", "").replace("_", "").isalnum():
            raise SettingsError(
                f"LOOM_OIDC_PROVIDERS[{n}]: id {provider_id!r} must be letters, digits, - or _, not org-..."
            )
        if provider_id in seen:
            raise SettingsError(f"LOOM_OIDC_PROVIDERS: id {provider_id!r} appears twice")
        seen.add(provider_id)
        if not entry["server_url"].startswith(("https://", "http://")):
            raise SettingsError(f"LOOM_OIDC_PROVIDERS[{n}]: server_url must be an http(s) URL")
        apps.append({
            "provider_id": provider_id,
            "name": entry.get("name") or provider_id,
            "client_id": entry["client_id"],
            "secret": entry["secret"],
            "settings": {
                "server_url": entry["server_url"].rstrip("/"),
                "email_authentication": bool(entry.get("email_authentication", False)),
            },
        })
    return apps
