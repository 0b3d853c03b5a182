"""Tests: real Postgres and Redis (the configured ones, else the embedded ones), fast hashing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from config.env import env
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
# Per test run, so tests/conftest.py can wipe this run's counters between tests without touching another's.
RATE_LIMIT_KEY_PREFIX = f"loom-test:{os.getpid()}:ratelimit"
# The fault-injection suite (tests/workers/test_reliability_faults.py) sets these in its subprocesses'
# environment: persistent connections as in production, and its own short lease.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0)
GENERATION_LEASE_S = env.int("GENERATION_LEASE_S", default=6)  # a killed worker's job is reclaimable within seconds
# Organizations in tests run on Enterprise unless a test subscribes them to another plan, so
# tests about generation are not about the Free plan's two variants; billing tests set plans.
BILLING_DEFAULT_PLAN = "enterprise"
# The API sweeps open the event stream of jobs no worker runs: each connection ends after a second
# (tests that follow a job to its end set more).
GENERATION_STREAM_MAX_S = env.float("GENERATION_STREAM_MAX_S", default=1.0)
# Never Stripe from a developer's environment: Stripe tests set keys and a local stand-in server.
STRIPE_SECRET_KEY = STRIPE_WEBHOOK_SECRET = STRIPE_API_BASE = ""
# Brand adapters written by tests (factories, fake training runs) go to a folder of this run, never var/media;
# BRAND_ADAPTER_ROOT in the environment wins (the worker subprocesses of reliability tests share the parent's).
BRAND_ADAPTER_ROOT = Path(
    env.str("BRAND_ADAPTER_ROOT", default=os.path.join(tempfile.gettempdir(), f"loom-test-adapters-{os.getpid()}"))
)
