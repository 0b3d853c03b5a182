"""A small per-process cache whose entries expire: for rows read on every request that may lag a little."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ExpiringCache(Generic[V]):
    """At most ``max_size`` values, each good for ``ttl()`` seconds after it was put, least recent out.

    ``ttl`` is read at every lookup (a setting, so tests and operators can change it at run time).
    Thread-safe: gunicorn's request threads share it. A Redis or Django cache would cost a round trip
    and a pickle per read, the very cost these callers avoid.
    """

    def __init__(self, max_size: int, ttl: Callable[[], float]) -> None:
        self._items: OrderedDict[Hashable, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_size, self._ttl = max_size, ttl

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
        if item is None or time.monotonic() - item[1] >= self._ttl():
            return None
        return item[0]

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._items[key] = (value, time.monotonic())
            self._items.move_to_end(key)
            while len(self._items) > self._max_size:
                self._items.popitem(last=False)
