"""Dashboard pages of recommendations: customers with their history and recommendations, items with
similar items, and the navigation; everyone in the organization reads, an outsider gets 404s."""

from __future__ import annotations

import pytest

from tests.support.recommendation_factories import (
    CustomerFactory,
    EventFactory,
    RecommendationFactory,
    RecommendationJobFactory,
    SimilarItemFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(cast):
    event = EventFactory(
        project=cast.project,
        customer__external_id="ada-17",
        customer__attributes={"country": "France", "name": "Ada"},
        item__title="REGENCY CAKESTAND 3 TIER",
    )
    job = RecommendationJobFactory(project=cast.project)
    RecommendationFactory(job=job, customer=event.customer, item__title="ROSES REGENCY TEACUP AND SAUCER")
    SimilarItemFactory(job=job, item=event.item, similar__title="GREEN REGENCY TEACUP AND SAUCER")
    return event.customer


def test_viewer_reads_a_customer_profile_with_history_and_recommendations(cast, client, ada):
    client.force_login(cast.viewer)

    listing = client.get("/recommendations/customers/", {"country": "france"}).content.decode()
    page = client.get(f"/recommendations/customers/{ada.pk}/").content.decode()

    assert "ada-17" in listing
    assert "Regency Cakestand 3 Tier" in page  # history, in title case
    assert "Roses Regency Teacup And Saucer" in page and "Bought together with Linen napkins" in page
    assert "country: <strong>France</strong>" in page


def test_customer_list_filters(cast, client, ada):
    CustomerFactory(project=cast.sibling_project, external_id="bob-2", attributes={"country": "Spain"})
    client.force_login(cast.viewer)

    by_project = client.get("/recommendations/customers/", {"project": str(cast.sibling_project.pk)}).content.decode()
    by_id = client.get("/recommendations/customers/", {"q": "ada"}).content.decode()

    assert "bob-2" in by_project and "ada-17" not in by_project
    assert "ada-17" in by_id and "bob-2" not in by_id


def test_item_page_lists_similar_items(cast, client, ada):
    item = ada.events.get().item
    client.force_login(cast.viewer)

    page = client.get(f"/recommendations/items/{item.pk}/").content.decode()

    assert "Green Regency Teacup And Saucer" in page


def test_every_page_renders_for_a_viewer_and_the_nav_links_them(cast, client, ada):
    client.force_login(cast.viewer)

    for url in ("/recommendations/", "/recommendations/jobs/", "/recommendations/customers/",
                "/recommendations/campaigns/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert 'href="/recommendations/"' in response.content.decode()


def test_outsider_gets_404_on_acme_pages(cast, client, ada):
    item = ada.events.get().item
    client.force_login(cast.outsider)

    assert client.get(f"/recommendations/customers/{ada.pk}/").status_code == 404
    assert client.get(f"/recommendations/items/{item.pk}/").status_code == 404
    assert "ada-17" not in client.get("/recommendations/customers/").content.decode()
    assert client.post(f"/recommendations/projects/{cast.project.pk}/settings/", {}).status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get("/recommendations/customers/")

    assert response.status_code == 302 and "/accounts/login/" in response.url


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"project": "not-a-uuid", "k": "ten", "holdout_days": "-1"},
        {"project": "00000000-0000-0000-0000-000000000000", "name": "x" * 500, "template": "nope", "limit": "1e9"},
        {"project": "\x00", "countries": "\x00", "inputs": "no colon here", "items_per_customer": "99"},
        {"mapping": "[1, 2]", "exclude_skus": "\x01\x1b[31m"},
    ],
    ids=["empty", "bad-numbers", "unknown-things", "nul-bytes", "bad-json"],
)
def test_junk_posted_to_every_form_is_a_4xx_page(cast, client, data):
    client.force_login(cast.editor)

    for url in ("/recommendations/", "/recommendations/jobs/", "/recommendations/campaigns/",
                f"/recommendations/projects/{cast.project.pk}/settings/"):
        response = client.post(url, data)
        assert response.status_code < 500, (url, response.status_code)
        assert response.status_code in (200, 302, 400, 404, 409), (url, response.status_code)
