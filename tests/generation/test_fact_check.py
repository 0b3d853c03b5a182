"""The fact check: every variant's claims, what supports each (the brief or a retrieved chunk), a hard
``facts`` check for unsupported prices and specs, a soft flag for unsupported statements, and where it
shows (the variant card, the API, bulk and campaign results).

No language model runs: jobs go through ``run_job`` or ``store_results`` with scripted outputs. The
feature statements use the bundled MiniLM embedder, as the generation worker does.
"""

from __future__ import annotations

import csv
import io
import json
import re
from concurrent.futures import Future
from pathlib import Path
from unittest import mock

import pytest

from generation import factcheck, scoring, services
from generation.bulk import batch_results_csv
from generation.execution import PromptContext, run_job, store_results
from generation.models import GenerationJob, JobStatus, Variant
from recommendations import results
from tests.support.generation_factories import BulkBatchFactory, GenerationJobFactory, VariantFactory
from tests.support.recommendation_factories import CampaignRecipientFactory
from workers.engine import FinishReason, GenerationRequest, GenerationResult

DATA = Path(__file__).parent / "data"
HTMX = {"HX-Request": "true"}
JACKET = {
    "product": "Trailblazer rain jacket",
    "features": "waterproof 2.5-layer shell, adjustable hood, two zip hand pockets, packs into its own pocket",
}
#: The issue's Google ad: prices the brief never named.
INVENTED_PRICES_AD = (
    "Headline 1: Trailblazer Rain Jacket\nHeadline 2: Only $25 Today\nHeadline 3: Stay Dry Anywhere\n"
    "Description 1: Waterproof shell, adjustable hood. Now $15 off your second one.\n"
    "Description 2: Shop the Trailblazer rain jacket today."
)
HONEST_AD = (
    "Headline 1: Trailblazer Rain Jacket\nHeadline 2: Waterproof and Light\nHeadline 3: Stay Dry Anywhere\n"
    "Description 1: A waterproof shell with an adjustable hood.\nDescription 2: Packs into its own pocket."
)
POCKET_CLAIM = "Its chest pocket provides additional protection from rain and snow."
#: A retrieved chunk as generation.prompts shows it and GenerationJob.grounding keeps it.
PRICE_CHUNK = {"id": "kc-7", "label": "K1", "source": "Price list", "text": "Trailblazer rain jacket: 89 USD.",
               "score": 0.8}


def _check(text: str, inputs: dict | None = None, chunks: list[dict] | None = None, embed=None) -> dict:
    (result,) = factcheck.fact_check_all([text], factcheck.sources_for(inputs or {}, chunks or []), embed=embed)
    return result


def _claims(result: dict, kind: str | None = None) -> dict[str, dict]:
    return {c["text"]: c for c in result["claims"] if kind is None or c["kind"] == kind}


def _entry(report: list[dict], name: str) -> dict:
    (entry,) = [e for e in report if e["constraint"] == name]
    return entry


# --- extraction ----------------------------------------------------------------------------------


def test_each_kind_of_claim_is_found_in_marketing_copy():
    text = (
        "Meet the jacket hikers call the Trailblazer Storm Shell. It weighs 350 g, is waterproof to "
        "20,000 mm and costs $89. Save 30% until March 3, 2025. Over 1,000 hikers since 2019 agree."
    )

    claims = _check(text)["claims"]

    found = {(c["kind"], c["value"]) for c in claims}
    assert {
        ("measurement", "350 gram"),
        ("measurement", "20000 millimetre"),
        ("price", "89 USD"),
        ("percentage", "30%"),
        ("date", "2025-03-03"),
        ("number", "1000"),
        ("date", "2019"),
        ("product", "Trailblazer Storm Shell"),
    } <= found
    features = [c["text"] for c in claims if c["kind"] == "feature"]
    assert features == ["It weighs 350 g, is waterproof to 20,000 mm and costs $89."]
    assert all(c["hard"] for c in claims if c["kind"] in factcheck.HARD_KINDS)
    assert not any(c["hard"] for c in claims if c["kind"] in ("product", "feature"))


