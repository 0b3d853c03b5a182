"""Start real Celery workers for a benchmark, on the same database and Redis as the caller."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from django.conf import settings

from bench.harness import Worker, terminate


def start_worker(name: str, queues: str, *extra: str) -> subprocess.Popen[bytes]:
    worker = Worker(
        name, queues, *extra, hostname=f"bench-{name}-{os.getpid()}@localhost",
        env={"DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"]},
        log_path=Path(settings.VAR_DIR) / f"bench-{name}.log", loglevel="WARNING", timeout=120,
    )
    return worker.process


def stop(process: subprocess.Popen[bytes]) -> None:
    terminate(process)
