"""Puts the ``platform/`` source root on ``sys.path``.

``platform/`` holds the core Django apps (``accounts``, ``config`` ...) and is
deliberately *not* a package: a package named ``platform`` would shadow the
standard library module that Celery, uuid and transformers import. Every entry
point (manage.py, wsgi/asgi, the Celery app) imports this module first.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
SOURCE_ROOT = REPO_ROOT / "platform"

for _path in (str(SOURCE_ROOT), str(REPO_ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
