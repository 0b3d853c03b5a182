"""Numbers only from the facts: the allowed-number table, the token masks that hold it while decoding,
and what the bundled model writes under it."""

from __future__ import annotations

import re

import pytest

from generation.grammar import output_constraint
from tests.support.models import real_model
from workers import grammar
from workers.contract import FinishReason, GenerationRequest, OutputConstraint
from workers.engine import generate_batch, token_masks
from workers.grammar import AllowedNumbers, numbers_in
from workers.openai_engine import constraint_params

SHEET = ["Trailblazer rain jacket.", "Weight: 516 g.", "Waterproof rating: 29,116 mm.", "Price: 39 USD."]
AD = OutputConstraint(lines=(30, 90), prefixes=("Headline: ", "Description: "))
JACKET = [
    {"role": "system", "content": "You are a marketing copywriter."},
    {
        "role": "user",
        "content": (
            "Facts: the Trailblazer rain jacket weighs 516 g, is rated to 29,116 mm of water and costs 39 USD.\n"
            "Write three sentences of ad copy for it that state its weight, waterproof rating and price."
        ),
    },
]


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"[0-9]+(?:[.,][0-9]+)*", text))


# --- the table -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ("It weighs 516 g and costs $39.", True),
        ("Rated to 29,116 mm, or 29116 mm without the comma.", True),
        ("Only 39, 516 and 29,116.", True),
        ("It costs $49.", False),
        ("It weighs 51 g.", False),  # a prefix of an allowed number is not one
        ("It weighs 5160 g.", False),
        ("It costs 39.99.", False),
        ("Rated to 29.116 mm.", False),  # the other separator makes another number
        ("It ends on 516", True),
    ],
)
def test_only_the_listed_numbers_pass_the_table(text, allowed):
    numbers = AllowedNumbers.of(numbers_in(SHEET))

    run = numbers.feed("", text)

    assert (run is not None and numbers.complete(run)) == allowed


def test_a_number_may_be_written_grouped_or_plain_whichever_the_source_used():
    numbers = AllowedNumbers.of(numbers_in(["Price: 1299 USD, or 19,99 EUR a month, from 02/2025"]))

    assert {"1299", "1,299", "19,99", "19.99", "02", "2", "2025"} <= numbers.forms


# --- the masks -------------------------------------------------------------------------------------


def _allowed_after(masks: grammar.TokenMasks, row: grammar.RowConstraint, text: str) -> set[str]:
    """The digit and full-stop tokens the mask leaves the row after it wrote ``text``; "<end>" for the end."""
    import torch

    for token in _ids(text):
        row.advance(token)
    logits = torch.zeros(1, masks.vocab_size)
    masks.apply(logits, [row])
    watched = {masks.texts.index(c): c for c in "0123456789."} | {t: "<end>" for t in masks.stop_ids}
    return {name for token, name in watched.items() if logits[0, token] > float("-inf")}


def _ids(text: str) -> list[int]:
    return real_model().tokenizer.encode(text, add_special_tokens=False)


def test_the_mask_lets_a_row_write_only_a_listed_numbers_next_digit():
    masks = token_masks(real_model())

    def allowed(text):
        return _allowed_after(masks, masks.row(OutputConstraint(numbers=("39", "516", "29,116"))), text)

    assert allowed("It costs $") == {"2", "3", "5", ".", "<end>"}  # a number's first digit, or no number
    assert allowed("It costs $3") == {"9"}  # inside "39": its next digit, nothing that ends it
    assert allowed("It costs $39") == {".", "<end>"}  # complete: no more digits, anything else ends it
    assert allowed("Rated to 29") == {"1"}  # "29" alone is no number; "29116" is "29,116" written plain
    assert allowed("Rated to 29,") == {"1"}


def test_no_numbers_at_all_leaves_no_digit():
    masks = token_masks(real_model())

    assert _allowed_after(masks, masks.row(OutputConstraint(numbers=())), "It costs $") == {".", "<end>"}


