"""Worker liveness and readiness in Redis: one key per worker, expiring unless refreshed.

A heartbeat's payload says which queues the worker consumes and, per queue, whether it can run
that queue's tasks now. A generation worker is live from its start but ready only once its model
is loaded (``model.state``: ``loading`` from ``started_at``, then ``loaded`` or ``failed``), which
takes a minute on CPU the first time: /readyz and the job page read that from here.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

#: The queue whose tasks need the generation model: its workers are ready once the model is loaded.
GENERATION_QUEUE = "generation"
#: Per-queue states, best first: a queue is as good as its best live worker.
READY, LOADING, FAILED, NO_WORKER = "ready", "loading", "failed", "no_worker"


def _key_prefix() -> str:
    # Namespaced like the cache, so a test run never counts a developer's running worker.
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'loom')}:worker-heartbeat:"


@lru_cache(maxsize=4)
def _client_for(url: str) -> redis.Redis:
    # One pooled client per process: /readyz is polled by load balancers every few seconds.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _client(url: str | None = None) -> redis.Redis:
    return _client_for(url or settings.REDIS_URL)


def beat(
    hostname: str,
    queues: list[str],
    *,
    ready: dict[str, bool] | None = None,
    model: dict[str, Any] | None = None,
    engines: list[dict[str, Any]] | None = None,
    url: str | None = None,
) -> None:
    """Record ``hostname`` as live for the heartbeat TTL.

    ``ready``: per consumed queue, whether the worker can run its tasks now (default: all of them).
    ``model``: the generation model's ``name``, ``state`` (``loading``/``loaded``/``failed``) and
    ``started_at`` (Unix time the load began), for a worker that serves one.
    ``engines``: how full each of its generation engines is (``workers.engines.occupancy``), for /metrics.
    """
    payload: dict[str, Any] = {
        "hostname": hostname,
        "queues": queues,
        "ready": {queue: True for queue in queues} if ready is None else ready,
        "at": time.time(),
    }
    if model is not None:
        payload["model"] = model
    if engines:
        payload["engines"] = engines
    _client(url).set(_key_prefix() + hostname, json.dumps(payload), ex=settings.WORKER_HEARTBEAT_TTL_S)


def forget(hostname: str, url: str | None = None) -> None:
    _client(url).delete(_key_prefix() + hostname)


class WorkerBeat:
    """One worker's heartbeat, kept current while its model loads (the Celery step in workers/celery.py
    sends it from the worker's timer).

    A worker consuming the generation queue starts as live but loading ``model_name``, so /readyz and
    the job page know the worker is there and what it waits for; ``warm_up`` loads the model and beats
    at once, so readiness flips the moment it is in and not at the next tick.
    """

    def __init__(
        self, hostname: str, queues: list[str], model_name: str,
        engines: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.hostname = hostname
        self.queues = queues
        self.engines = engines
        self.stopped = False
        self._sending = threading.Lock()  # the timer and the warm-up thread both send
        self.model: dict[str, Any] | None = None
        if GENERATION_QUEUE in queues:
            self.model = {"name": model_name, "state": "loading", "started_at": time.time()}

    @property
    def needs_model(self) -> bool:
        return self.model is not None

    def send(self) -> None:
        model = self.model  # replaced whole by warm_up's thread, never changed in place
        loaded = model is None or model["state"] == "loaded"
        ready = {queue: loaded or queue != GENERATION_QUEUE for queue in self.queues}
        engines = self.engines() if self.engines is not None else None
        with self._sending:
            if not self.stopped:  # a warm-up ending after shutdown must not bring the heartbeat back
                beat(self.hostname, self.queues, ready=ready, model=model, engines=engines)

    def warm_up(self, load: Callable[[], object]) -> None:
        """Run ``load`` (the process's engine), then record whether it worked and beat."""
        assert self.model is not None
        try:
            load()
        except Exception as exc:
            logger.exception("could not load the generation model %s", self.model["name"])
            # Jobs still try (and fail with the reason); the heartbeat says why they will.
            self.model = {**self.model, "state": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
        else:
            self.model = {**self.model, "state": "loaded", "loaded_at": time.time()}
        try:
            self.send()
        except Exception:  # Redis away: the timer's next beat says it
            logger.warning("could not send the heartbeat after loading the model", exc_info=True)

    def start_warm_up(self, load: Callable[[], object]) -> threading.Thread:
        thread = threading.Thread(target=self.warm_up, args=(load,), name="model-warmup", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        with self._sending:
            self.stopped = True
            forget(self.hostname)


def _keys(url: str | None) -> list[bytes]:
    return list(_client(url).scan_iter(match=_key_prefix() + "*", count=100))


def live_workers(url: str | None = None) -> list[str]:
    """Hostnames of workers whose heartbeat has not expired (on ``url``, default REDIS_URL). Raises on Redis errors."""
    prefix = _key_prefix()
    return [key.decode()[len(prefix):] for key in _keys(url)]


def heartbeats(url: str | None = None) -> list[dict[str, Any]]:
    """The payloads of the live workers' heartbeats. Raises on Redis errors."""
    keys = _keys(url)
    values = _client(url).mget(keys) if keys else []
    payloads = []
    for value in values:
        if value is None:  # expired between SCAN and MGET
            continue
        payload = json.loads(value)
        # A worker of an earlier release (a rolling deploy) sends no per-queue readiness: it was
        # counted as ready for every queue it consumed, and still is.
        payload.setdefault("ready", {queue: True for queue in payload.get("queues", [])})
        payloads.append(payload)
    return payloads


def queue_status(
    queues: Iterable[str], live: list[dict[str, Any]] | None = None, url: str | None = None
) -> dict[str, dict[str, Any]]:
    """Per queue: live workers consuming it, how many of them are ready, and the queue's state.

    ``state`` is ``ready`` (a worker can run its tasks now), ``loading`` (its workers are still
    loading their model; ``model`` and ``loading_since`` say which and since when), ``failed``
    (their model failed to load) or ``no_worker``. ``live``: the heartbeats, when already read.
    Raises on Redis errors.
    """
    live = heartbeats(url) if live is None else live
    status = {}
    for queue in queues:
        consuming = [beat for beat in live if queue in beat.get("queues", [])]
        ready = [beat for beat in consuming if beat["ready"].get(queue)]
        models = [beat["model"] for beat in consuming if not beat["ready"].get(queue) and beat.get("model")]
        loading = [model for model in models if model.get("state") == "loading"]
        entry: dict[str, Any] = {"workers": len(consuming), "ready": len(ready)}
        if ready:
            entry["state"] = READY
        elif loading:
            first = min(loading, key=lambda model: model.get("started_at") or 0)
            entry.update(state=LOADING, model=first.get("name"), loading_since=first.get("started_at"))
        elif models:
            entry.update(state=FAILED, model=models[0].get("name"))
        elif consuming:
            entry["state"] = LOADING  # live but not ready for a reason it did not name: not yet
        else:
            entry["state"] = NO_WORKER
        status[queue] = entry
    return status