def test_list_numbers_field_labels_and_small_counts_are_not_hard_claims():
    text = "1. Waterproof shell\n2) Adjustable hood\nHeadline 3: Top 5 reasons to stay dry"

    result = _check(text)

    assert [c["text"] for c in result["claims"] if c["kind"] != "feature"] == ["5"]
    assert result["unsupported_hard"] == 0 and result["unsupported_soft"] == 1


def test_a_cited_chunk_label_is_no_claim():
    assert _check("Waterproof and light [K1], from the spec sheet [K12].")["claims"] == []


def test_title_case_headlines_name_no_products():
    assert _claims(_check("Headline 1: Stay Dry With Trailblazer Gear"), "product") == {}


# --- normalization and support ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "brief"),
    [
        ("Only $25.", "Price: 25 USD"),
        ("Only 25 USD.", "price $25.00"),
        ("Only $25.", "25.00"),
        ("Save 30% today.", "thirty percent off"),
        ("Save 30 percent today.", "30% off"),
        ("A 1,000 mAh cell.", "battery 1000 mAh"),
        ("A 10000 mAh cell.", "10,000 mAh"),
        ("Only £19.99.", "GBP 19.99"),
        ("From $19 to $29.", "sizes from 19 to 29 dollars"),
        ("Ships on 3 March 2025.", "launch: March 3rd, 2025"),
        ("Ships in March 2025.", "launch 2025-03-14"),
        ("An 8 mm drop.", "8 mm heel drop"),
    ],
)
def test_equal_values_match_however_they_are_written(claim, brief):
    result = _check(claim, {"brief": brief})

    numeric = [c for c in result["claims"] if c["hard"]]
    assert numeric and all(c["supported"] and c["source"] == "brief" for c in numeric), numeric


@pytest.mark.parametrize(
    ("claim", "brief"),
    [
        ("Only $25.", "Price: $26"),
        ("Only $25.", "Price: 25 EUR"),
        ("Only $25.", "25 cm long"),
        ("Save 30%.", "30 days to return"),
        ("It weighs 350 g.", "weighs 350 kg"),
        ("Ships on 3 March 2025.", "launch: 4 March 2025"),
        ("Since 2019.", "since 2018"),
    ],
)
def test_different_values_or_units_do_not_match(claim, brief):
    result = _check(claim, {"brief": brief})

    assert result["unsupported_hard"] == 1, result["claims"]


def test_a_claim_names_the_chunk_that_supports_it_and_the_brief_comes_first():
    chunks = [
        {"id": "chunk-price", "label": "K1", "source": "Price list", "text": "The Trailblazer costs 89 USD.",
         "score": 0.7},
        {"id": "chunk-weight", "label": "K2", "source": "Spec sheet", "text": "Weight: 350 g. Price: 89 USD.",
         "score": 0.6},
    ]

    result = _check("Just $89 and 350 g, with a 2-year warranty of 24 months.", {"weight": "350 g"}, chunks)

    claims = _claims(result)
    assert (claims["$89"]["source"], claims["$89"]["evidence"]) == ("chunk-price", "The Trailblazer costs 89 USD.")
    assert claims["350 g"]["source"] == "brief"
    assert (claims["24 months"]["supported"], claims["24 months"]["source"]) == (False, None)
    assert (claims["2-year"]["supported"], result["unsupported_hard"]) == (False, 2)


# --- the issue's examples -------------------------------------------------------------------------


def test_prices_the_brief_never_named_are_unsupported_hard_claims():
    result = _check(INVENTED_PRICES_AD, JACKET)

    prices = _claims(result, "price")
    assert set(prices) == {"$25", "$15"}
    assert all(not c["supported"] and c["hard"] and c["source"] is None for c in prices.values())
    assert result["unsupported_hard"] == 2
    (entry,) = [e for e in factcheck.report_entries(result) if e["constraint"] == "facts"]
    assert (entry["passed"], entry["actual"], entry["claims"]) == (False, 2, ["$25", "$15"])


