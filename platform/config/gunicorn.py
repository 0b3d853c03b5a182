"""Gunicorn settings (``gunicorn -c platform/config/gunicorn.py config.wsgi:application``)."""

from __future__ import annotations

import multiprocessing
import os

import srcroot  # noqa: F401  (platform/ on sys.path so config.wsgi imports)

# Not PORT: honcho assigns PORT=5000 to every process it starts.
bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)))
# gthread workers (threads > 1). A job's event stream (GET /api/v1/jobs/{id}/stream, Server-Sent
# Events) holds a thread while it is open, blocked in a Redis XREAD (no GIL, no database connection).
# So each process has WEB_STREAMS threads on top of WEB_THREADS, and serves at most WEB_STREAMS
# streams (generation.streaming answers one more with a 503): a few hundred open streams (8 processes
# x 64) never take the threads ordinary requests need. The pool starts threads only as needed, so
# idle stream threads cost nothing. An async (ASGI) route would hold no thread per stream; it is the
# way past thousands of streams per process, not needed at this scale.
threads = int(os.environ.get("WEB_THREADS", "2")) + int(os.environ.get("WEB_STREAMS", "64"))
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
accesslog = "-"
# %(U)s is the path without the query string: a credential someone put in a URL never reaches the log.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%(a)s"'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_worker_init(worker: object) -> None:
    """Move everything loaded at start-up (Django, DRF, the URL conf, the schema) out of the collector's way,
    and let request threads back from I/O run sooner.

    Full collections otherwise walk those few hundred thousand long-lived objects
    again and again; frozen, a collection only looks at what requests allocate,
    which shortens the pauses a request can land in.
    """
    import gc
    import sys

    gc.freeze()
    # A request thread coming back from Postgres or Redis waits for the GIL until the running thread
    # is asked to give it up: after 5 ms by default, once per database round trip. A request makes
    # several; 1 ms keeps that wait from adding up, at the cost of a few more switches between threads.
    sys.setswitchinterval(0.001)
