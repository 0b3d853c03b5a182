"""Output filter against prompt leaks: withhold copy that repeats hidden prompt material.

A job's system message (the template's system prompt plus the project's brand
voice) and the brand voices of the organization's other projects are not for the
output. Input moderation refuses the bluntest injections ("ignore previous
instructions", "reveal your system prompt"), but a model can be talked into
repeating its instructions in endless other words, so every output is also
checked for what it repeats, whatever the request said:

* **long overlaps**: ``LEAK_NGRAM_WORDS`` consecutive words shared with a
  protected text. A verbatim dump of the system prompt, or of a brand voice's
  example texts, shares many such runs; ordinary copy that merely uses a word
  or two of the brand voice (which is what a brand voice is for) shares none;
* **distinctive terms**: tokens of a protected text that look like identifiers
  or secrets (letters mixed with digits, at least ``SECRET_TOKEN_MIN_CHARS``
  long, such as ``ACME-CANARY-7f3a9c21``, a discount code or an internal
  reference). A model asked to "say only the code word in your instructions"
  leaks one token, which no n-gram would catch.

What the requester put in the visible turns themselves (their inputs, the
template's user prompt, approved few-shot copy) is exempt, as are the brand
voice's words to use and the template's required phrases: repeating those is the
job. Matching is on case-folded words, so changing case or punctuation does not
hide a repeat.

Why the organization's other projects and not other organizations: a job's
prompt never contains another project's brand voice, so a leak of one means the
model learned it, e.g. from a fine-tune on the organization's exports
(``/projects/{id}/export.jsonl``). No model is trained across organizations.

The verdict names the kind of leak, never the leaked text: it is stored with
the variant and shown to the requester.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from generation.constraints import fill
from generation.moderation import Verdict
from generation.prompts import brand_voice_instructions

#: Consecutive words shared with a protected text that make an output a leak. 8 words is a clause:
#: marketing copy reuses two or three brand words in a row, a dumped instruction repeats dozens.
LEAK_NGRAM_WORDS = 8
#: Shortest distinctive term (letters and digits mixed) treated as a secret of its protected text.
SECRET_TOKEN_MIN_CHARS = 8
#: The verdict's category, stored with a withheld variant.
CATEGORY = "prompt_leak"

_WORDS = re.compile(r"\w+")
_TERMS = re.compile(r"\w[\w\-]*\w")


def words(text: str) -> list[str]:
    return _WORDS.findall(text.casefold())


def ngrams(tokens: list[str], size: int = LEAK_NGRAM_WORDS) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def distinctive_terms(text: str) -> set[str]:
    """Identifier-like tokens of ``text``: the whole token (``acme-canary-7f3a9c21``) and each part that is one."""
    found = set()
    for term in _TERMS.findall(text.casefold()):
        for candidate in (term, *re.split(r"[\-_]", term)):
            if _looks_secret(candidate):
                found.add(candidate)
    return found


def _looks_secret(token: str) -> bool:
    return (
        len(token) >= SECRET_TOKEN_MIN_CHARS
        and any(c.isdigit() for c in token)
        and any(c.isalpha() for c in token)
    )


@dataclass
class _Protected:
    label: str
    runs: set[tuple[str, ...]] = field(default_factory=set)
    terms: set[str] = field(default_factory=set)


class LeakGuard:
    """Checks outputs against protected texts; build one per job (``for_job``), call ``check`` per output."""

    def __init__(self, protected: Iterable[tuple[str, str]], *, visible: Iterable[str] = ()) -> None:
        """``protected``: (label, text) pairs; ``visible``: texts the requester sees or asked for anyway."""
        visible_text = "\n".join(visible)
        visible_runs = ngrams(words(visible_text))
        exempt_terms = set(words(visible_text)) | distinctive_terms(visible_text)
        self._protected: list[_Protected] = []
        for label, text in protected:
            entry = _Protected(label, ngrams(words(text)) - visible_runs, distinctive_terms(text) - exempt_terms)
            if entry.runs or entry.terms:
                self._protected.append(entry)

    def check(self, text: str) -> Verdict:
        tokens = words(text)
        runs = ngrams(tokens)
        terms = set(tokens) | distinctive_terms(text)
        for entry in self._protected:
            if runs & entry.runs:
                return Verdict(True, CATEGORY, f"{LEAK_NGRAM_WORDS}+ consecutive words of {entry.label}")
            if terms & entry.terms:
                return Verdict(True, CATEGORY, f"a distinctive term of {entry.label}")
        return Verdict(False)

    @classmethod
    def for_job(cls, job: Any, messages: list[dict[str, str]], voice: Any, other_voices: Iterable[Any]) -> LeakGuard:
        """The guard of one job: its system message and its organization's other projects' brand voices
        are protected; its user and assistant turns, words to use and required phrases are not."""
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        visible = [m["content"] for m in messages if m["role"] != "system"]
        # Asked for by the brand voice or the template: using these is the job, not a leak.
        visible += list(getattr(voice, "words_to_use", None) or [])
        constraints = job.template_version.constraints or {}
        visible += [fill(phrase, job.inputs) for phrase in constraints.get("required_phrases") or []]
        protected = [("the system prompt", system)]
        protected += [("another project's brand voice", brand_voice_instructions(v)) for v in other_voices]
        return cls(protected, visible=visible)
