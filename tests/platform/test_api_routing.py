"""Every API route answers with and without its trailing slash, never with a redirect."""

from __future__ import annotations

import pytest

from projects.models import Project
from tests.api_routes import REQUIRED_QUERY, acme_object, api_routes, call_id

pytestmark = pytest.mark.django_db

GET_ROUTES = [r for r in api_routes(with_format_suffix=False) if "get" in r.methods]


@pytest.mark.parametrize("route", GET_ROUTES, ids=call_id)
def test_route_answers_without_trailing_slash(cast, client_for, route):
    client = client_for(cast.owner)
    url = route.url(acme_object(cast, route).pk) if route.takes_pk else route.url()

    query = REQUIRED_QUERY.get(route.name, {})

    with_slash = client.get(url if url.endswith("/") else url + "/", query)
    without_slash = client.get(url.rstrip("/"), query)

    assert with_slash.status_code == 200, with_slash.content
    assert without_slash.status_code == 200
    if with_slash["Content-Type"].split(";")[0] == "application/json":
        assert without_slash.json() == with_slash.json()
    else:  # a download (CSV, JSONL)
        assert (without_slash["Content-Type"], without_slash.content) == (
            with_slash["Content-Type"],
            with_slash.content,
        )


def test_post_without_trailing_slash_creates(cast, client_for):
    response = client_for(cast.editor).post("/api/v1/projects", {"name": "No slash"}, format="json")

    assert response.status_code == 201
    assert Project.objects.filter(organization=cast.org, name="No slash").exists()


def test_invitation_accept_is_not_read_as_an_invitation_id(cast, client_for):
    for path in ("/api/v1/invitations/accept/", "/api/v1/invitations/accept"):
        response = client_for(cast.viewer).post(path, {"token": "nope"}, format="json")
        assert (response.status_code, response.json()["code"]) == (404, "invitation_not_found")


def test_format_suffix_routes_answer_json(cast, client_for):
    client = client_for(cast.owner)

    listing = client.get("/api/v1/projects.json")
    detail = client.get(f"/api/v1/projects/{cast.project.pk}.json")

    assert listing.status_code == 200 and listing.json()["count"] == 2
    assert detail.status_code == 200 and detail.json()["slug"] == "spring"


@pytest.mark.parametrize("route", api_routes(with_format_suffix=False), ids=call_id)
def test_options_describes_every_route(cast, client_for, route):
    client = client_for(cast.owner)
    url = route.url(acme_object(cast, route).pk) if route.takes_pk else route.url()

    response = client.options(url)

    assert response.status_code == 200, response.content
    assert response.json()["name"]
