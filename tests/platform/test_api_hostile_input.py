"""Bad input anywhere in the API is a 4xx JSON error with ``code`` and ``detail``, never a 500.

Routes come from the URL resolver and field names from the OpenAPI schema, so a new
endpoint or field is fuzzed without touching this file. Every request runs in a
savepoint that is rolled back, so a DELETE or an ownership transfer in one case
does not change what the next case reaches.
"""

from __future__ import annotations

import json
import uuid
from functools import cache
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projects.models import Project
from tests.api_routes import acme_object, api_routes, assert_error_shape, call_id

pytestmark = pytest.mark.django_db

ROUTES = api_routes(with_format_suffix=False)
BODY_CALLS = [(r, m) for r in ROUTES for m in r.methods if m in ("post", "put", "patch")]
ALL_CALLS = [(r, m) for r in ROUTES for m in r.methods]
DETAIL_CALLS = [(r, m) for r, m in ALL_CALLS if r.takes_pk]

JSON = "application/json"


@cache
def request_fields() -> tuple[str, ...]:
    """Every property of every request body the schema documents."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return tuple(sorted({
        name
        for component, spec in schema["components"]["schemas"].items()
        if component.endswith("Request")
        for name in spec.get("properties", {})
    }))


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


#: Values that are wrong for every field in some way.
HOSTILE_VALUES: dict[str, Any] = {
    "null": None,
    "empty": "",
    "huge-string": "x" * 100_000,
    "huge-int": 10**30,
    "negative": -1,
    "float": 1.5,
    "bool": True,
    "list": ["admin", "editor"],
    "object": {"$gt": "", "nested": [1, {"a": None}]},
    "nested-30": _nested(30),
    "nul-byte": "a\x00b",
    "lone-surrogate": "\ud800",
    "control-chars": "\x01\x1b[31m\r\n",
    "emoji-rtl": "😀\u202e" * 40,
    "sql": "' OR 1=1 --",
    "html": "<script>alert(1)</script>",
    "bad-uuid": "not-a-uuid",
    "bad-date": "2024-02-30T25:61:00Z",
    "date-overflow": "9999-12-31T23:59:59-23:00",
    "whitespace": "   ",
}

#: Whole bodies that are not what any endpoint expects, as (content type, raw bytes).
RAW_BODIES: dict[str, tuple[str, bytes]] = {
    "json-null": (JSON, b"null"),
    "json-list": (JSON, b"[1, 2]"),
    "json-string": (JSON, b'"name"'),
    "json-number": (JSON, b"123"),
    "json-empty-object": (JSON, b"{}"),
    "unknown-fields-only": (JSON, b'{"is_superuser": true, "organization": "x", "id": 1}'),
    "nested-100k": (JSON, b"[" * 100_000 + b"]" * 100_000),
    "nested-500-in-field": (JSON, json.dumps({"role": _nested(500), "name": _nested(500)}).encode()),
    "nan": (JSON, b'{"name": NaN}'),
    "huge-int-literal": (JSON, b'{"name": ' + b"1" * 5000 + b"}"),
    "truncated": (JSON, b'{"name": "x'),
    "not-json": (JSON, b"name=x"),
    "invalid-utf8": (JSON, b'{"name": "\xff\xfe"}'),
    "empty": (JSON, b""),
    "json-charset-bogus": ("application/json; charset=bogus-charset", b'{"name": "x"}'),
    "utf16-claimed": ("application/json; charset=utf-16", b'{"name": "x"}'),
    "text-plain": ("text/plain", b"hello"),
    "xml": ("application/xml", b"<project><name>x</name></project>"),
    "multipart-without-boundary": ("multipart/form-data", b"junk"),
    "form-nul": ("application/x-www-form-urlencoded", b"name=%00&role=owner&email=%ff"),
    "form-too-many-fields": ("application/x-www-form-urlencoded", b"&".join(b"f%d=1" % i for i in range(1500))),
}

#: Bodies no endpoint that reads its body may accept.
UNPARSEABLE = {"nested-100k", "nested-500-in-field", "nan", "huge-int-literal", "truncated", "not-json",
               "invalid-utf8", "text-plain", "xml", "multipart-without-boundary", "form-too-many-fields"}
#: Actions that take no body: they ignore whatever is sent.
BODY_IGNORED = {
    "member-leave", "member-transfer-ownership", "job-cancel", "variant-regenerate",
    "experiment-start", "experiment-stop", "experiment-conclude",
    "project-brand-model-brand-models-rollback", "project-brand-model-brand-models-deactivate", "training-run-cancel",
}

#: What can sit where an id belongs; none of it names an object.
JUNK_IDS = ["not-a-uuid", "0", "-1", "null", "x" * 300, "%00", "%ff%fe", "%C3%BC", "%20", "'--", str(uuid.uuid4())]


def _bodies() -> dict[str, tuple[str, bytes]]:
    bodies = {
        f"every-field-{label}": (JSON, json.dumps({f: v for f in request_fields()}).encode())
        for label, v in HOSTILE_VALUES.items()
    }
    return {**bodies, **RAW_BODIES}


def _url(cast, route) -> str:
    return route.url(acme_object(cast, route).pk) if route.takes_pk else route.url()


def _send(client, method: str, url: str, content_type: str, body: bytes):
    """One request in a savepoint that is rolled back afterwards."""
    with transaction.atomic():
        response = client.generic(method.upper(), url, body, content_type=content_type)
        transaction.set_rollback(True)
    return response


def _problem(response) -> str | None:
    """Why a response breaks the contract, or None."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.content[:200]!r}"
    if response.status_code >= 400:
        try:
            assert_error_shape(response)
        except (AssertionError, ValueError) as exc:
            return f"{response.status_code} without the error shape: {exc}"
    elif response.status_code != 204:
        try:
            response.json()
        except ValueError:
            return f"{response.status_code} is not JSON: {response.content[:200]!r}"
    return None


