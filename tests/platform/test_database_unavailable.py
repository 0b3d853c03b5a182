"""A database that turns requests away (connections exhausted, restarting, failing over) is a 503
with Retry-After, never a 500: clients and load balancers retry a 503.

Real refusals: the web's connection is pointed at a local port nothing listens on, so psycopg's
connect fails exactly as it does when Postgres is down (a full server refuses with an OperationalError
too, "sorry, too many clients already").
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from django.db import connections
from django.test import Client, RequestFactory

from core.views import server_error


@pytest.fixture
def database_refusing() -> Iterator[None]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    connection = connections["default"]
    real_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = closed_port
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_503_with_retry_after_when_the_database_refuses(database_refusing):
    response = Client(raise_request_exception=False).get(
        "/api/v1/projects/", HTTP_AUTHORIZATION="Bearer loom_not_a_real_key"
    )

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["code"] == "service_unavailable"


@pytest.mark.django_db(transaction=True)
def test_a_page_answers_503_when_the_database_refuses(database_refusing):
    response = Client(raise_request_exception=False).get("/accounts/login/")

    assert response.status_code == 503
    assert "busy or unreachable" in response.content.decode()


def test_other_errors_stay_500():
    request = RequestFactory().get("/api/v1/projects/")  # the handler itself: no view of ours fails on purpose
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        response = server_error(request)

    assert response.status_code == 500
    assert not response.has_header("Retry-After")