def test_the_rain_jackets_pocket_protecting_from_snow_is_flagged_soft():
    for embed in (None, scoring.embed):
        result = _check(f"The Trailblazer keeps you covered. {POCKET_CLAIM}", JACKET, embed=embed)

        claim = _claims(result, "feature")[POCKET_CLAIM]
        assert (claim["supported"], claim["hard"]) == (False, False)
        assert result["unsupported_hard"] == 0 and result["unsupported_soft"] >= 1
        entries = factcheck.report_entries(result)
        assert _entry(entries, "facts")["passed"] is True
        statements = _entry(entries, "unsupported_statements")
        assert statements["soft"] is True and POCKET_CLAIM in statements["claims"]


def test_a_statement_the_brief_makes_in_other_words_is_supported_by_embedding():
    statement = "The jacket comes with an adjustable hood."

    claim = _claims(_check(statement, JACKET, embed=scoring.embed), "feature")[statement]

    assert (claim["supported"], claim["source"], claim["evidence"]) == (True, "brief", "adjustable hood")


def test_the_similarity_threshold_separates_the_hand_labelled_statements():
    cases = json.loads((DATA / "fact_check_features.json").read_text())["cases"]

    wrong = []
    for case in cases:
        evidence = factcheck.Evidence.read([factcheck.Source("brief", case["brief"])], scoring.embed)
        (support,) = factcheck.support_statements([case["statement"]], evidence)
        if (support is not None) != case["supported"]:
            wrong.append(case["statement"])

    assert wrong == []


# --- the labelled evaluation ----------------------------------------------------------------------


def _same(a: str, b: str) -> bool:
    a, b = a.casefold(), b.casefold()
    return a in b or b in a


def numeric_precision_recall(cases: list[dict]) -> tuple[float, float, int]:
    """Precision and recall of the hard flags against the labelled unsupported numeric claims.

    A labelled unsupported claim the check did not find or found supported is a miss; a flag on a
    labelled supported claim, or on a number no label names, is a false alarm.
    """
    hits = false_alarms = misses = 0
    for case in cases:
        result = _check(case["text"], case["brief"], case.get("chunks"))
        hard = [c for c in result["claims"] if c["hard"]]
        for label in case["claims"]:
            found = next((c for c in hard if _same(c["text"], label["text"])), None)
            flagged = found is not None and not found["supported"]
            if not label["supported"]:
                hits, misses = hits + flagged, misses + (not flagged)
            else:
                false_alarms += flagged
        false_alarms += sum(
            1 for c in hard if not c["supported"] and not any(_same(c["text"], lb["text"]) for lb in case["claims"])
        )
    return hits / max(hits + false_alarms, 1), hits / max(hits + misses, 1), hits + misses


def test_numeric_claims_are_flagged_with_high_precision_and_recall_on_the_labelled_set():
    cases = json.loads((DATA / "fact_check_numeric.json").read_text())["cases"]

    precision, recall, unsupported = numeric_precision_recall(cases)

    assert len(cases) >= 30 and unsupported >= 30
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


# --- stored with the variant and in its constraint report ---------------------------------------


class ScriptedEngine:
    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        future: Future[GenerationResult] = Future()
        text = self.texts.pop(0)
        future.set_result(GenerationResult(text, 10, len(text.split()), FinishReason.EOS, 0.01))
        return future


def _run(project, texts: list[str], inputs: dict = JACKET, template: str = "google-ads") -> GenerationJob:
    version = services.resolve_version(project.organization, template)
    with mock.patch("generation.dispatch.enqueue"):
        job, _ = services.submit_generation(
            organization=project.organization,
            project=project,
            version=version,
            inputs=inputs,
            params={"num_variants": len(texts), "max_new_tokens": 240, "seed": 5},
        )
    return run_job(job.pk, engine=ScriptedEngine(*texts))


