"""Hard constraints with and without enforcement while decoding, on the bundled model in process.

    python -m bench.constraints [--variants 40] [--slugs google-ads,meta-ad,...] [--batch 16]

For each constrained built-in template (``generation.grammar.output_constraint`` gives it a
constraint), ``variants`` variants are generated in batches of ``batch`` rows, once free and once
with the constraint enforced (``workers.grammar``: xgrammar token masks, banned phrases dropped
from the sampler's candidates), and checked as a stored variant is (``generation.constraints``).
A variant passes when every hard entry of its report passes: required phrases are a soft goal, left
out. Throughput is generated tokens per second of the same batches; the grammars are compiled
before timing (once per process in a worker). The last lines are ``constraint_pass_rate_free``,
``constraint_pass_rate`` (enforced) and ``constraint_throughput_cost`` (the share of enforced decode time
spent in the constraint code: masks, matchers, bans).
``pass_rate`` is what ``bench.serving`` calls.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import srcroot  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django

django.setup()

from generation.constraints import check  # noqa: E402
from generation.grammar import output_constraint  # noqa: E402
from generation.library import BUILTIN_TEMPLATES, COPYWRITER  # noqa: E402
from generation.models import TemplateVersion  # noqa: E402
from generation.prompts import build_messages  # noqa: E402
from workers.contract import GenerationRequest  # noqa: E402
from workers.engine import generate_batch, token_masks  # noqa: E402
from workers.grammar import RowConstraint  # noqa: E402
from workers.runtime import BUNDLED_MODEL, LoadedModel, ModelSpec, get_model  # noqa: E402

#: Report entries that are goals rather than limits (the issue: "soft goals ... stay checks").
SOFT = frozenset({"required_phrase"})
#: Inputs cycled through the variants: every template's variables get a value from one of these.
SUBJECTS = [
    {"product": "Merino hiking socks", "features": "warm, no itch, cushioned heel", "audience": "hikers",
     "offer": "free shipping", "topic": "our autumn hiking sale", "hashtags": "#hiking #merino",
     "page": "merino hiking socks", "keyword": "merino socks",
     "customer_message": "My socks arrived with a hole. Can I get a new pair?",
     "resolution": "a free replacement pair"},
    {"product": "Oak cutting board", "features": "solid oak, juice groove, oiled", "audience": "home cooks",
     "offer": "10% off this week", "topic": "caring for wooden boards", "hashtags": "#kitchen #oak",
     "page": "oak cutting boards", "keyword": "oak cutting board",
     "customer_message": "The board cracked after a month. What can you do?", "resolution": "a refund"},
    {"product": "Scented soy candle", "features": "40-hour burn, cotton wick, lavender", "audience": "gift buyers",
     "offer": "buy two get one free", "topic": "cosy evenings at home", "hashtags": "#candles #cosy",
     "page": "lavender soy candles", "keyword": "soy candle",
     "customer_message": "My order is late, where is it?", "resolution": "express shipping at no cost"},
    {"product": "Brass desk lamp", "features": "dimmable, warm light, solid brass", "audience": "remote workers",
     "offer": "free returns", "topic": "a brighter home office", "hashtags": "#homeoffice #design",
     "page": "brass desk lamps", "keyword": "desk lamp",
     "customer_message": "The lamp flickers. Is it broken?", "resolution": "a replacement bulb"},
]


@dataclass
class Tally:
    passed: int = 0
    total: int = 0
    tokens: int = 0
    seconds: float = 0.0
    masking_seconds: float = 0.0  # of ``seconds``: filling and applying masks, advancing matchers
    failures: dict[str, int] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        self.passed += other.passed
        self.total += other.total
        self.tokens += other.tokens
        self.seconds += other.seconds
        self.masking_seconds += other.masking_seconds
        for name, n in other.failures.items():
            self.failures[name] = self.failures.get(name, 0) + n

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


#: The constrained templates whose hard limits a grammar holds: their lines or their total, within a
#: token budget that can reach it. The long posts (LinkedIn, Instagram) and the support reply also have
#: word counts and budgets they run out of first: their misses are the model's, not the grammar's
#: (``--slugs`` measures them too).
SHAPED = ("google-ads", "meta-ad", "seo-meta", "email-subject-lines", "social-x")


def constrained_templates() -> list[dict[str, Any]]:
    return [entry for entry in BUILTIN_TEMPLATES if output_constraint(entry["constraints"], SUBJECTS[0])]


def _version(entry: dict[str, Any]) -> TemplateVersion:
    return TemplateVersion(
        variables=entry["variables"], system_prompt=COPYWRITER, prompt=entry["prompt"],
        constraints=entry["constraints"], default_max_new_tokens=entry["max_new_tokens"],
    )


@contextmanager
def _timed_masking(loaded: LoadedModel) -> Iterator[list[float]]:
    """Seconds spent in the constraint code while decoding (xgrammar masks, matcher steps, bans)."""
    spent = [0.0]
    masks = token_masks(loaded)
    apply, advance = masks.apply, RowConstraint.advance

    def timed_apply(*args: Any) -> None:
        started = time.perf_counter()
        apply(*args)
        spent[0] += time.perf_counter() - started

    def timed_advance(self: RowConstraint, token: int) -> None:
        started = time.perf_counter()
        advance(self, token)
        spent[0] += time.perf_counter() - started

    masks.apply = timed_apply  # type: ignore[method-assign]
    RowConstraint.advance = timed_advance  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        del masks.apply
        RowConstraint.advance = advance  # type: ignore[method-assign]


def run_template(
    loaded: LoadedModel, entry: dict[str, Any], variants: int, *, enforce: bool, batch: int = 16, seed: int = 0
) -> Tally:
    """Generate and check ``variants`` variants of one template; the same seeds with and without enforcement."""
    version, tally = _version(entry), Tally()
    for start in range(0, variants, batch):
        requests, inputs_of = [], []
        for i in range(start, min(start + batch, variants)):
            inputs = SUBJECTS[i % len(SUBJECTS)]
            constraint = output_constraint(version.constraints, inputs) if enforce else None
            if constraint is not None:
                token_masks(loaded).compiled(constraint)  # compiled before the clock starts, as a worker's submit does
            requests.append(GenerationRequest(
                messages=build_messages(version, inputs, None, []), max_new_tokens=version.default_max_new_tokens,
                temperature=0.7, top_p=0.95, seed=seed + i, constraint=constraint,
            ))
            inputs_of.append(inputs)
        started = time.perf_counter()
        with _timed_masking(loaded) as spent:
            results = generate_batch(loaded, requests)
        tally.seconds += time.perf_counter() - started
        tally.masking_seconds += spent[0]
        for result, inputs in zip(results, inputs_of, strict=True):
            report = check(result.text, version.constraints, inputs, finish_reason=result.finish_reason)
            failed = [e["constraint"] for e in report if not e["passed"] and e["constraint"] not in SOFT]
            tally.total += 1
            tally.passed += not failed
            tally.tokens += result.completion_tokens
            for name in failed:
                tally.failures[name] = tally.failures.get(name, 0) + 1
    return tally


def measure(
    variants: int = 40, *, slugs: list[str] | None = None, batch: int = 16, verbose: bool = False
) -> dict[str, Tally]:
    """Free and enforced tallies over the constrained templates (``slugs``: a subset)."""
    loaded = get_model(ModelSpec(model=BUNDLED_MODEL, gguf_file=None, device="cpu", dtype="float32"))
    totals = {"free": Tally(), "enforced": Tally()}
    for entry in constrained_templates():
        if slugs and entry["slug"] not in slugs:
            continue
        for mode in ("free", "enforced"):
            tally = run_template(loaded, entry, variants, enforce=mode == "enforced", batch=batch)
            totals[mode].add(tally)
            if verbose:
                print(
                    f"{entry['slug']:24} {mode:8} pass {tally.passed:3}/{tally.total:<3} "
                    f"{tally.tokens_per_s:6.1f} tok/s  failures {tally.failures}",
                    flush=True,
                )
    return totals


def pass_rate(variants: int = 40, *, slugs: list[str] | None = None) -> float:
    """Share of variants passing their hard constraints, enforced while decoding (default: the ``SHAPED`` templates)."""
    return measure(variants, slugs=slugs or list(SHAPED))["enforced"].rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=40, help="variants per template and mode")
    parser.add_argument(
        "--slugs", default=",".join(SHAPED), help="comma-separated templates ('all': every constrained one)"
    )
    parser.add_argument("--batch", type=int, default=16, help="rows decoded together")
    args = parser.parse_args(argv)
    slugs = None if args.slugs == "all" else [s for s in args.slugs.split(",") if s]
    totals = measure(args.variants, slugs=slugs, batch=args.batch, verbose=True)
    free, enforced = totals["free"], totals["enforced"]
    print(f"free:     {free.passed}/{free.total} pass, {free.tokens_per_s:.1f} tok/s, failures {free.failures}")
    print(f"enforced: {enforced.passed}/{enforced.total} pass, {enforced.tokens_per_s:.1f} tok/s, "
          f"failures {enforced.failures}")
    print(f"constraint_pass_rate_free: {free.rate:.3f}")
    print(f"constraint_pass_rate: {enforced.rate:.3f}")
    # Enforced rows end sooner (no rambling to the token limit), so end-to-end tokens/s also measures
    # shorter batches; the masking share of decode time is the per-token cost itself.
    share = enforced.masking_seconds / enforced.seconds if enforced.seconds else 0.0
    print(f"constraint_masking_ms_per_step_row: {1000 * enforced.masking_seconds / max(enforced.tokens, 1):.3f}")
    print(f"constraint_throughput_cost: {share:.3f}")


if __name__ == "__main__":
    main()
