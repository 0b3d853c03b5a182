"""CSV import of catalog, customers and events: the row report, idempotency, bad files, API and dashboard."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import override_settings

from core.errors import InvalidInput
from recommendations.importing import OUTCOMES, FileTooLarge, import_events, parse_file
from recommendations.models import CatalogItem, Customer, DataImport, Event, EventType
from tests.support.recommendation_factories import CatalogItemFactory

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online_retail_sample.csv"
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"


def retail(*rows: str) -> bytes:
    return (HEADER + "".join(row + "\n" for row in rows)).encode()


def _import(cast, data: bytes, **kwargs):
    return import_events(organization=cast.org, project=cast.project, data=data, filename="orders.csv", **kwargs)


def _events(project):
    return set(Event.objects.filter(project=project).values_list("event_id", "type", "value", "customer__external_id"))


# --- the row report ------------------------------------------------------------------------------


def test_every_row_gets_exactly_one_outcome(cast):
    # given: one row of each kind
    data = retail(
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01T08:26:00,2.55,17850,United Kingdom",
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01T08:26:00,3.39,17850,United Kingdom",
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01T08:26:00,3.39,17850,United Kingdom",  # repeated line
        "536366,22633,HAND WARMER UNION JACK,6,2010-12-01T08:28:00,1.85,,United Kingdom",  # no customer
        "536367,POST,POSTAGE,1,2010-12-01T08:34:00,18.00,12583,France",  # postage, no product
        "536368,99999,,3,2010-12-01T08:35:00,1.00,12583,France",  # no title anywhere, not in the catalog
        "C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-2,2010-12-01T09:41:00,2.55,17850,United Kingdom",
        "536380,71053,WHITE METAL LANTERN,-4,2010-12-01T09:45:00,3.39,12583,France",  # negative, no C invoice
        "536381,22632,HAND WARMER RED POLKA DOT,x,2010-12-01T09:50:00,abc,12583,France",  # bad numbers
    )
    # when
    report = _import(cast, data).report
    # then
    assert report["outcomes"] == {
        "imported": 2,
        "returns_imported": 1,
        "already_imported": 0,
        "duplicate_in_file": 1,
        "missing_customer": 1,
        "non_product": 1,
        "unknown_item": 1,
        "negative_quantity": 1,
        "rejected": 1,
    }
    assert sum(report["outcomes"].values()) == report["rows"] == 9
    assert report["errors"] == [
        {"line": 10, "errors": ["value: 'x' is not a number", "price: 'abc' is not a number"]}
    ]
    assert report["example_lines"]["missing_customer"] == [5]
    assert report["example_lines"]["unknown_item"] == [7]
    stored = Event.objects.filter(project=cast.project).values_list(
        "item__sku", "type", "value", "customer__external_id"
    )
    assert sorted(stored) == [
        ("71053", "purchase", 6.0, "17850"),
        ("85123A", "purchase", 6.0, "17850"),
        ("85123A", "return", 2.0, "17850"),
    ]
    # the catalog learns items from every usable row, even those whose event could not be kept
    assert set(CatalogItem.objects.filter(project=cast.project).values_list("sku", flat=True)) == {
        "85123A", "71053", "22633",
    }
    assert Customer.objects.get(project=cast.project, external_id="17850").attributes == {"country": "United Kingdom"}


def test_importing_the_same_file_twice_stores_nothing_new(cast):
    data = retail(
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01T08:26:00,2.55,17850,United Kingdom",
        "C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-1,2010-12-01T09:41:00,2.55,17850,United Kingdom",
        "536370,22728,ALARM CLOCK BAKELIKE PINK,24,2010-12-01T08:45:00,3.75,12583,France",
    )
    first = _import(cast, data)
    before = (_events(cast.project), list(CatalogItem.objects.values("sku", "title", "price").order_by("sku")))

    second = _import(cast, data)

    assert second.report["outcomes"]["already_imported"] == 3
    assert second.events_created == 0 and first.events_created == 3
    assert second.report["items_created"] == second.report["items_updated"] == 0
    assert second.report["customers_created"] == second.report["customers_updated"] == 0
    after = (_events(cast.project), list(CatalogItem.objects.values("sku", "title", "price").order_by("sku")))
    assert after == before


def test_a_changed_title_or_price_updates_the_item_and_a_new_country_the_customer(cast):
    _import(cast, retail("1,A1,OLD NAME,1,2011-01-01T10:00:00,1.00,7,France"))

    report = _import(cast, retail("2,A1,NEW NAME,1,2011-02-01T10:00:00,1.25,7,Germany")).report

    item = CatalogItem.objects.get(project=cast.project, sku="A1")
    assert (item.title, item.price) == ("NEW NAME", Decimal("1.2500"))
    assert Customer.objects.get(project=cast.project, external_id="7").attributes == {"country": "Germany"}
    assert (report["items_updated"], report["customers_updated"]) == (1, 1)


def test_a_known_sku_without_title_in_the_file_is_no_unknown_item(cast):
    CatalogItemFactory(project=cast.project, sku="KNOWN", title="Known thing")

    report = _import(cast, retail("1,KNOWN,,2,2011-01-01T10:00:00,1.00,7,France")).report

    assert report["outcomes"]["imported"] == 1
    assert CatalogItem.objects.get(project=cast.project, sku="KNOWN").title == "Known thing"


def test_generic_columns_and_a_custom_mapping(cast):
    plain = (
        b"customer_id,sku,timestamp,type,value,title\n"
        b"C1,MUG,1700000000,view,1,Blue mug\n"
        b"C1,MUG,2023-11-15,purchase,2,\n"
    )
    assert _import(cast, plain).report["outcomes"]["imported"] == 2

    custom = b"Kunde,Artikel,Zeit,Land\nK9,MUG,2023-11-16T10:00:00+01:00,Austria\n"
    mapping = {"customer": "Kunde", "sku": "Artikel", "timestamp": "Zeit", "customer.country": "Land"}
    report = _import(cast, custom, mapping=mapping).report

    assert report["outcomes"]["imported"] == 1
    assert Customer.objects.get(project=cast.project, external_id="K9").attributes == {"country": "Austria"}
    assert Event.objects.filter(project=cast.project, type=EventType.VIEW).count() == 1


# --- bad files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (HEADER.replace(",", ";").encode() + b"1;A;B;1;2011-01-01;1;2;FR\n", "wrong_delimiter", "semicolons"),
        (b"InvoiceNo,StockCode,Quantity\n1,A,1\n", "unknown_format", "columns are not recognised"),
        (b"", "empty_file", "empty"),
        (HEADER.encode(), "no_rows", "no rows"),
        ("customer_id,sku,timestamp\nK\xe4se,A,2011-01-01\n".encode("latin-1"), "invalid_encoding", "not UTF-8"),
        (b'customer_id,sku,timestamp\n"unterminated,A,2011\n', "invalid_csv", "cannot be read"),
    ],
    ids=["semicolons", "missing-columns", "empty", "header-only", "latin-1", "broken-quotes"],
)
def test_bad_files_are_refused_whole_with_a_clear_message(cast, data, code, message):
    with pytest.raises(InvalidInput) as refused:
        _import(cast, data)

    assert refused.value.code == code
    assert message in refused.value.detail
    assert not DataImport.objects.exists() and not Event.objects.exists()


def test_a_mapping_naming_absent_columns_lists_what_the_file_has(cast):
    with pytest.raises(InvalidInput) as refused:
        _import(cast, b"a,b,c\n1,2,3\n", mapping={"customer": "a", "sku": "b", "timestamp": "When"})

    assert refused.value.code == "missing_columns"
    assert "'When'" in refused.value.detail and "'a', 'b', 'c'" in refused.value.detail


def test_bad_values_are_reported_row_by_row_and_the_good_rows_kept(cast):
    data = retail(
        "1,A,GOOD,1,2011-01-01T10:00:00,1.00,7,France",
        "2,A,GOOD,1,2999-01-01T10:00:00,1.00,7,France",
        "3,A,GOOD,1,yesterday,1.00,7,France",
        "4,A,GOOD,1,2011-01-01T10:00:00,-1.00,7,France",
        "5,A,GOOD,1,2011-01-01T10:00:00,1.00001,7,France",
        "6,A,GOOD,nan,2011-01-01T10:00:00,1.00,7,France",
        "7,A,GOOD,1,2011-01-01T10:00:00,1.00,7,France,extra",
    )

    report = _import(cast, data).report

    assert report["outcomes"]["imported"] == 1 and report["outcomes"]["rejected"] == 6
    messages = {e["line"]: e["errors"] for e in report["errors"]}
    assert messages[3] == ["timestamp: 2999-01-01T10:00:00 is in the future"]
    assert "is not an ISO 8601 date nor Unix seconds" in messages[4][0]
    assert messages[5] == ["price: -1.00 is negative"]
    assert messages[6] == ["price: 1.00001 has more than 4 decimal places"]
    assert messages[7] == ["value: 'nan' is out of range"]
    assert "the header has 8 columns" in messages[8][0]


@override_settings(RECOMMENDATION_IMPORT_MAX_BYTES=1000)
def test_a_file_over_the_limit_is_refused(cast):
    with pytest.raises(FileTooLarge) as refused:
        _import(cast, retail(*["1,A,GOOD,1,2011-01-01T10:00:00,1.00,7,France"] * 40))

    assert refused.value.status_code == 413 and refused.value.code == "file_too_large"


# --- the shared Online Retail sample -------------------------------------------------------------


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"the shared sample {SAMPLE} is not there")
def test_online_retail_sample_imports_twice_to_the_same_data_and_its_counts_add_up(cast):
    data = SAMPLE.read_bytes()
    rows = list(csv.DictReader(io.StringIO(data.decode())))

    first = _import(cast, data)
    snapshot = (
        _events(cast.project),
        set(CatalogItem.objects.filter(project=cast.project).values_list("sku", "title", "price")),
        set(Customer.objects.filter(project=cast.project).values_list("external_id", "attributes__country")),
    )
    second = _import(cast, data)

    for report in (first.report, second.report):
        assert sum(report["outcomes"].values()) == report["rows"] == len(rows) == 40_000
        # the README's counts: 10,057 rows without a customer id; every cancellation row is counted
        assert report["outcomes"]["missing_customer"] == sum(1 for r in rows if not r["CustomerID"])
        assert report["cancellation_rows"] == sum(1 for r in rows if r["InvoiceNo"].startswith("C"))
    assert first.report["outcomes"]["imported"] + first.report["outcomes"]["returns_imported"] == first.events_created
    assert first.events_created == Event.objects.filter(project=cast.project).count() > 25_000
    assert second.events_created == 0
    assert second.report["outcomes"]["already_imported"] == first.events_created
    assert snapshot == (
        _events(cast.project),
        set(CatalogItem.objects.filter(project=cast.project).values_list("sku", "title", "price")),
        set(Customer.objects.filter(project=cast.project).values_list("external_id", "attributes__country")),
    )


def test_parse_file_reads_iso_dates_with_and_without_zone_and_unix_seconds():
    parsed = parse_file(
        b"customer_id,sku,timestamp\nA,X,2011-01-01T10:00:00\nA,X,2011-01-01T10:00:00+02:00\nA,X,1293876000\n"
    )

    stamps = [row.occurred_at.isoformat() for row in parsed.rows]
    assert stamps == ["2011-01-01T10:00:00+00:00", "2011-01-01T10:00:00+02:00", "2011-01-01T10:00:00+00:00"]
    assert not any(row.errors for row in parsed.rows)
    assert set(OUTCOMES) >= {"imported", "rejected"}


# --- API -----------------------------------------------------------------------------------------


def _upload(client, project, data: bytes, **fields):
    upload = io.BytesIO(data)
    upload.name = "orders.csv"
    return client.post("/api/v1/data-imports/", {"project": str(project.pk), "file": upload, **fields})


def test_api_import_returns_the_report_and_the_import_is_listed(cast, key_for):
    client, _, _ = key_for("write")
    data = retail("1,A,MUG,2,2011-01-01T10:00:00,1.00,7,France", "2,A,MUG,2,2011-01-01T10:00:00,1.00,,France")

    response = _upload(client, cast.project, data)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["report"]["outcomes"]["imported"] == 1 and body["report"]["outcomes"]["missing_customer"] == 1
    assert body["total_rows"] == 2 and body["events_created"] == 1
    listed = client.get("/api/v1/data-imports/", {"project": str(cast.project.pk)}).json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]


def test_api_import_with_a_json_mapping_and_a_bad_one(cast, key_for):
    client, _, _ = key_for("write")
    data = b"who,what,when\nK1,A,2011-01-01\n"
    CatalogItemFactory(project=cast.project, sku="A")

    good = _upload(client, cast.project, data, mapping='{"customer": "who", "sku": "what", "timestamp": "when"}')
    bad = _upload(client, cast.project, data, mapping="{not json")
    unknown = _upload(client, cast.project, data, mapping='{"colour": "who"}')

    assert good.status_code == 201 and good.json()["report"]["outcomes"]["imported"] == 1
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_mapping")
    assert (unknown.status_code, unknown.json()["code"]) == (400, "invalid_mapping")
    assert "unknown field 'colour'" in unknown.json()["detail"]


def test_api_import_of_a_bad_file_is_a_400_with_the_reason(cast, key_for):
    client, _, _ = key_for("write")

    response = _upload(client, cast.project, b"a;b;c\n1;2;3\n")

    assert response.status_code == 400
    assert response.json()["code"] == "wrong_delimiter"
    assert not DataImport.objects.exists()


def test_api_refuses_a_100_mb_upload_from_its_length_without_reading_it(cast, key_for):
    client, _, _ = key_for("write")
    # The declared length is what counts: the body is never read (nor sent here).
    response = client.generic(
        "POST",
        "/api/v1/data-imports/",
        b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(100 * 1024 * 1024),
    )

    assert response.status_code == 413
    assert response.json()["code"] == "file_too_large"
    assert "100.0 MB" in response.json()["detail"]


@override_settings(RECOMMENDATION_IMPORT_MAX_BYTES=2000)
def test_api_refuses_a_file_over_the_limit_sent_whole(cast, key_for):
    client, _, _ = key_for("write")

    response = _upload(client, cast.project, retail(*["1,A,GOOD,1,2011-01-01T10:00:00,1.00,7,France"] * 100))

    assert response.status_code == 413 and response.json()["code"] == "file_too_large"
    assert not Event.objects.exists()


def test_viewer_and_read_key_cannot_import(cast, client_for, key_for):
    read_key, _, _ = key_for("read")
    data = retail("1,A,MUG,2,2011-01-01T10:00:00,1.00,7,France")

    assert _upload(client_for(cast.viewer), cast.project, data).status_code == 403
    assert _upload(read_key, cast.project, data).status_code == 403
    assert not Event.objects.exists()


def test_outsider_cannot_import_into_acme(cast, outsider_key):
    response = _upload(outsider_key, cast.project, retail("1,A,MUG,2,2011-01-01T10:00:00,1.00,7,France"))

    assert response.status_code == 404
    assert response.json()["code"] == "project_not_found"
    assert not Event.objects.exists()


# --- dashboard -----------------------------------------------------------------------------------


def test_editor_imports_from_the_dashboard_and_sees_the_row_report(cast, client):
    client.force_login(cast.editor)
    upload = io.BytesIO(retail("1,A,MUG,2,2011-01-01T10:00:00,1.00,7,France", "2,A,MUG,x,2011-01-01,1,7,France"))
    upload.name = "orders.csv"

    response = client.post("/recommendations/", {"project": str(cast.project.pk), "file": upload}, follow=True)

    assert response.status_code == 200
    data_import = DataImport.objects.get()
    assert response.redirect_chain[-1][0] == f"/recommendations/imports/{data_import.pk}/"
    html = response.content.decode()
    assert "Imported 2 rows: 1 new event." in html
    assert "Line 3" in html and "value: &#x27;x&#x27; is not a number" in html


def test_dashboard_refuses_a_100_mb_upload_with_413_before_reading_it(cast, client):
    client.force_login(cast.editor)

    response = client.generic(
        "POST", "/recommendations/", b"", content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(100 * 1024 * 1024),
    )

    assert response.status_code == 413
    assert "100.0 MB" in response.content.decode()


def test_dashboard_shows_a_bad_file_s_reason(cast, client):
    client.force_login(cast.editor)
    upload = io.BytesIO(b"a;b\n1;2\n")
    upload.name = "bad.csv"

    response = client.post("/recommendations/", {"project": str(cast.project.pk), "file": upload})

    assert response.status_code == 400
    assert "semicolons" in response.content.decode()


def test_viewer_sees_the_data_page_but_cannot_upload(cast, client):
    client.force_login(cast.viewer)
    upload = io.BytesIO(retail("1,A,MUG,2,2011-01-01T10:00:00,1.00,7,France"))
    upload.name = "orders.csv"

    page = client.get("/recommendations/")
    post = client.post("/recommendations/", {"project": str(cast.project.pk), "file": upload})

    assert page.status_code == 200 and "Import a CSV file" not in page.content.decode()
    assert post.status_code == 403
    assert not Event.objects.exists()


def test_outsider_gets_404_for_an_acme_import_page(cast, client):
    data_import = _import(cast, retail("1,A,MUG,2,2011-01-01T10:00:00,1.00,7,France"))
    client.force_login(cast.outsider)

    assert client.get(f"/recommendations/imports/{data_import.pk}/").status_code == 404


def test_the_import_form_still_needs_its_csrf_token(cast):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.editor)
    upload = io.BytesIO(retail("1,A,MUG,2,2011-01-01T10:00:00,1.00,7,France"))
    upload.name = "orders.csv"

    response = client.post("/recommendations/", {"project": str(cast.project.pk), "file": upload})

    assert response.status_code == 403
    assert not Event.objects.exists()