@pytest.fixture
def owner(cast, client_for):
    """Acme's owner: every role check passes, so each body reaches the validators."""
    client = client_for(cast.owner)
    client.raise_request_exception = False
    return client


@pytest.fixture
def acme_urls(cast):
    """A URL for every route, detail routes pointing at an object in Acme; made once per test,
    since Hypothesis runs all its examples inside one test (each request is rolled back)."""
    return {route: _url(cast, route) for route in ROUTES}


def test_fuzzed_fields_come_from_the_schema():
    assert {"name", "slug", "description", "default_language", "email", "role", "scope", "project",
            "expires_at", "token"} <= set(request_fields())


@pytest.mark.parametrize(("route", "method"), BODY_CALLS, ids=call_id)
def test_hostile_bodies_get_json_4xx(cast, owner, route, method):
    url = _url(cast, route)
    problems = {}
    for label, (content_type, body) in _bodies().items():
        response = _send(owner, method, url, content_type, body)
        if (problem := _problem(response)) is not None:
            problems[label] = problem
        elif label in UNPARSEABLE and response.status_code < 400 and route.name not in BODY_IGNORED:
            problems[label] = f"accepted with {response.status_code}"
    assert not problems, problems


@pytest.mark.parametrize(("route", "method"), ALL_CALLS, ids=call_id)
def test_unsupported_media_type_and_accept_headers(cast, owner, route, method):
    url = _url(cast, route)
    responses = {
        "xml-accept": owner.generic(method.upper(), url, b"{}", content_type=JSON, HTTP_ACCEPT="application/xml"),
        "format-query": owner.generic(method.upper(), url + "?format=api", b"{}", content_type=JSON),
        "bad-org-header": owner.generic(method.upper(), url, b"{}", content_type=JSON,
                                        HTTP_X_ORGANIZATION="nope\x00"),
    }
    with transaction.atomic():
        problems = {label: p for label, r in responses.items() if (p := _problem(r)) is not None}
        transaction.set_rollback(True)
    assert not problems, problems
    assert responses["xml-accept"].status_code == 406
    assert responses["format-query"].status_code == 404


@pytest.mark.parametrize(("route", "method"), DETAIL_CALLS, ids=call_id)
def test_junk_ids_in_the_url_are_404(cast, owner, route, method):
    placeholder = uuid.UUID(int=1)
    problems = {}
    for junk in JUNK_IDS:
        url = route.url(placeholder).replace(str(placeholder), junk)
        response = _send(owner, method, url, JSON, b"{}")
        if response.status_code != 404 or _problem(response) is not None:
            problems[junk] = (response.status_code, response.content[:200])
    assert not problems, problems


@pytest.mark.parametrize(
    ("content_type", "make_body"),
    [
        (JSON, lambda size: json.dumps({"name": "Big", "description": "y" * size}).encode()),
        ("application/x-www-form-urlencoded", lambda size: b"name=Big&description=" + b"y" * size),
        ("multipart", None),
    ],
    ids=["json", "form", "multipart"],
)
def test_body_over_the_upload_limit_is_refused(cast, owner, content_type, make_body):
    """DATA_UPLOAD_MAX_MEMORY_SIZE holds for API bodies too (DRF reads them through request.body)."""
    limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert limit and limit < 10_000_000

    if make_body is None:
        response = owner.post("/api/v1/projects/", {"name": "Big", "description": "y" * limit}, format="multipart")
    else:
        response = owner.generic("POST", "/api/v1/projects/", make_body(limit), content_type=content_type)

    assert response.status_code == 400
    assert_error_shape(response)
    assert not Project.objects.filter(name="Big").exists()


def test_pagination_junk_is_ignored_or_refused(cast, owner):
    # Refused (400 naming the parameter), never silently replaced by another page size.
    for query in ("limit=abc&offset=-5", "limit=-1", "limit=999999999999999999999&offset=999999999999999999999",
                  "offset=%00", "limit=1e3", "limit=0", "limit=201", "limit="):
        response = owner.get(f"/api/v1/projects/?{query}")
        assert response.status_code == 400, (query, response.content)
        assert set(assert_error_shape(response)["fields"]) <= {"limit", "offset"}
    assert owner.get("/api/v1/projects/?limit=200&offset=999999999").json()["results"] == []


#: Values some field accepts, so that random bodies also get past the serializers into the services.
PLAUSIBLE = ["en", "de", "xx", "viewer", "editor", "admin", "owner", "read", "write", "new@example.com",
             "viewer@acme.test", "2030-01-01T00:00:00Z", "2001-01-01T00:00:00Z", "spring", "autumn", "---", "Spring",
             str(uuid.UUID(int=7))]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40) | st.sampled_from(PLAUSIBLE),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=100, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_bodies_never_500(owner, acme_urls, data):
    route, method = data.draw(st.sampled_from(BODY_CALLS), label="call")
    field_names = st.sampled_from(request_fields()) | st.text(max_size=12)
    body = data.draw(st.dictionaries(field_names, json_values, max_size=6) | json_values, label="body")

    response = _send(owner, method, acme_urls[route], JSON, json.dumps(body).encode())

    assert _problem(response) is None, (route.id, method, body, response.status_code, response.content[:300])
