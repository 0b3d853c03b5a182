"""The OpenAPI schema describes every route and the docs page works offline."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.api_routes import api_routes

pytestmark = pytest.mark.django_db


def _openapi_path(regex: str) -> str:
    """'api/v1/^projects/(?P<pk>[^/.]+)/?$' -> '/api/v1/projects/{id}/'."""
    path = regex.replace("^", "").replace("$", "").replace("/?", "/")
    return "/" + re.sub(r"\(\?P<pk>[^)]*\)", "{id}", path)


def test_schema_renders_for_anyone():
    response = APIClient().get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Loom API"
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_schema_lists_every_route():
    paths = set(APIClient().get("/api/schema/", {"format": "json"}).json()["paths"])

    expected = {_openapi_path(route.regex) for route in api_routes(with_format_suffix=False)}

    assert "/api/v1/projects/{id}/" in expected
    assert expected - paths == set()


def test_schema_generates_without_warnings(tmp_path):
    # --fail-on-warn: a view drf-spectacular cannot describe raises instead of guessing
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))

    assert "/api/v1/members/{id}/transfer-ownership/" in (tmp_path / "schema.yml").read_text()


def test_docs_render_from_local_assets_only():
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="swagger-ui"' in html
    external = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<>]*", html)
    assert external == [], f"the docs page loads from outside: {external}"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/drf_spectacular_sidecar/") for a in assets), assets
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not served locally"
