"""Worker liveness in Redis: one key per worker, expiring unless refreshed."""

from __future__ import annotations

import json
import time
from functools import lru_cache

import redis
from django.conf import settings


def _key_prefix() -> str:
    # Namespaced like the cache, so a test run never counts a developer's running worker.
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'loom')}:worker-heartbeat:"


@lru_cache(maxsize=4)
def _client_for(url: str) -> redis.Redis:
    # One pooled client per process: /readyz is polled by load balancers every few seconds.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _client(url: str | None = None) -> redis.Redis:
    return _client_for(url or settings.REDIS_URL)


def beat(hostname: str, queues: list[str]) -> None:
    payload = json.dumps({"hostname": hostname, "queues": queues, "at": time.time()})
    _client().set(_key_prefix() + hostname, payload, ex=settings.WORKER_HEARTBEAT_TTL_S)


def forget(hostname: str, url: str | None = None) -> None:
    _client(url).delete(_key_prefix() + hostname)


def live_workers(url: str | None = None) -> list[str]:
    """Hostnames of workers whose heartbeat has not expired (on ``url``, default REDIS_URL). Raises on Redis errors."""
    prefix = _key_prefix()
    return [key.decode()[len(prefix):] for key in _client(url).scan_iter(match=prefix + "*", count=100)]
