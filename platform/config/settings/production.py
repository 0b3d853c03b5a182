"""Production: a real secret and explicit servers are required; HTTPS everywhere."""

from __future__ import annotations

import os

from config.env import SettingsError

for _required in ("SECRET_KEY",):
    if not os.environ.get(_required):
        raise SettingsError(f"{_required} must be set in production (or {_required}_FILE).")

from config import logs  # noqa: E402
from config.settings.base import *  # noqa: E402,F403
from config.settings.base import env  # noqa: E402

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Probes and Prometheus call the container over plain HTTP on the internal network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# One JSON object per line, with the request id, for the log collector (config/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="json", validate=lambda v: v in logs.FORMATS)
LOGGING = logs.logging_config(LOG_FORMAT, env.str("LOG_LEVEL", default="INFO"))
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"
