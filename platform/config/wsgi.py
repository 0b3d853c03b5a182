from __future__ import annotations

import os

import srcroot  # noqa: F401  (platform/ on sys.path before Django loads apps)
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
application = get_wsgi_application()
