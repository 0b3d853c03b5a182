"""The defaults a newcomer gets, tested as shipped: ``config.settings.base`` with no EMAIL_URL.

The rest of the suite runs on ``config.settings.test`` (in-memory mail, fast hashing), which hid
that the default mail configuration answered 500 on signup, password reset and invitations.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import dj_email_url
import pytest
import requests

from bench.harness import WebServer, current_database_url, free_port, wait_for
from config.env import SettingsError, email_settings
from srcroot import REPO_ROOT

# --- the dependency's behaviour, pinned by test: a new dj-email-url must not change it silently ---


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("console://", "django.core.mail.backends.console.EmailBackend"),
        ("smtp://user:secret@mail.example.com:587?tls=True", "django.core.mail.backends.smtp.EmailBackend"),
        ("submission://user:secret@mail.example.com", "django.core.mail.backends.smtp.EmailBackend"),
        ("file:///var/mail", "django.core.mail.backends.filebased.EmailBackend"),
        ("memory://", "django.core.mail.backends.locmem.EmailBackend"),
        ("dummy://", "django.core.mail.backends.dummy.EmailBackend"),
    ],
)
def test_every_documented_email_url_names_a_backend(url, backend):
    assert email_settings(url, REPO_ROOT)["EMAIL_BACKEND"] == backend


def test_smtp_url_carries_host_credentials_and_tls():
    parsed = email_settings("smtp://user:secret@mail.example.com:587?tls=True", REPO_ROOT)

    assert (parsed["EMAIL_HOST"], parsed["EMAIL_PORT"]) == ("mail.example.com", 587)
    assert (parsed["EMAIL_HOST_USER"], parsed["EMAIL_HOST_PASSWORD"]) == ("user", "secret")
    assert parsed["EMAIL_USE_TLS"] is True


def test_file_email_path_is_relative_to_the_checkout_unless_absolute():
    assert email_settings("file:///var/mail", REPO_ROOT)["EMAIL_FILE_PATH"] == str(REPO_ROOT / "var" / "mail")
    assert email_settings("file:////srv/mail", REPO_ROOT)["EMAIL_FILE_PATH"] == "/srv/mail"


@pytest.mark.parametrize("url", ["consolemail://", "smtp+tls://user:pass@host:587", "filemail:///tmp/x"])
def test_email_url_naming_no_backend_stops_the_process(url):
    # dj-email-url itself returns settings without EMAIL_BACKEND for these: Django would fall back to SMTP.
    assert "EMAIL_BACKEND" not in dj_email_url.parse(url)
    with pytest.raises(SettingsError, match="names no mail backend"):
        email_settings(url, REPO_ROOT)


def test_shipped_settings_print_mail_on_the_console():
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.base", "PATH": "/usr/bin:/bin"}
    code = "import srcroot, django; django.setup(); from django.conf import settings; print(settings.EMAIL_BACKEND)"
    for name in ("DATABASE_URL", "REDIS_URL"):  # the servers, not the mail, are this run's
        if value := os.environ.get(name):
            env[name] = value
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "django.core.mail.backends.console.EmailBackend"


# --- the real thing: gunicorn on the shipped settings, driven over HTTP ---------------------------


@pytest.fixture
def shipped_web(transactional_db: None) -> Iterator[WebServer]:
    from django.conf import settings

    # Everything from the shipped settings but the servers: this run's test database and Redis.
    web = WebServer(
        {"DJANGO_SETTINGS_MODULE": "config.settings.base", "DATABASE_URL": current_database_url(),
         "REDIS_URL": settings.REDIS_URL, "PYTHONUNBUFFERED": "1",
         # allauth's mail rate limits live in the cache: each run starts with none.
         "CACHE_KEY_PREFIX": f"loom-shipped-{uuid.uuid4().hex}"},
        workers=1, threads=4, name="shipped-web", unset=("EMAIL_URL", "DEBUG", "ACCOUNT_EMAIL_VERIFICATION"),
    )
    # As bin/start does: the shipped static storage serves only collected, hashed files.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=REPO_ROOT, env=web.env, check=True, timeout=120,
    )
    web.log_path.unlink(missing_ok=True)
    web.start()
    yield web
    web.stop()


class Browser:
    """A cookie-keeping HTTP client that posts forms with their CSRF token, as a browser would."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def get(self, path: str) -> requests.Response:
        response = self.session.get(self.base_url + path, timeout=30)
        assert response.status_code < 500, f"GET {path}: {response.status_code}"
        return response

    def post_form(self, path: str, data: dict[str, str], *, page: str | None = None) -> requests.Response:
        """POST ``data`` to ``path`` with the CSRF token of the form on ``page`` (``path`` itself by default)."""
        form = self.get(page or path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token, f"no CSRF token on {path}"
        response = self.session.post(
            self.base_url + path, data={"csrfmiddlewaretoken": token.group(1), **data},
            headers={"Referer": self.base_url + path}, timeout=30,
        )
        assert response.status_code < 500, f"POST {path}: {response.status_code}"
        return response


def _mail_in_log(web: WebServer, pattern: str) -> str:
    """The first match of ``pattern`` in what the web process printed (the console mail backend)."""

    def found() -> str | None:
        match = re.search(pattern, web.log_path.read_text(errors="replace"))
        return match.group(1) if match else None

    return wait_for(found, 20, f"a mail matching {pattern!r} in {web.log_path}")


def _link_path(web: WebServer, url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


@pytest.mark.timeout(180)
def test_signup_password_reset_and_invitation_work_with_shipped_mail_settings(shipped_web):
    web = shipped_web
    browser = Browser(web.base_url)
    email, password = "newcomer@example.test", "a long new password 1"

    # given: a newcomer signs up; the confirmation mail is printed by the web process
    response = browser.post_form("/accounts/signup/", {"email": email, "password1": password, "password2": password})
    assert "Check your email" in response.text
    assert "printed in the web server" in response.text
    confirm_url = _mail_in_log(web, r"(https?://\S+/accounts/confirm-email/\S+/)")

    # when: they follow the link from the console and confirm, they are signed in
    response = browser.post_form(_link_path(web, confirm_url), {})
    assert browser.get("/").url.rstrip("/") != web.base_url + "/accounts/login"

    # and: as the owner of a new organization they invite a colleague
    browser.post_form("/organizations/new/", {"name": "Newcomer Inc"})
    response = browser.post_form(
        "/members/invite/", {"email": "colleague@example.test", "role": "editor"}, page="/members/"
    )

    # then: the invitation mail is printed, and the page shows its link to the admin who sent it
    invitation_url = _mail_in_log(web, r"(https?://\S+/invitations/\S+/)")
    assert invitation_url in response.text
    assert "does not deliver email" in response.text

    # and: a password reset mails a working link too
    signed_out = Browser(web.base_url)
    response = signed_out.post_form("/accounts/password/reset/", {"email": email})
    assert "Check your email" in response.text
    reset_url = _mail_in_log(web, r"(https?://\S+/accounts/password/reset/key/\S+/)")
    form = signed_out.get(_link_path(web, reset_url))  # allauth redirects to the form's own URL
    new_password = "another long password 2"
    signed_out.post_form(
        _link_path(web, form.url), {"password1": new_password, "password2": new_password}
    )
    fresh = Browser(web.base_url)
    response = fresh.post_form("/accounts/login/", {"login": email, "password": new_password})
    assert "/accounts/login/" not in response.url
    server_errors = re.findall(r'"[A-Z]+ \S+ HTTP/[\d.]+" 5\d\d ', web.log_path.read_text(errors="replace"))
    assert server_errors == []


# --- bin/start, the README's first command --------------------------------------------------------


@pytest.mark.worker
@pytest.mark.timeout(600)
def test_bin_start_serves_the_seeded_demo_and_runs_a_job_once_ready(empty_database):
    """bin/start on an empty database, as shipped (no settings module, no mail configured): it migrates,
    seeds the demo, starts web, workers and beat; once /readyz says ready a demo job really runs."""
    from django.conf import settings

    port, run = free_port(), uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "EMAIL_URL", "DEBUG"}}
    env.update({
        "DATABASE_URL": empty_database, "REDIS_URL": settings.REDIS_URL, "WEB_BIND": f"127.0.0.1:{port}",
        # Keys of its own on the shared Redis: queues, cache, heartbeats, rate limits.
        "CELERY_KEY_PREFIX": f"loom-start-{run}:", "CACHE_KEY_PREFIX": f"loom-start-{run}",
        "RATE_LIMIT_KEY_PREFIX": f"loom-start-{run}:ratelimit",
        "WEB_CONCURRENCY": "1", "WORKER_CONCURRENCY": "1", "GENERATION_CONCURRENCY": "4",
    })
    env.pop("CELERY_BROKER_URL", None)
    log_path = REPO_ROOT / "var" / "test-bin-start.log"
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bin/start"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"bin/start exited with {process.returncode}; see {log_path}")
            try:
                return requests.get(base_url + "/readyz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, 420, "bin/start to report ready")
        output = log_path.read_text(errors="replace")
        email = re.search(r"Email:\s+(\S+)", output).group(1)
        password = re.search(r"Password:\s+(\S+)", output).group(1)

        # the printed demo credentials sign in, and the dashboard shows the demo project
        browser = Browser(base_url)
        response = browser.post_form("/accounts/login/", {"login": email, "password": password})
        assert "/accounts/login/" not in response.url
        assert browser.get("/projects/").status_code == 200

        # and a job submitted as the demo user runs on the bundled model
        project = browser.session.get(base_url + "/api/v1/projects/", timeout=30).json()["results"][0]
        csrf = browser.session.cookies["csrftoken"]
        submitted = browser.session.post(
            base_url + "/api/v1/jobs/", timeout=30, headers={"X-CSRFToken": csrf, "Referer": base_url + "/"},
            json={"project": project["id"], "template": "email-subject-lines", "inputs": {"topic": "spring sale"},
                  "num_variants": 1, "max_new_tokens": 8},
        )
        assert submitted.status_code == 201, submitted.text

        def finished() -> dict | None:
            job = browser.session.get(f"{base_url}/api/v1/jobs/{submitted.json()['id']}/", timeout=30).json()
            return job if job["status"] not in {"queued", "running"} else None

        job = wait_for(finished, 120, "the demo job to finish")
        assert job["status"] == "succeeded", job
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as the README says
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- the README's configuration table ------------------------------------------------------------

#: ``env.int("NAME", ...)``, ``env("NAME")`` and the like, a call possibly split over lines.
_ENV_READ = re.compile(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]+)\"")


def test_every_setting_read_from_the_environment_is_documented_in_the_readme():
    """An operator learns the knobs from the README's table: a new ``env.*("NAME")`` in the settings
    without a line there is a setting nobody can find."""
    readme = (REPO_ROOT / "README.md").read_text()
    settings_dir = REPO_ROOT / "platform" / "config" / "settings"
    read = {name for path in settings_dir.glob("*.py") if path.name != "test.py"
            for name in _ENV_READ.findall(path.read_text())}

    assert len(read) > 50  # the pattern still finds the settings
    assert sorted(name for name in read if f"`{name}`" not in readme) == []
