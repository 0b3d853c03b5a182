"""Grounded copy on the bundled model: invented numbers with and without knowledge, and how well the fact
check catches planted wrong facts.

    python -m bench.grounding [--products 50] [--batch 10] [--max-new-tokens 160] [--free-numbers]

The set is ``tests/data/grounding_eval.json``: 50 invented products, each with a brief that states no
number, a fact sheet (weights, capacities, prices, dates: what a project's knowledge holds), copy
sentences that state the sheet's facts, and copy sentences with planted wrong facts.

* **Generation**: copy for each product (``--template``, a Google ad by default: the issue's invented
  prices were one's), once from the brief alone and once with the
  fact sheet in the prompt as its retrieved knowledge (``generation.prompts.build_messages(facts=...)``,
  the sheet's lines as chunks ``K1``...), on the bundled SmolLM2 in process. Each output is fact-checked
  as a stored variant is, against the brief and the whole sheet in both modes: a number the model made
  up is unsupported either way. ``unsupported_numeric_claims_*`` is the share of variants with at
  least one unsupported numeric claim (a failed ``facts`` check). Retrieval is not exercised here: the
  sheet stands for perfectly retrieved chunks; ``bench.retrieval`` measures retrieval latency.
  Each request carries the constraint a job's would (``generation.grammar.output_constraint``): the
  template's lines and, with knowledge, the numbers of the brief and sheet as the only ones the copy may
  state (``numbers_from_facts``); ``--free-numbers`` leaves numbers free, as before that rule.
* **Fact check**: each product's correct and wrong sentences as one copy, checked against its brief
  and sheet. Recall is the share of planted wrong facts flagged (an unsupported hard claim that is the
  planted one); precision the share of flags that are planted wrong facts.

The last lines::

    unsupported_numeric_claims_with_knowledge: <share of variants>
    factcheck_recall: <share of planted wrong facts flagged>
    factcheck_precision: <share of flags that are real problems>
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import srcroot

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django

django.setup()

from generation import factcheck  # noqa: E402
from generation.grammar import numbers_from_facts, output_constraint  # noqa: E402
from generation.library import BUILTIN_TEMPLATES, COPYWRITER  # noqa: E402
from generation.models import TemplateVersion  # noqa: E402
from generation.prompts import build_messages  # noqa: E402
from workers.contract import GenerationRequest, OutputConstraint  # noqa: E402
from workers.engine import generate_batch  # noqa: E402
from workers.runtime import BUNDLED_MODEL, ModelSpec, get_model  # noqa: E402

DATASET = srcroot.REPO_ROOT / "tests" / "data" / "grounding_eval.json"


def load_cases(path: Path = DATASET) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["cases"]


def chunks_of(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The fact sheet as retrieved knowledge, one chunk a line, as ``GenerationJob.grounding`` keeps it."""
    return [
        {"id": f"sheet-{n}", "label": f"K{n}", "source": f"{case['product']} fact sheet", "text": line, "score": 1.0}
        for n, line in enumerate(case["facts"], start=1)
    ]


def _same(a: str, b: str) -> bool:
    a, b = a.casefold(), b.casefold()
    return a in b or b in a


def factcheck_scores(cases: list[dict[str, Any]], seed: int = 0) -> tuple[float, float, int, int]:
    """(precision, recall, flags, planted) of the fact check on the correct and planted sentences."""
    rng = random.Random(seed)  # noqa: S311 (it orders sentences, it guards nothing)
    flagged_planted = flags = hits = planted = 0
    for case in cases:
        sentences = case["true_copy"] + [p["text"] for p in case["planted"]]
        rng.shuffle(sentences)
        (result,) = factcheck.fact_check_all(
            [" ".join(sentences)], factcheck.sources_for(case["brief"], chunks_of(case))
        )
        unsupported = [c for c in result["claims"] if c["hard"] and not c["supported"]]
        flags += len(unsupported)
        hits += sum(1 for c in unsupported if any(_same(c["text"], p["claim"]) for p in case["planted"]))
        planted += len(case["planted"])
        flagged_planted += sum(1 for p in case["planted"] if any(_same(c["text"], p["claim"]) for c in unsupported))
    return hits / max(flags, 1), flagged_planted / max(planted, 1), flags, planted


