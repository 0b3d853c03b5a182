"""A key's secret is shown once and then exists nowhere: not in any table, not in any log line."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apikeys.models import ApiKey

pytestmark = pytest.mark.django_db


def _as_text(value: object) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _stored_text() -> Iterator[tuple[str, str]]:
    """(table, text) for every row of every table in the database, all columns included."""
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # introspected names
            for row in cursor.fetchall():
                yield table, " ".join(_as_text(value) for value in row)


def _logged_text(records: list[logging.LogRecord]) -> Iterator[str]:
    for record in records:
        yield record.getMessage()
        yield repr(record.__dict__)
        if record.exc_text:
            yield record.exc_text


@pytest.fixture
def sql_logged(caplog):
    """Everything at DEBUG, SQL statements and their parameters included."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True  # Django logs SQL only with DEBUG or this
    yield caplog
    connection.force_debug_cursor = False


def _use(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_key_secrets_are_never_stored_or_logged(cast, client_for, sql_logged):
    # given: two keys created through the API, then used, misused and revoked
    admin = client_for(cast.admin)
    created = [
        admin.post("/api/v1/api-keys/", {"name": "CI", "scope": "write"}, format="json"),
        admin.post(
            "/api/v1/api-keys/", {"name": "Reader", "scope": "read", "project": str(cast.project.pk)}, format="json"
        ),
    ]
    assert [r.status_code for r in created] == [201, 201]
    assert created[0]["Cache-Control"] == "no-store"
    full_keys = [r.json()["key"] for r in created]
    writer, reader = (_use(key) for key in full_keys)

    assert writer.get("/api/v1/projects/").status_code == 200
    assert writer.post("/api/v1/projects/", {"name": "Logged?"}, format="json").status_code == 201
    assert writer.get("/api/v1/me/").status_code == 200
    assert reader.get(f"/api/v1/projects/{cast.project.pk}/").status_code == 200
    assert reader.post("/api/v1/projects/", {"name": "No"}, format="json").status_code == 403
    assert _use(full_keys[0][:-2] + "zz").get("/api/v1/projects/").status_code == 401
    assert admin.delete(f"/api/v1/api-keys/{created[1].json()['id']}/").status_code == 204
    assert reader.get("/api/v1/projects/").status_code == 401
    assert admin.get("/api/v1/api-keys/").status_code == 200

    # when: every stored value and every log record is read back
    stored = list(_stored_text())
    logged = list(_logged_text(sql_logged.records))

    # then: the public prefix is there (the scan reads what it should) ...
    for response in created:
        prefix = ApiKey.objects.get(pk=response.json()["id"]).prefix
        assert any(table == "apikeys_apikey" and prefix in text for table, text in stored)
        assert any(prefix in text for text in logged)
    assert any("apikeys_apikey" in text for text in logged), "SQL was not logged; the log scan proves nothing"
    # ... and neither the key nor its secret part is, anywhere
    for key in full_keys:
        secret_part = key.split("_", 2)[2]
        assert len(secret_part) >= 40
        for needle in (key, secret_part):
            assert not [table for table, text in stored if needle in text], "a key secret is stored"
            assert not [text for text in logged if needle in text], "a key secret is logged"


def test_stored_hash_is_a_digest_not_the_secret(cast, client_for):
    response = client_for(cast.admin).post("/api/v1/api-keys/", {"name": "CI"}, format="json")
    key = response.json()["key"]

    stored = ApiKey.objects.get(pk=response.json()["id"])

    assert stored.secret_hash != key
    assert key.split("_", 2)[2] not in stored.secret_hash
    assert stored.secret_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(f"loom_{stored.prefix}_")


def test_secret_is_shown_once(cast, client_for):
    admin = client_for(cast.admin)
    created = admin.post("/api/v1/api-keys/", {"name": "CI"}, format="json").json()

    shown_again = [
        admin.get(f"/api/v1/api-keys/{created['id']}/").json(),
        *admin.get("/api/v1/api-keys/").json()["results"],
    ]

    secret_part = created["key"].split("_", 2)[2]
    assert all("key" not in body and secret_part not in str(body) for body in shown_again)
    assert shown_again[0]["masked"].startswith(created["key"].split("_")[0] + "_" + created["key"].split("_")[1])
