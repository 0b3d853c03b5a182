"""Every download of the API (a PDF, a CSV or JSONL export) answers the media type its schema names,
also to a client that asks for exactly that type, as clients generated from the schema do.

The downloads are found in the schema: a GET whose 200 answer is not JSON.
"""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.api_routes import Route, acme_object, api_routes, assert_error_shape, call_id, openapi_path

pytestmark = pytest.mark.django_db


def _downloads() -> list[tuple[Route, str]]:
    schema: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for route in api_routes(with_format_suffix=False):
        operation = schema["paths"].get(openapi_path(route), {}).get("get")
        if not route.takes_pk or operation is None:
            continue
        # An event stream (text/event-stream) is not a file to save.
        content = operation["responses"]["200"].get("content", {})
        media_types = [m for m in content if m not in ("application/json", "text/event-stream")]
        if media_types:
            found.append((route, media_types[0]))
    return found


DOWNLOADS = _downloads()


def test_the_downloads_are_found_in_the_schema():
    assert {route.name: media_type for route, media_type in DOWNLOADS} == {
        "invoice-pdf": "application/pdf",
        "project-content-export-csv": "text/csv",
        "project-content-export-jsonl": "application/jsonl",
        "bulk-batch-results-csv": "text/csv",
        "campaign-results-csv": "text/csv",
        "brand-model-export": "application/zip",
    }


@pytest.mark.parametrize("accept", ["exactly", "anything"])
@pytest.mark.parametrize(("route", "media_type"), DOWNLOADS, ids=call_id)
def test_a_download_answers_the_media_type_of_its_schema(cast, client_for, route, media_type, accept):
    target = acme_object(cast, route)

    response = client_for(cast.owner).get(
        route.url(target.pk), HTTP_ACCEPT=media_type if accept == "exactly" else "*/*"
    )

    assert response.status_code == 200, (response.status_code, response.content[:200])
    assert response["Content-Type"].split(";")[0] == media_type
    assert response["Content-Disposition"].startswith("attachment; filename=")


@pytest.mark.parametrize(("route", "media_type"), DOWNLOADS, ids=call_id)
def test_a_download_refused_is_a_json_error_whatever_was_accepted(cast, outsider_key, route, media_type):
    target = acme_object(cast, route)

    response = outsider_key.get(route.url(target.pk), HTTP_ACCEPT=media_type)

    assert response.status_code == 404
    assert assert_error_shape(response)["code"] == "not_found"
