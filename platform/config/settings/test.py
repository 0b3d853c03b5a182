"""Tests: real Postgres and Redis (the configured ones, else the embedded ones), fast hashing."""

from __future__ import annotations

from config.settings.base import *  # noqa: F403
from config.settings.base import CACHES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CACHES["default"]["KEY_PREFIX"] = "loom-test"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ACCOUNT_RATE_LIMITS = False
CELERY_KEY_PREFIX = "loom-test:"
DATABASES["default"]["CONN_MAX_AGE"] = 0
GENERATION_LEASE_S = 6  # a killed worker's job becomes reclaimable within seconds
