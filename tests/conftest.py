"""The standard cast: an owner, admin, editor and viewer of Acme, and an outsider from Globex."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from rest_framework.test import APIClient

from accounts.models import User
from apikeys.models import ApiKey
from apikeys.services import create_api_key
from bench.harness import Worker as WorkerHandle
from bench.harness import current_database_url
from generation import registry
from organizations.models import Organization, Role
from projects.models import Project
from tests.support.factories import MembershipFactory, OrganizationFactory, ProjectFactory, UserFactory

pytest_plugins = ["tests.support.browser"]  # the headless Chromium fixture, shared by the browser tests


@pytest.fixture(autouse=True)
def _seeded_plans(request: pytest.FixtureRequest) -> None:
    """Transactional tests flush every table, the seeded plans included: put them back first.

    Every organization without a subscription runs on the default plan, so a job
    submitted in such a test needs it.
    """
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or bool(
        {"transactional_db", "live_server"} & set(request.fixturenames)
    )
    if transactional:
        request.getfixturevalue("transactional_db")
        from tests.support.billing import seed_plans

        seed_plans()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """A reused test database may come from a run whose last (transactional) test flushed the
    seeded plans; every API call looks its caller's plan up (rate limits), so put them back once."""
    from tests.support.billing import seed_plans

    with django_db_blocker.unblock():
        seed_plans()


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Every test starts with empty API rate-limit counters: many tests call the API from 127.0.0.1
    within one minute. Only this run's counters go (RATE_LIMIT_KEY_PREFIX names the test process)."""
    from billing import ratelimit

    ratelimit.clear()


@dataclass
class Cast:
    org: Organization
    owner: User
    admin: User
    editor: User
    viewer: User
    project: Project
    sibling_project: Project
    outsider_org: Organization
    outsider: User
    outsider_project: Project


@pytest.fixture
def cast(db: None) -> Cast:
    # Migration 0006 writes the default model; a transactional test's flush removes it and the first
    # request would put it back (generation.registry.default_model): put it back before the test looks.
    registry.default_model()
    org = OrganizationFactory(name="Acme", slug="acme")
    users = {}
    for role in (Role.OWNER, Role.ADMIN, Role.EDITOR, Role.VIEWER):
        users[role] = UserFactory(email=f"{role.value}@acme.test")
        MembershipFactory(organization=org, user=users[role], role=role)
    outsider_org = OrganizationFactory(name="Globex", slug="globex")
    outsider = UserFactory(email="outsider@globex.test")
    MembershipFactory(organization=outsider_org, user=outsider, role=Role.OWNER)
    return Cast(
        org=org,
        owner=users[Role.OWNER],
        admin=users[Role.ADMIN],
        editor=users[Role.EDITOR],
        viewer=users[Role.VIEWER],
        project=ProjectFactory(organization=org, name="Spring", slug="spring"),
        sibling_project=ProjectFactory(organization=org, name="Autumn", slug="autumn"),
        outsider_org=outsider_org,
        outsider=outsider,
        outsider_project=ProjectFactory(organization=outsider_org, name="Secret", slug="secret"),
    )


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    """An API client signed in (session) as the given user."""

    def make(user: User) -> APIClient:
        client = APIClient()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def key_for(cast: Cast) -> Callable[..., tuple[APIClient, ApiKey, str]]:
    """An API client authenticated with a fresh key of the cast's organization."""

    def make(
        scope: str = "write", project: Project | None = None, org: Organization | None = None,
        admin: User | None = None,
    ) -> tuple[APIClient, ApiKey, str]:
        issued = create_api_key(
            actor=admin or cast.owner, organization=org or cast.org, name=f"{scope} key", scope=scope,
            project=project,
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
        return client, issued.api_key, issued.secret

    return make


@pytest.fixture
def outsider_key(cast: Cast, key_for: Callable[..., tuple[APIClient, ApiKey, str]]) -> APIClient:
    client, _, _ = key_for(org=cast.outsider_org, admin=cast.outsider)
    return client


def _test_database_url() -> str:
    """settings.DATABASE_URL pointed at the test database pytest-django created."""
    return current_database_url()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup: None, django_db_blocker: object) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process (default + recommendation queues) on the test database, for the session."""
    worker = WorkerHandle("default", "default,recommendation", "--concurrency", "1")
    yield worker.process
    worker.stop()


@pytest.fixture(scope="session")
def generation_worker(django_db_setup: None, django_db_blocker: object) -> Iterator[WorkerHandle]:
    """A real generation worker (threads pool around one loaded model), as production runs it."""
    worker = WorkerHandle("generation", "generation", "--pool", "threads", "--concurrency", "16")
    yield worker
    worker.stop()


@pytest.fixture
def empty_database() -> Iterator[str]:
    """The URL of a new, empty database on the configured server, dropped afterwards: what a newcomer's
    first command meets."""
    from urllib.parse import urlsplit, urlunsplit

    from django.conf import settings

    name = f"loom_empty_{uuid.uuid4().hex[:12]}"
    server = urlsplit(settings.DATABASE_URL)
    admin_url = urlunsplit(server._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(server._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