@pytest.mark.django_db
def test_a_variant_with_invented_prices_fails_the_facts_check_and_an_honest_one_passes(cast):
    job = _run(cast.project, [INVENTED_PRICES_AD, HONEST_AD])

    assert job.status == JobStatus.SUCCEEDED
    invented, honest = job.variants.order_by("index")
    assert invented.fact_check["unsupported_hard"] == 2
    assert {c["text"] for c in invented.fact_check["claims"] if not c["supported"] and c["hard"]} == {"$25", "$15"}
    facts = _entry(invented.constraint_report, "facts")
    assert (facts["passed"], facts["claims"]) == (False, ["$25", "$15"])
    assert invented.constraints_passed is False
    assert invented.original_constraint_report == invented.constraint_report
    # the honest ad passes every check, fact check included
    assert honest.fact_check["unsupported_hard"] == 0
    assert _entry(honest.constraint_report, "facts")["passed"] is True
    assert honest.constraints_passed is True


@pytest.mark.django_db
def test_an_unsupported_statement_flags_the_variant_without_failing_it(cast):
    text = (
        "The Trailblazer rain jacket has a waterproof 2.5-layer shell and an adjustable hood, and it packs "
        f"into its own pocket for the trail. {POCKET_CLAIM}"
    )
    job = _run(cast.project, [text], template="product-description")

    variant = job.variants.get()
    statements = _entry(variant.constraint_report, "unsupported_statements")
    assert (statements["passed"], statements["soft"]) == (False, True)
    assert POCKET_CLAIM in statements["claims"]
    assert variant.constraints_passed is True


def _stored_with_grounding(project, text: str, grounding: list[dict]) -> Variant:
    """A job whose prompt had retrieved ``grounding``, its output stored as a worker stores it."""
    version = services.resolve_version(project.organization, "product-description")
    job = GenerationJobFactory(
        project=project, template_version=version, inputs=JACKET, grounding=grounding, status=JobStatus.RUNNING,
        num_variants=1,
    )
    job = GenerationJob.objects.select_related("template_version", "project").get(pk=job.pk)
    result = GenerationResult(text, 10, len(text.split()), FinishReason.EOS, 0.01)
    store_results(job, PromptContext.load(job), [0], [42], [result])
    return Variant.objects.get(job=job, is_current=True)


@pytest.mark.django_db
def test_a_retrieved_chunk_supports_a_price_and_the_claim_names_it(cast):
    grounding = [PRICE_CHUNK]

    variant = _stored_with_grounding(cast.project, "The Trailblazer rain jacket is yours for $89.", grounding)

    (price,) = [c for c in variant.fact_check["claims"] if c["kind"] == "price"]
    assert (price["supported"], price["source"]) == (True, "kc-7")
    assert _entry(variant.constraint_report, "facts")["passed"] is True


@pytest.mark.django_db
def test_an_edit_is_checked_again_and_the_models_fact_check_is_kept(cast, client_for):
    job = _run(cast.project, [INVENTED_PRICES_AD])
    variant = job.variants.get()
    stored = variant.fact_check

    body = client_for(cast.editor).patch(
        f"/api/v1/variants/{variant.pk}/", {"edited_text": HONEST_AD}, format="json"
    ).json()

    assert _entry(body["constraint_report"], "facts")["passed"] is True
    assert _entry(body["original_constraint_report"], "facts")["passed"] is False
    assert body["constraints_passed"] is True
    assert body["fact_check"] == stored


@pytest.mark.django_db
def test_a_withheld_variant_has_no_fact_check(cast):
    services.save_brand_voice(actor=cast.owner, project=cast.project, tone="Warm; ref ACME-CANARY-7f3a9c21")

    job = _run(cast.project, ["Reference 7f3a9c21 costs $25", HONEST_AD])

    withheld = job.variants.get(index=0)
    assert withheld.is_withheld and withheld.fact_check == {}


# --- where it shows -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_exposes_the_fact_check_and_an_outsider_sees_nothing(cast, client_for):
    variant = _run(cast.project, [INVENTED_PRICES_AD]).variants.get()

    body = client_for(cast.viewer).get(f"/api/v1/variants/{variant.pk}/").json()
    listed = client_for(cast.viewer).get(f"/api/v1/variants/?job={variant.job_id}").json()
    outsider = client_for(cast.outsider)

    assert body["fact_check"]["unsupported_hard"] == 2
    assert {c["text"] for c in body["fact_check"]["claims"] if c["kind"] == "price"} == {"$25", "$15"}
    assert listed["results"][0]["fact_check"] == body["fact_check"]
    assert outsider.get(f"/api/v1/variants/{variant.pk}/").status_code == 404
    assert outsider.get(f"/api/v1/variants/?job={variant.job_id}").json().get("results", []) == []


