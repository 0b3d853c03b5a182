"""The top layer: settings, URLs, WSGI/ASGI and what spans apps (health probes, the dashboard home,
``/api/v1/me``, ``manage.py seed_demo``). May import every app; no app imports it.
"""