def _version(slug: str) -> TemplateVersion:
    entry = next(t for t in BUILTIN_TEMPLATES if t["slug"] == slug)
    return TemplateVersion(
        variables=entry["variables"], system_prompt=COPYWRITER, prompt=entry["prompt"],
        constraints=entry["constraints"], default_max_new_tokens=entry["max_new_tokens"],
    )


def _constraint(
    version: TemplateVersion, case: dict[str, Any], *, with_knowledge: bool, free_numbers: bool
) -> OutputConstraint | None:
    """What a job's request would carry (``generation.execution.requests_for``)."""
    grounding = chunks_of(case) if with_knowledge else []
    sources = None
    if not free_numbers and numbers_from_facts(version.constraints, grounding):
        sources = [source.text for source in factcheck.sources_for(case["brief"], grounding)]
    return output_constraint(version.constraints, case["brief"], sources)


def unsupported_share(
    cases: list[dict[str, Any]], *, with_knowledge: bool, batch: int, max_new_tokens: int, template: str,
    verbose: bool = False, free_numbers: bool = False,
) -> tuple[float, float]:
    """(share of variants with an unsupported numeric claim, generation seconds) on the bundled model."""
    loaded = get_model(ModelSpec(model=BUNDLED_MODEL, gguf_file=None, device="cpu", dtype="float32"))
    version, failing, seconds = _version(template), 0, 0.0
    for start in range(0, len(cases), batch):
        part = cases[start:start + batch]
        requests = [
            GenerationRequest(
                messages=build_messages(
                    version, case["brief"], None, [], facts=chunks_of(case) if with_knowledge else None
                ),
                max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.95, seed=start + i,
                constraint=_constraint(version, case, with_knowledge=with_knowledge, free_numbers=free_numbers),
            )
            for i, case in enumerate(part)
        ]
        started = time.perf_counter()
        results = generate_batch(loaded, requests)
        seconds += time.perf_counter() - started
        for case, result in zip(part, results, strict=True):
            (checked,) = factcheck.fact_check_all(
                [result.text], factcheck.sources_for(case["brief"], chunks_of(case))
            )
            failing += checked["unsupported_hard"] > 0
            if verbose:
                bad = [c["text"] for c in checked["claims"] if c["hard"] and not c["supported"]]
                print(f"{'with' if with_knowledge else 'without':7} {case['product']:28} unsupported {bad}")
                print("   ", " ".join(result.text.split()))
    return failing / max(len(cases), 1), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=50, help="Products of the set to generate for.")
    parser.add_argument("--batch", type=int, default=10, help="Prompts decoded together.")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument(
        "--template", default="google-ads",
        help="Built-in template to write with; the issue's invented prices were a Google ad's.",
    )
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--free-numbers", action="store_true", help="Leave numbers free with knowledge (no numbers_from_facts)."
    )
    args = parser.parse_args(argv)

    cases = load_cases()
    generated = cases[: args.products]
    options = {"batch": args.batch, "max_new_tokens": args.max_new_tokens, "template": args.template,
               "verbose": args.verbose, "free_numbers": args.free_numbers}
    without, seconds_without = unsupported_share(generated, with_knowledge=False, **options)
    with_knowledge, seconds_with = unsupported_share(generated, with_knowledge=True, **options)
    precision, recall, flags, planted = factcheck_scores(cases)
    drop = 1 - with_knowledge / without if without else 0.0
    print(f"products: {len(generated)} generated ({args.template}), {len(cases)} fact-checked")
    print(f"generation_s_without_knowledge: {seconds_without:.1f}")
    print(f"generation_s_with_knowledge: {seconds_with:.1f}")
    print(f"factcheck_flags: {flags} (planted wrong facts: {planted})")
    print(f"unsupported_numeric_claims_without_knowledge: {without:.3f}")
    print(f"unsupported_numeric_claims_drop: {drop:.3f}")
    print(f"unsupported_numeric_claims_with_knowledge: {with_knowledge:.3f}")
    print(f"factcheck_recall: {recall:.3f}")
    print(f"factcheck_precision: {precision:.3f}")


if __name__ == "__main__":
    main()