def test_a_grammar_that_ends_a_line_inside_a_number_wins_over_it():
    # "Headline: " then 3 characters at most: "$39" fits, "$291" of "29,116" cannot finish in it
    masks = token_masks(real_model())
    row = masks.row(OutputConstraint(lines=(3,), prefixes=("Headline: ",), numbers=("29,116",)))

    assert _allowed_after(masks, row, "Headline: $29") == {"<end>"}


# --- the bundled model -----------------------------------------------------------------------------


def test_the_bundled_model_states_only_the_facts_numbers_under_the_constraint():
    constraint = output_constraint({}, {"product": "Trailblazer rain jacket"}, SHEET)
    seeds = range(4)
    free = [GenerationRequest(messages=JACKET, max_new_tokens=60, temperature=0.9, top_p=0.95, seed=s) for s in seeds]
    held = [
        GenerationRequest(
            messages=JACKET, max_new_tokens=60, temperature=0.9, top_p=0.95, seed=s, constraint=constraint
        )
        for s in seeds
    ]

    results = generate_batch(real_model(), free + held)

    allowed = AllowedNumbers.of(constraint.numbers).forms
    assert any(_numbers(r.text) - allowed for r in results[:4])  # the model alone garbles the facts' numbers
    for result in results[4:]:
        assert _numbers(result.text) <= allowed, result.text
    assert sum(bool(_numbers(r.text)) for r in results[4:]) >= 2  # it still states the facts' numbers


def test_the_numbers_hold_inside_a_templates_lines():
    constraint = OutputConstraint(lines=AD.lines, prefixes=AD.prefixes, numbers=numbers_in(SHEET))
    ask = JACKET[1]["content"] + "\nFormat:\nHeadline: ...\nDescription: ..."
    messages = [JACKET[0], {"role": "user", "content": ask}]

    results = generate_batch(
        real_model(),
        [
            GenerationRequest(
                messages=messages, max_new_tokens=120, temperature=0.9, top_p=0.95, seed=s, constraint=constraint
            )
            for s in range(2)
        ],
    )

    allowed = AllowedNumbers.of(constraint.numbers).forms
    for result in results:
        assert result.finish_reason == FinishReason.EOS
        assert re.fullmatch(grammar.to_regex(AD), result.text), result.text
        for line, prefix, limit in zip(result.text.split("\n"), AD.prefixes, AD.lines, strict=True):
            body = line[len(prefix):]
            for number in _numbers(body) - allowed:
                # The line's character limit outranks the number rule (workers.grammar): a number may be
                # cut only where the line ends at its limit, and only as the start of an allowed one.
                assert body.endswith(number) and len(body) == limit, result.text
                assert any(form.startswith(number) for form in allowed), result.text


# --- elsewhere -------------------------------------------------------------------------------------


def test_servers_get_no_grammar_for_numbers_the_fact_check_judges_them():
    numbers_only = OutputConstraint(numbers=("39",))

    assert grammar.to_regex(numbers_only) is None and grammar.to_gbnf(numbers_only) is None
    assert constraint_params(numbers_only, "vllm") == {} and constraint_params(numbers_only, "llamacpp") == {}
    assert grammar.to_regex(OutputConstraint(lines=AD.lines, prefixes=AD.prefixes, numbers=("39",))) == (
        grammar.to_regex(AD)
    )


def test_a_label_with_a_number_keeps_it_allowed():
    constraint = output_constraint(
        {"fields": [{"label": "Headline 1", "max_chars": 30}]}, {"product": "jacket"}, ["Price: 39 USD."]
    )

    assert constraint.numbers == ("39", "1")


def test_free_numbers_add_nothing_to_a_templates_constraint():
    assert output_constraint({}, {"product": "jacket"}) is None
    assert output_constraint({}, {"product": "jacket"}, []) == OutputConstraint(numbers=())
