"""Start the test identity provider (``tests.support.oidc_idp.settings``) as a process of its own.

It gets a fresh Postgres database next to the test database (``<test db>_idp``, dropped and made again),
a fresh RS256 key made here with ``cryptography``, and a free port; ``IdentityProviderServer`` then
creates users, groups and client applications through the IdP's management API.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.harness import free_port, spawn, terminate, wait_for
from srcroot import REPO_ROOT

SETTINGS = "tests.support.oidc_idp.settings"


@dataclass(frozen=True)
class IdentityProviderServer:
    url: str
    admin_token: str

    @property
    def issuer(self) -> str:
        return f"{self.url}/o"

    def _call(self, method: str, path: str, body: dict | None = None) -> int:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, data=json.dumps(body or {}).encode(),
            headers={"X-Idp-Admin-Token": self.admin_token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)

    def add_user(self, username: str, email: str, password: str, groups: tuple[str, ...] = ()) -> None:
        self._call("POST", "/manage/users/", {"username": username, "email": email, "password": password,
                                              "groups": list(groups)})

    def remove_user(self, username: str) -> None:
        self._call("DELETE", f"/manage/users/{username}/")

    def deactivate_user(self, username: str) -> None:
        self._call("PATCH", f"/manage/users/{username}/", {"is_active": False})

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str], *,
                   skip_authorization: bool = False) -> None:
        self._call("POST", "/manage/applications/", {
            "client_id": client_id, "client_secret": client_secret, "redirect_uris": redirect_uris,
            "skip_authorization": skip_authorization,
        })


def _fresh_database(base_url: str) -> str:
    parts = urlsplit(base_url)
    name = f"{parts.path.lstrip('/')}_idp"
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def _rsa_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@contextmanager
def running_idp(database_url: str, log_dir: Path) -> Iterator[IdentityProviderServer]:
    """The IdP serving on a free port until the block ends; ``database_url`` names the test database."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "IDP_"))},
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "PYTHONPATH": str(REPO_ROOT),  # not platform/: the IdP knows nothing of the platform's apps
        "IDP_DATABASE_URL": _fresh_database(database_url),
        "IDP_SECRET_KEY": secrets.token_urlsafe(40),
        "IDP_RSA_PRIVATE_KEY": _rsa_private_key_pem(),
        "IDP_ADMIN_TOKEN": secrets.token_urlsafe(24),
    }
    log_path = log_dir / "oidc-idp.log"
    migrate, log = spawn(["-m", "django", "migrate", "--noinput"], env=env, log_path=log_path)
    try:
        if migrate.wait(timeout=120) != 0:
            raise RuntimeError(f"the test IdP's migrations failed: {log_path.read_text()[-3000:]}")
    finally:
        log.close()
    port = free_port()
    process, log = spawn(["-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"], env=env, log_path=log_path)
    server = IdentityProviderServer(url=f"http://127.0.0.1:{port}", admin_token=env["IDP_ADMIN_TOKEN"])
    try:
        wait_for(lambda: _answers(f"{server.url}/healthz") or process.poll() is not None, 60, "the test IdP")
        if process.poll() is not None:
            raise RuntimeError(f"the test IdP exited: {log_path.read_text()[-3000:]}")
        yield server
    finally:
        terminate(process)
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


if __name__ == "__main__":  # by hand: python -m tests.support.oidc_idp.server postgres://.../loom
    with running_idp(sys.argv[1], Path("/tmp")) as idp:
        print(idp, flush=True)
        input("serving; Enter stops it ")
