"""Worker liveness in Redis: one key per worker, expiring unless refreshed."""

from __future__ import annotations

import json
import time

import redis
from django.conf import settings

_KEY_PREFIX = "loom:worker-heartbeat:"


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def beat(hostname: str, queues: list[str]) -> None:
    payload = json.dumps({"hostname": hostname, "queues": queues, "at": time.time()})
    _client().set(_KEY_PREFIX + hostname, payload, ex=settings.WORKER_HEARTBEAT_TTL_S)


def forget(hostname: str) -> None:
    _client().delete(_KEY_PREFIX + hostname)


def live_workers() -> list[str]:
    """Hostnames of workers whose heartbeat has not expired. Raises on Redis errors."""
    client = _client()
    return [key.decode()[len(_KEY_PREFIX):] for key in client.scan_iter(match=_KEY_PREFIX + "*", count=100)]
