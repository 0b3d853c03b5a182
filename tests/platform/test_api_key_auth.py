"""API keys authenticate by header only, and stop working the moment they are revoked or expire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apikeys.models import ApiKey
from apikeys.services import revoke_api_key
from audit.models import AuditLog
from projects.models import Project

pytestmark = pytest.mark.django_db


def _assert_401(response, code="authentication_failed"):
    assert response.status_code == 401, (response.status_code, response.content)
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"]
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    return body


# --- Revocation and expiry --------------------------------------------------------------------


def test_key_revoked_through_the_api_fails_on_its_next_call(cast, key_for, client_for):
    key_client, api_key, _ = key_for("write")
    assert key_client.get("/api/v1/projects/").status_code == 200

    response = client_for(cast.admin).delete(f"/api/v1/api-keys/{api_key.pk}/")

    assert response.status_code == 204
    _assert_401(key_client.get("/api/v1/projects/"))
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert api_key.revoked_by == cast.admin
    assert AuditLog.objects.filter(action="api_key.revoked", target_id=str(api_key.pk), actor=cast.admin).count() == 1


def test_key_revoked_through_the_service_fails_on_its_next_call(cast, key_for):
    key_client, api_key, _ = key_for("write")
    assert key_client.get("/api/v1/me/").status_code == 200

    revoke_api_key(actor=cast.owner, api_key=api_key)

    _assert_401(key_client.get("/api/v1/me/"))
    _assert_401(key_client.post("/api/v1/projects/", {"name": "After revoke"}, format="json"))
    assert not Project.objects.filter(name="After revoke").exists()


def test_revoking_twice_is_a_conflict(cast, key_for, client_for):
    _, api_key, _ = key_for("write")
    admin = client_for(cast.admin)
    admin.delete(f"/api/v1/api-keys/{api_key.pk}/")

    response = admin.delete(f"/api/v1/api-keys/{api_key.pk}/")

    assert response.status_code == 409
    assert response.json()["code"] == "already_revoked"


def test_revoked_key_is_listed_as_inactive(cast, key_for, client_for):
    _, api_key, _ = key_for("write")
    admin = client_for(cast.admin)
    admin.delete(f"/api/v1/api-keys/{api_key.pk}/")

    listed = admin.get(f"/api/v1/api-keys/{api_key.pk}/").json()

    assert listed["is_active"] is False
    assert listed["revoked_at"] is not None


def test_a_key_revoked_behind_the_services_back_fails_on_its_next_call_although_its_organization_is_cached(
    cast, key_for, settings
):
    """The organization and project are reused for API_KEY_CACHE_S; the key's own row is read every call."""
    settings.API_KEY_CACHE_S = 3600
    key_client, api_key, _ = key_for("write")
    assert key_client.get("/api/v1/projects/").status_code == 200  # loaded and cached

    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())  # no service, no signal

    _assert_401(key_client.get("/api/v1/projects/"))


def test_a_cached_key_costs_one_small_query_and_each_call_gets_its_own_copy(cast, key_for, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apikeys.services import authenticate_key

    settings.API_KEY_CACHE_S = 3600
    _, api_key, raw = key_for("write")
    first = authenticate_key(raw)
    first.organization.name = "Changed by one request"  # a request's own business

    with CaptureQueriesContext(connection) as queries:
        second = authenticate_key(raw)

    assert second.pk == api_key.pk and second.organization.pk == cast.org.pk
    assert second.organization.name == cast.org.name  # not the first caller's change
    assert second is not first and second.organization is not first.organization
    assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]
    assert "apikeys_apikey" in queries.captured_queries[0]["sql"]
    # the subscription is never part of the copy: admission reads it fresh
    assert not type(second.organization).subscription.is_cached(second.organization)


def test_with_no_cache_the_key_is_loaded_on_every_call(cast, key_for, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apikeys.services import authenticate_key

    settings.API_KEY_CACHE_S = 0
    _, _, raw = key_for("write")
    authenticate_key(raw)

    with CaptureQueriesContext(connection) as queries:
        assert authenticate_key(raw) is not None

    assert len(queries.captured_queries) == 2  # the row, then the key with its organization and project


def test_expired_key_gets_401(cast, key_for):
    key_client, api_key, _ = key_for("write")
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    _assert_401(key_client.get("/api/v1/projects/"))


def test_key_with_future_expiry_works(cast, client_for):
    expires = timezone.now() + timedelta(days=1)
    created = client_for(cast.admin).post(
        "/api/v1/api-keys/", {"name": "Temp", "expires_at": expires.isoformat()}, format="json"
    ).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['key']}")

    assert client.get("/api/v1/projects/").status_code == 200
    assert ApiKey.objects.get(pk=created["id"]).expires_at == expires


