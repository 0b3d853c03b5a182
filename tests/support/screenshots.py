"""Full-page screenshots of the dashboard, a finished job and billing, in English and Simplified Chinese.

``bin/screenshots [FOLDER]`` runs :func:`main` against the configured database (``DATABASE_URL``): it
seeds the demo (``manage.py seed_demo``), gives the demo project one finished three-variant job run
through the echo stub (``workers.stub``, no model), serves the site in this process and saves
``<page>-<language>.png`` 1280 px wide with Debian's Chromium (default folder ``var/screenshots/``).
The browser test ``tests/platform/test_screenshots.py`` drives the same functions on the test database.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WIDTH = 1280
HEIGHT = 900
LANGUAGES = ("en", "zh-hans")
#: Inputs of the demo's finished job; the echo stub writes the prompt back, so they show in the variants.
JOB_INPUTS = {"product": "Trail runner 2", "features": "light, grippy, recycled mesh upper"}
JOB_PARAMS = {"num_variants": 3, "max_new_tokens": 80, "seed": 7}

#: The nav's rows: how many distinct top edges its links have (one row at desktop widths).
NAV_ROWS_JS = """() => {
  const tops = [...document.querySelectorAll("nav.nav a")].map((a) => Math.round(a.getBoundingClientRect().top));
  const nav = document.querySelector("nav.nav .nav-inner").getBoundingClientRect();
  const link = document.querySelector("nav.nav a").getBoundingClientRect();
  return {rows: new Set(tops).size, navHeight: nav.height, linkHeight: link.height};
}"""
_OVERFLOW_JS = "() => document.documentElement.scrollWidth - window.innerWidth"


@dataclass
class Demo:
    user: Any
    job: Any

    def pages(self) -> list[tuple[str, str]]:
        """(name, path) of each page to take."""
        return [("dashboard", "/"), ("job", f"/jobs/{self.job.pk}/"), ("billing", "/billing/")]


@dataclass
class Shot:
    name: str
    language: str
    path: Path
    text: str
    nav: dict[str, Any]
    overflow: int


def prepare_demo() -> Demo:
    """The seeded demo user and a finished job of the demo project (made once, reused after)."""
    # Imports of Django and the apps wait for django.setup(), which main() runs after loading this module.
    from django.core.management import call_command

    from accounts.models import User
    from config.management.commands.seed_demo import DEMO_EMAIL, DEMO_PROJECT
    from generation import services
    from generation.execution import run_job
    from generation.models import GenerationJob, JobStatus
    from projects.models import Project
    from workers.stub import StubEngine

    call_command("seed_demo", stdout=io.StringIO())
    user = User.objects.get(email=DEMO_EMAIL)
    project = Project.objects.get(organization__memberships__user=user, name=DEMO_PROJECT)
    job = GenerationJob.objects.filter(project=project, status=JobStatus.SUCCEEDED).order_by("-created_at").first()
    if job is None:
        version = services.resolve_version(project.organization, "product-description")
        job, _ = services.submit_generation(
            organization=project.organization,
            project=project,
            version=version,
            inputs=JOB_INPUTS,
            params=JOB_PARAMS,
            actor=user,
        )
        job = run_job(job.pk, engine=StubEngine(token_s=0))
        assert job is not None and job.status == JobStatus.SUCCEEDED, f"the stub job ended {job and job.status}"
    return Demo(user=user, job=job)


def sign_in(page: Any, base: str, user: Any) -> None:
    """A session made in process and handed to the browser as its cookie (no login form to wait on)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base}])


@contextmanager
def language_of(user: Any, language: str) -> Iterator[None]:
    """The user's dashboard language for a while (the middleware applies it on every request), then theirs again."""
    before = user.language
    user.language = language
    user.save(update_fields=["language"])
    try:
        yield
    finally:
        user.language = before
        user.save(update_fields=["language"])


def shoot(page: Any, base: str, name: str, path: str, language: str, folder: Path) -> Shot:
    """Open one page and save it as ``<name>-<language>.png``, full page."""
    page.goto(f"{base}{path}")
    page.wait_for_load_state("load")
    # The page's own fonts are system fonts: wait until Noto CJK (or whatever serves) is laid out.
    page.evaluate("() => document.fonts.ready")
    target = folder / f"{name}-{language}.png"
    page.screenshot(path=str(target), full_page=True)
    return Shot(
        name=name,
        language=language,
        path=target,
        text=page.inner_text("body"),
        nav=page.evaluate(NAV_ROWS_JS),
        overflow=page.evaluate(_OVERFLOW_JS),
    )


def shoot_all(page: Any, base: str, demo: Demo, folder: Path) -> list[Shot]:
    folder.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    sign_in(page, base, demo.user)
    shots = []
    for language in LANGUAGES:
        with language_of(demo.user, language):
            shots += [shoot(page, base, name, path, language, folder) for name, path in demo.pages()]
    return shots


@contextmanager
def _served() -> Iterator[str]:
    """The site (static files included) on a free local port, in a thread of this process."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.terminate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="var/screenshots", type=Path)
    folder = parser.parse_args(argv).folder.resolve()

    import srcroot  # noqa: F401  (platform/ on sys.path)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are not async.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    import django

    django.setup()
    from django.conf import settings

    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: run bin/install-browser", file=sys.stderr)
        return 1
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1", "localhost"]
    # Served from the source folders as the tests serve them: no collectstatic manifest needed.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    from playwright.sync_api import sync_playwright

    demo = prepare_demo()
    with _served() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}).new_page()
        shots = shoot_all(page, base, demo, folder)
        browser.close()
    for shot in shots:
        rows = shot.nav["rows"]
        print(f"{shot.path}  nav rows: {rows}  sideways overflow: {shot.overflow}px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