@pytest.mark.django_db
def test_the_variant_card_marks_each_claim_and_shows_its_source_on_hover(cast, client_for):
    grounding = [PRICE_CHUNK]
    variant = _stored_with_grounding(
        cast.project, "The Trailblazer rain jacket is yours for $89, or $79 in the sale.", grounding
    )

    page = client_for(cast.viewer).get(f"/jobs/{variant.job_id}/").content.decode()

    card = re.search(r'<article id="variant-0".*?</article>', page, re.DOTALL).group(0)
    supported = re.search(r'<li class="claim is-supported"[^>]*data-source="kc-7"[^>]*>', card)
    assert supported and 'title="Price list: Trailblazer rain jacket: 89 USD."' in supported.group(0)
    unsupported = re.search(r'<li class="claim is-unsupported"[^>]*>\s*<span class="claim-kind">price</span>\s*'
                            r'<span class="claim-text">\$79</span>', card)
    assert unsupported and "Not in the brief" in unsupported.group(0)
    assert 'data-constraint="facts"' in card and "1 unsupported" in card
    assert client_for(cast.outsider).get(f"/jobs/{variant.job_id}/").status_code == 404


@pytest.mark.django_db
def test_bulk_results_carry_the_fact_counts_of_each_row(cast):
    batch = BulkBatchFactory(project=cast.project, row_errors=[])
    job = GenerationJobFactory(
        project=cast.project, template_version=batch.template_version, batch=batch, batch_line=2,
        status=JobStatus.SUCCEEDED, inputs={"product": "Bulbs"},
    )
    for index, (supported, hard, soft) in enumerate([(2, 1, 0), (3, 0, 2)]):
        counts = {"claims": [], "supported": supported, "unsupported_hard": hard, "unsupported_soft": soft}
        VariantFactory(job=job, index=index, fact_check=counts)

    (row,) = csv.DictReader(io.StringIO(batch_results_csv(batch)))

    assert (row["facts_supported"], row["facts_unsupported"], row["facts_flagged"]) == ("5", "1", "2")


@pytest.mark.django_db
def test_campaign_results_carry_the_fact_counts(cast, client_for):
    recipient = CampaignRecipientFactory(
        campaign__project=cast.project, error="", items=[{"sku": "A", "title": "Blue Mug", "score": 1, "reason": ""}]
    )
    counts = {"claims": [], "supported": 2, "unsupported_hard": 1, "unsupported_soft": 3}
    variant = VariantFactory(job__project=cast.project, index=0, text="Blue Mug for $9.", fact_check=counts)
    recipient.job = variant.job
    recipient.save(update_fields=["job"])

    rows = list(csv.DictReader(io.StringIO(results.results_csv(recipient.campaign))))
    api = client_for(cast.viewer).get(f"/api/v1/campaigns/{recipient.campaign_id}/recipients/").json()

    assert (rows[0]["facts_supported"], rows[0]["facts_unsupported"], rows[0]["facts_flagged"]) == ("2", "1", "3")
    (row,) = api["results"]
    assert (row["facts_supported"], row["facts_unsupported"], row["facts_flagged"]) == (2, 1, 3)
    assert client_for(cast.outsider).get(f"/api/v1/campaigns/{recipient.campaign_id}/recipients/").status_code == 404


def test_the_held_out_set_meets_the_issues_recall_and_precision_goals():
    # Imported here: the benchmark module loads the generation engine, which no other test here needs.
    from bench.grounding import factcheck_scores, load_cases

    cases = load_cases()
    precision, recall, _flags, planted = factcheck_scores(cases)

    assert len(cases) >= 50 and planted >= 150
    assert recall >= 0.9 and precision >= 0.8, (recall, precision)
