"""Gunicorn settings (``gunicorn -c platform/config/gunicorn.py config.wsgi:application``)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

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

# Metrics (GET /metrics, config/metrics.py): each worker process counts its requests and rate-limit
# refusals, and a scrape reaches just one of them. In prometheus_client's multiprocess mode each process
# writes its counters to files in this folder, and /metrics adds up all of them. Set here, before the
# workers are forked and import prometheus_client; an operator's own folder is emptied at start, as a
# folder of an earlier run would add its counts to this one's.
_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="loom-metrics-")


def on_starting(server: object) -> None:
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server: object, worker: object) -> None:
    """A dead worker's counters stay in the sums; its live gauges (none today) would not."""
    from prometheus_client import multiprocess  # not at the top: only after the folder is set

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


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