def test_key_cannot_be_created_already_expired(cast, client_for):
    response = client_for(cast.admin).post(
        "/api/v1/api-keys/", {"name": "Past", "expires_at": "2001-01-01T00:00:00Z"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_expiry"
    assert not ApiKey.objects.filter(name="Past").exists()


def test_key_use_is_recorded(cast, key_for):
    key_client, api_key, _ = key_for("read")
    assert api_key.last_used_at is None

    key_client.get("/api/v1/me/")

    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


# --- Malformed keys ---------------------------------------------------------------------------


def _tampered(secret: str) -> str:
    last = secret[-1]
    return secret[:-1] + ("A" if last != "A" else "B")


MALFORMED = {
    "not-a-loom-key": lambda secret: "abc123",
    "prefix-only": lambda secret: "loom_",
    "no-secret": lambda secret: "loom_" + secret.split("_")[1],
    "no-secret-after-separator": lambda secret: "loom_" + secret.split("_")[1] + "_",
    "empty-prefix": lambda secret: "loom__" + secret.split("_", 2)[2],
    "wrong-secret": _tampered,
    "extra-character": lambda secret: secret + "x",
    "truncated": lambda secret: secret[:-1],
    "upper-case-type": lambda secret: secret.replace("loom_", "LOOM_", 1),
    "nul-byte-in-prefix": lambda secret: secret[:7] + "\x00" + secret[8:],
    "nul-byte-in-secret": lambda secret: secret[:-3] + "\x00" + secret[-2:],
    "overlong": lambda secret: secret + "a" * 20_000,
    "other-prefix-same-secret": lambda secret: "loom_zzzzzzzz_" + secret.split("_", 2)[2],
    "non-ascii": lambda secret: secret[:-1] + "é",
    "sql": lambda secret: "loom_' OR '1'='1_x",
}


@pytest.mark.parametrize("make", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_key_gets_401(cast, key_for, make):
    _, _, secret = key_for("write")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make(secret)}")

    body = _assert_401(client.get("/api/v1/projects/"))

    assert "invalid" in body["detail"].lower()


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer    "])
def test_bearer_without_key_gets_401(cast, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    _assert_401(client.get("/api/v1/projects/"))


def test_no_credentials_gets_401(cast):
    _assert_401(APIClient().get("/api/v1/projects/"), code="not_authenticated")


def test_key_of_another_scheme_is_not_a_login(cast, key_for):
    _, _, secret = key_for("write")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")

    _assert_401(client.get("/api/v1/projects/"), code="not_authenticated")


# --- Keys in the query string -----------------------------------------------------------------

QUERY_FORMS = {
    "api_key": lambda secret: {"api_key": secret},
    "token": lambda secret: {"token": secret},
    "access_token-upper": lambda secret: {"ACCESS_TOKEN": "anything"},
    "any-param-with-a-key": lambda secret: {"q": secret},
    "key-with-spaces": lambda secret: {"q": f"  {secret}"},
    "key-as-param-name": lambda secret: {secret: ""},
    "second-value": lambda secret: {"tag": ["ok", secret]},
}


@pytest.mark.parametrize("query", QUERY_FORMS.values(), ids=QUERY_FORMS.keys())
def test_key_in_query_string_is_refused_even_with_a_valid_header(cast, key_for, query):
    client, _, secret = key_for("write")

    response = client.get("/api/v1/projects/", query(secret))

    body = _assert_401(response, code="api_key_in_query_string")
    assert "Authorization header" in body["detail"]


def test_post_with_key_in_query_string_creates_nothing(cast, key_for):
    client, _, secret = key_for("write")

    response = client.post(f"/api/v1/projects/?api_key={secret}", {"name": "Leaky"}, format="json")

    _assert_401(response, code="api_key_in_query_string")
    assert not Project.objects.filter(name="Leaky").exists()


def test_session_request_with_key_in_query_string_is_refused(cast, key_for, client_for):
    _, _, secret = key_for("write")

    response = client_for(cast.editor).get("/api/v1/me/", {"token": secret})

    _assert_401(response, code="api_key_in_query_string")


def test_key_only_in_query_string_is_refused(cast, key_for):
    _, _, secret = key_for("write")

    response = APIClient().get("/api/v1/projects/", {"api_key": secret})

    _assert_401(response, code="api_key_in_query_string")


def test_harmless_query_parameters_are_fine(cast, key_for):
    client, _, _ = key_for("write")

    response = client.get("/api/v1/projects/", {"limit": 1, "offset": 1, "q": "loom"})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
