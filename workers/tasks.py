from __future__ import annotations

import socket
import time

from celery import shared_task


@shared_task(name="workers.ping", ignore_result=False)
def ping() -> dict[str, object]:
    """A no-op round trip: proves a worker consumes the default queue (and measures queue overhead)."""
    return {"pong": True, "host": socket.gethostname(), "at": time.time()}
