"""API rate limits: per key and per organization from the plan, per address without credentials; atomic in Redis."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.test import override_settings
from rest_framework.test import APIClient

from billing import ratelimit
from billing.models import Plan
from tests.support.billing import make_plan, subscribe
from tests.support.factories import UserFactory

PROJECTS = "/api/v1/projects/"


def _limited(org, *, per_key: int, per_org: int) -> Plan:
    plan = make_plan("limited", api_rate_limit_per_minute=per_key, org_rate_limit_per_minute=per_org)
    subscribe(org, plan)
    return plan


def _statuses(client, count: int, url: str = PROJECTS) -> list[int]:
    return [client.get(url).status_code for _ in range(count)]


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_requests_on_a_60_per_minute_key_admit_exactly_60(cast, key_for, live_server):
    # given: a key limited to 60 calls a minute (its organization's limit is far above)
    _limited(cast.org, per_key=60, per_org=10_000)
    _, _, secret = key_for("read")
    start = threading.Barrier(32)

    def call(i: int) -> requests.Response:
        if i < 32:
            start.wait()  # the first wave leaves together
        return requests.get(live_server.url + PROJECTS, headers={"Authorization": f"Bearer {secret}"}, timeout=60)

    # when: 200 calls from 32 threads at once, over real HTTP to a threaded server
    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(call, range(200)))

    # then: exactly 60 went through; the other 140 were refused with Retry-After
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 60
    assert statuses.count(429) == 140
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert refused.headers["X-RateLimit-Limit"] == "60"
    assert all(r.json()["count"] == 2 for r in responses if r.status_code == 200)  # real answers, not stubs


@pytest.mark.django_db
def test_organization_limit_spans_its_keys_and_members(cast, key_for, client_for):
    # given: 5 calls a minute per key, 8 for the whole organization
    _limited(cast.org, per_key=5, per_org=8)
    first, _, _ = key_for("read")
    second, _, _ = key_for("read")

    # when / then: the first key spends its own 5 (the 6th is its own limit)
    assert _statuses(first, 6) == [200] * 5 + [429]
    assert "API key" in first.get(PROJECTS).json()["detail"]
    # the second key gets the organization's last 3
    assert _statuses(second, 4) == [200] * 3 + [429]
    refused = second.get(PROJECTS)
    assert "organization Acme" in refused.json()["detail"]
    assert refused["X-RateLimit-Limit"] == "8"
    # and a signed-in member draws on the same organization budget
    assert client_for(cast.viewer).get(PROJECTS).status_code == 429


@pytest.mark.django_db
def test_another_organization_is_not_affected(cast, key_for, outsider_key):
    _limited(cast.org, per_key=2, per_org=2)
    acme, _, _ = key_for("read")
    assert _statuses(acme, 3) == [200, 200, 429]

    assert outsider_key.get(PROJECTS).status_code == 200


@pytest.mark.django_db
def test_every_response_carries_the_headers_of_the_tighter_limit(cast, key_for):
    # given Enterprise (the test default): 3,000 calls per key, 15,000 per organization
    client, _, _ = key_for("read")

    # when
    before = time.time()
    ok = client.get(PROJECTS)
    not_found = client.get(f"{PROJECTS}00000000-0000-0000-0000-000000000000/")
    forbidden = client.post(PROJECTS, {"name": "x", "slug": "x"}, format="json")  # a read-only key
    unrouted = client.get("/api/v1/no-such-thing/")

    # then: the key's limit is the tighter one, and every answer counts
    assert (ok.status_code, not_found.status_code, forbidden.status_code, unrouted.status_code) == (200, 404, 403, 404)
    assert [r["X-RateLimit-Limit"] for r in (ok, not_found, forbidden, unrouted)] == ["3000"] * 4
    assert [r["X-RateLimit-Remaining"] for r in (ok, not_found, forbidden, unrouted)] == [
        "2999",
        "2998",
        "2997",
        "2996",
    ]
    reset = int(ok["X-RateLimit-Reset"])  # Unix time: when the first call leaves the window
    assert before + 59 <= reset <= time.time() + 61
    assert "Retry-After" not in ok


@pytest.mark.django_db
def test_the_organization_limit_is_reported_when_it_is_tighter(cast, key_for):
    _limited(cast.org, per_key=100, per_org=10)
    client, _, _ = key_for("read")

    responses = [client.get(PROJECTS) for _ in range(3)]

    assert [r["X-RateLimit-Limit"] for r in responses] == ["10"] * 3
    assert [r["X-RateLimit-Remaining"] for r in responses] == ["9", "8", "7"]


@pytest.mark.django_db
def test_session_calls_count_against_the_organization(cast, client_for):
    _limited(cast.org, per_key=100, per_org=3)
    owner, editor = client_for(cast.owner), client_for(cast.editor)

    assert [owner.get(PROJECTS).status_code, editor.get(PROJECTS).status_code, owner.get("/api/v1/me").status_code] == [
        200,
        200,
        200,
    ]
    refused = editor.get(PROJECTS)

    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert "3 API calls per minute" in refused.json()["detail"]
    assert "UTC" in refused.json()["detail"]  # when it resets


@pytest.mark.django_db
@override_settings(API_RATE_LIMIT_ANONYMOUS_PER_MINUTE=3)
def test_calls_without_valid_credentials_are_limited_per_address(cast):
    stranger = APIClient(REMOTE_ADDR="203.0.113.7")
    guesser = APIClient(REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION="Bearer loom_abcdefgh_wrongsecret")
    elsewhere = APIClient(REMOTE_ADDR="198.51.100.1")

    assert _statuses(stranger, 2) == [401, 401]
    assert guesser.get(PROJECTS).status_code == 401  # a wrong key counts against the address too
    refused = guesser.get(PROJECTS)

    assert refused.status_code == 429
    assert refused["X-RateLimit-Limit"] == "3"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "without credentials" in refused.json()["detail"]
    assert elsewhere.get(PROJECTS).status_code == 401


@pytest.mark.django_db
@override_settings(API_RATE_LIMIT_ANONYMOUS_PER_MINUTE=1, API_RATE_LIMIT_TRUSTED_PROXIES=1)
def test_behind_a_trusted_proxy_the_forwarded_address_counts():
    # the proxy (127.0.0.1) appends the address it saw; what the client put before it is not trusted
    first = APIClient(HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.7")
    forged = APIClient(HTTP_X_FORWARDED_FOR="10.8.8.8, 203.0.113.7")
    other = APIClient(HTTP_X_FORWARDED_FOR="198.51.100.1")

    assert first.get(PROJECTS).status_code == 401
    assert forged.get(PROJECTS).status_code == 429
    assert other.get(PROJECTS).status_code == 401


@pytest.mark.django_db
def test_a_member_of_no_organization_is_limited_by_address(client_for):
    loner = client_for(UserFactory())
    with override_settings(API_RATE_LIMIT_ANONYMOUS_PER_MINUTE=1):
        assert [loner.get("/api/v1/me").status_code, loner.get("/api/v1/me").status_code] == [200, 429]


@pytest.mark.django_db
def test_a_refused_call_is_not_counted(cast, key_for):
    _limited(cast.org, per_key=2, per_org=100)
    client, api_key, _ = key_for("read")

    statuses = _statuses(client, 6)

    assert statuses == [200, 200, 429, 429, 429, 429]
    # the key's window holds its 2 accepted calls only, so it frees up 60 s after them, not after
    # the last refusal; and the refused calls never reached the organization's count
    storage = ratelimit._limiter().storage
    for limit in (
        ratelimit.Limit("key", str(api_key.pk), 2, ""),
        ratelimit.Limit("organization", str(cast.org.pk), 100, ""),
    ):
        _, counted = storage.get_moving_window(
            limit.item.key_for(limit.scope, limit.identifier), limit.per_minute, 60
        )
        assert counted == 2


@pytest.mark.django_db
def test_a_changed_plan_applies_once_the_cached_plan_is_older_than_api_key_cache_s(cast, key_for, settings):
    settings.API_KEY_CACHE_S = 3600
    plan = _limited(cast.org, per_key=5, per_org=100)
    client, _, _ = key_for("read")
    assert client.get(PROJECTS)["X-RateLimit-Limit"] == "5"

    Plan.objects.filter(pk=plan.pk).update(api_rate_limit_per_minute=7)

    assert client.get(PROJECTS)["X-RateLimit-Limit"] == "5"  # the process's copy, under an hour old
    settings.API_KEY_CACHE_S = 0
    assert client.get(PROJECTS)["X-RateLimit-Limit"] == "7"


@pytest.mark.django_db
def test_calls_go_through_unlimited_when_redis_is_down(cast, key_for):
    client, _, _ = key_for("read")

    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get(PROJECTS)

    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


@pytest.mark.django_db
def test_pages_outside_the_api_are_not_limited(cast, client):
    client.force_login(cast.owner)
    with override_settings(API_RATE_LIMIT_ANONYMOUS_PER_MINUTE=0):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


def test_refusals_wait_at_least_a_second():
    outcome = ratelimit.Outcome(allowed=False, limit=ratelimit.Limit("key", "k", 1, "k"), remaining=0, reset_at=100.2)

    assert outcome.retry_after(now=100.0) == 1
    assert outcome.retry_after(now=40.0) == 61
    assert outcome.headers() == {"X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "101"}
