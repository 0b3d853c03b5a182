"""Fact check of generated copy: which of its claims the brief or the retrieved knowledge supports.

A claim is something a reader could check: a price, a percentage, a measurement,
a number, a date, a product name, or a feature statement ("is waterproof",
"includes two batteries"). Each is marked supported, with what supports it
(``"brief"``, the job's own inputs, or the id of a retrieved knowledge chunk from
``GenerationJob.grounding``), or unsupported.

* **Numeric claims** (prices, percentages, measurements, numbers, dates) match by
  normalized value: "$25", "25 USD" and "25.00" in a price field are one price;
  "30%" and "30 percent" one percentage. Quantities come from ``quantulum3`` (units,
  currencies, spelled-out numbers and ranges), on the copy and on every source alike,
  so its few odd readings ("4K" as kelvin) are read the same way on both sides. A
  number without a unit in a source ("price: 25.00", "battery: 10000") supports a
  claim of that value in any unit. Unit conversions are out of scope: a source that
  says "0.5 l" does not support "500 ml". These are **hard** claims: an unsupported
  one fails the variant's ``facts`` check (prices and specs are what a reader acts
  on), except small counts (whole numbers up to ``SMALL_COUNT``: "3 reasons", "2-in-1", "two
  spark plugs"), which copy uses as rhetoric as often as as specs.
* **Product names** (capitalized runs of words in ordinary sentences, model codes
  like "X200") and **feature statements** (sentences with a factual verb) are
  **soft**: flagged, never failing. A statement is supported when a source sentence
  says nearly the same (MiniLM embeddings, ``FEATURE_SIMILARITY``) or shares most
  of its content words (``FEATURE_OVERLAP``).

Names and statements are found by hand-written patterns: a tagger or entity recognizer (spaCy) needs
model weights that no package of the index ships, and copy's names and factual verbs are few.

Pure functions: no database, no model of their own (the caller passes ``embed``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import dateparser
from quantulum3 import classifier as quantity_classifier
from quantulum3 import parser as quantity_parser

# quantulum3's optional unit classifier is a pickle of an older scikit-learn that the installed one
# cannot load (parsing then raises). Its rules alone read copy and sources alike, which is all a
# comparison of the two needs.
quantity_classifier.USE_CLF = False

#: The source of a claim the job's own inputs support.
BRIEF = "brief"
#: Whole numbers up to this, without a unit, are soft claims ("3 reasons", "Top 5", "2-in-1").
SMALL_COUNT = 10
#: Cosine similarity (all-MiniLM-L6-v2) from which a source sentence supports a feature statement.
#: Calibrated on tests/generation/data/fact_check_features.json: paraphrases of a fact sheet's line
#: score 0.62-0.78, statements a fact sheet does not make (a pocket "protects from rain and snow"
#: when the sheet names a waterproof shell) 0.16-0.56.
FEATURE_SIMILARITY = 0.58
#: Share of a statement's content words found in one source that supports it without embeddings.
FEATURE_OVERLAP = 0.75
#: Claims kept per variant: a page of copy has a few dozen; more is a list of specs, shown in part.
MAX_CLAIMS = 60
#: Characters of a source sentence kept as a claim's evidence (the card's hover).
EVIDENCE_CHARS = 240

HARD_KINDS = frozenset({"price", "percentage", "measurement", "number", "date"})

Embed = Callable[[list[str]], Any]

# --- text helpers -------------------------------------------------------------------------------

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
# Dates are found by pattern and read by dateparser: its own search (search_dates) also reads
# "today", "now" and "Friday" as dates, which copy is full of and which claim nothing checkable.
_DATE_PATTERNS = (
    ("day", re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+\d{{4}}\b", re.IGNORECASE)),
    ("day", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}\b", re.IGNORECASE)),
    ("day", re.compile(r"\b\d{4}-\d{2}-\d{2}\b")),
    ("day", re.compile(r"\b\d{1,2}/\d{1,2}/\d{4}\b")),
    ("month", re.compile(rf"\b{_MONTH}\s+\d{{4}}\b", re.IGNORECASE)),
    ("monthday", re.compile(rf"\b{_MONTH}\s+{_DAY}\b", re.IGNORECASE)),
    ("monthday", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?!\w)", re.IGNORECASE)),
)
_YEAR = re.compile(r"^(?:19|20)\d\d$")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
#: "1. " or "2) " opening a line (a list), "Headline 1:" (a field label): numbering, not claims.
_NUMBERING = (
    re.compile(r"^([^\S\n]*[-*]?[^\S\n]*)(\d{1,2})[.)](?=\s)", re.MULTILINE),
    re.compile(r"^([^\S\n]*[-*#>_]*[^\S\n]*[A-Za-z][A-Za-z ]{0,30}?[^\S\n]*)(\d{1,2})(?=[^\S\n]*[*_]*:)", re.MULTILINE),
)
#: "[K1]": the label of a retrieved chunk the copy cites (generation.prompts.facts_instructions), no claim.
_CITATION = re.compile(r"\s?\[[A-Z]{1,3}\d{1,3}\]")
_CURRENCY_MARK = re.compile(r"[$€£¥₹₩₽₺฿₫₪]|[A-Za-z]{2,}")
_BOUNDARY = re.compile(r"[.!?](?=\s|$)|\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+|\n+")  # noqa: RUF001 (closing quotes end sentences too)
_LABEL = re.compile(r"^[\s>#*_-]*[A-Za-z][\w ]{0,30}?\s*\d*\s*[*_]*:[*_\s]*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*|\d+(?:[.,]\d+)*")  # noqa: RUF001
_CAPITALIZED = re.compile(r"^(?:[A-Z][a-z]*[A-Z0-9][\w-]*|[A-Z][\w’'-]*|[A-Z]*\d+[A-Z][\w-]*)$")  # noqa: RUF001
_MODEL_CODE = re.compile(r"\b(?=[A-Za-z-]*\d)(?=[\w-]*[A-Z])[A-Z][A-Za-z]*-?\d+[A-Za-z0-9]*\b")
_FACTUAL = re.compile(
    r"\b(?:includ(?:es?|ing)|comes? with|features?|made (?:of|from|with|in)|built (?:with|from|in|to)|"
    r"crafted (?:from|with)|lined with|filled with|equipped with|powered by|backed by|lasts?|provides?|"
    r"protects?|offers?|delivers?|charges?|weighs?|holds?|fits?|supports?|contains?|resists?|repels?|"
    r"blocks?|withstands?|guarantee[sd]?|certified|patented|award-winning|clinically|proven|"
    r"(?:is|are|remains?)\s+(?:\w+\s+){0,2}?(?:waterproof|water-resistant|windproof|"
    r"breathable|dishwasher[- ]safe|machine[- ]washable|compatible|organic|recycled|vegan|handmade|"
    r"biodegradable|rechargeable|wireless|insulated|adjustable)|keeps? (?:you|it|them) (?:\w+\s+)?(?:dry|warm|cool))\b",
    re.IGNORECASE,
)
_STOP = frozenset(
    """a an the and or but of to in on for with from by at as is are was were be been it its this that these
    those your you our we they their them his her he she i my me us so very more most all any each every no not
    just also only than then there here what which who whom how when where why can will would should could may
    might must do does did has have had into out up down over under about after before while through all-day
    new now get gets make makes keep keeps let lets one ones""".split()
)
_NAME_STOP = frozenset(
    """I A An The This That These Those Our Your We You It Its Meet Introducing Discover Shop Get Try Buy Enjoy
    Stay Say Make Take Keep Find Give Explore Experience Order Save Free New Now Limited Only Why How What
    When Where Who Headline Description Subject Call Learn Join Ready Perfect Plus And Or But With For""".split()
)
_MONTH_NAMES = re.compile(rf"^{_MONTH}$|^(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day$", re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """Sentences and lines of a text, without "Label:" prefixes.

    Hand-written rather than a segmenter (pysbd): copy is short lines and sentences, its decimals
    ("4.8", "$1.5") have no space after the dot, and a field label is a line of its own kind.
    """
    out = []
    for part in _SENTENCE_END.split(text):
        part = _LABEL.sub("", part.strip()) if _LABEL.match(part.strip()) else part.strip()
        if part:
            out.append(part)
    return out


def _stem(word: str) -> str:
    word = word.casefold().replace("’", "'")  # noqa: RUF001
    for suffix in ("'s", "ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text) if w.casefold() not in _STOP and len(w) > 1}


def _mask(text: str, pattern: re.Pattern[str]) -> str:
    """The text with the pattern's last group blanked, same length (offsets stay valid)."""
    return pattern.sub(lambda m: m.group(1) + " " * len(m.group(2)), text)


def _canonical(number: str) -> str:
    """'1,000' -> '1000', '25.00' -> '25', '19,99' -> '19.99'."""
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", number):
        number = number.replace(",", "")
    elif re.fullmatch(r"\d+,\d{1,2}", number):
        number = number.replace(",", ".")
    else:
        number = number.replace(",", "")
    try:
        value = Decimal(number)
    except InvalidOperation:
        return number
    return format(value.normalize(), "f") if value == value.to_integral() else str(value.normalize())


def _canonical_float(value: float) -> str:
    return _canonical(repr(round(value, 6)))


# --- numeric claims -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantity:
    """One number the text states: its unit key (a currency code, a unit name, or "" for none)."""

    surface: str
    start: int
    end: int
    kind: str
    unit: str
    numbers: tuple[str, ...]
    #: The unit's first factor: quantulum3 reads "8 mm drop" as millimetre-drops, which "8 mm" supports.
    head: str = ""

    @property
    def value(self) -> str:
        joined = "\u2013".join(self.numbers)  # a range reads 19-29 with an en dash
        if self.kind == "date" or not self.unit:
            return joined
        return f"{joined}%" if self.unit == "percentage" else f"{joined} {self.unit}"


_warm_lock = threading.Lock()
_warm = False


_LONG_DIGITS = re.compile(r"\d{25,}")


#: Characters quantulum3 reads at once: its cost grows faster than the text (a 19,000-character edit full
#: of numbers took 100 s whole), so long texts are read sentence by sentence in pieces of about this size.
PIECE_CHARS = 400
_SENTENCE = re.compile(r"[^.!?\n]*(?:[.!?\n]+|$)")


def _parse_pieces(text: str) -> list[Any]:
    """``_parse_quantities`` over pieces of whole sentences (a longer sentence is cut), spans in ``text``."""
    found: list[Any] = []
    start = 0
    while start < len(text):
        end = start
        for match in _SENTENCE.finditer(text, start):
            if match.end() - start > PIECE_CHARS or match.end() == match.start():
                break
            end = match.end()
        end = end if end > start else min(start + PIECE_CHARS, len(text))
        for q in _parse_quantities(text[start:end]):
            q.span = (q.span[0] + start, q.span[1] + start)
            found.append(q)
        start = end
    return found


def _parse_quantities(text: str) -> list[Any]:
    global _warm
    if not _warm:
        # quantulum3 builds its unit tables on first use (~4 s): once, not in every job's thread at once.
        with _warm_lock:
            if not _warm:
                quantity_parser.parse("1 kg")
                _warm = True
    try:
        return list(quantity_parser.parse(text))
    except Exception:  # a parser bug on odd input must not fail a job; its numbers go unread
        return []


def _dates(text: str) -> list[Quantity]:
    found: list[Quantity] = []
    taken: list[tuple[int, int]] = []
    for granularity, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            if any(match.start() < end and start < match.end() for start, end in taken):
                continue
            value = _date_value(match.group(0), granularity)
            if value:
                taken.append(match.span())
                found.append(Quantity(match.group(0), *match.span(), "date", "", (value,)))
    return found


def _date_value(surface: str, granularity: str) -> str | None:
    parsed = dateparser.parse(
        re.sub(r"(?<=\d)(st|nd|rd|th)\b|\bof\b", "", surface), languages=["en"],
        settings={"PREFER_DAY_OF_MONTH": "first", "DATE_ORDER": "MDY", "REQUIRE_PARTS": ["month"]},
    )
    if parsed is None:
        return None
    if granularity == "monthday":
        return f"--{parsed:%m-%d}"
    return f"{parsed:%Y-%m}" if granularity == "month" else f"{parsed:%Y-%m-%d}"


def quantities(text: str) -> list[Quantity]:
    """The numbers, prices, percentages, measurements and dates a text states, in order."""
    masked = text
    for pattern in _NUMBERING:
        masked = _mask(masked, pattern)
    dates = _dates(masked)
    out = list(dates)
    # quantulum3's spelled-out-number regex backtracks without end on a long run of digits (a 20,000-digit
    # edit took minutes): no claim has more than 24 digits, the rest is blanked, positions kept.
    bounded = _LONG_DIGITS.sub(lambda m: m.group(0)[:24] + " " * (len(m.group(0)) - 24), masked)
    for q in _parse_pieces(bounded):
        start, end = q.span
        if any(start < d.end and d.start < end for d in dates):
            continue
        surface = q.surface
        literal = tuple(_canonical(n) for n in _NUMBER.findall(surface))
        if len(literal) == 1 and q.value < 0:  # "-2°C": the sign is the parser's, not the digits'
            literal = (f"-{literal[0]}",)
        numbers = literal or (_canonical_float(q.value),)
        entity, unit = q.unit.entity.name, q.unit.name
        if entity == "currency" and _CURRENCY_MARK.search(re.sub(r"[\d.,\s]", "", surface) or "") and (
            code := getattr(q.unit, "currency_code", None)
        ):
            kind, key = "price", code
        elif unit == "percentage":
            kind, key = "percentage", "percentage"
        elif entity == "dimensionless":
            if len(numbers) == 1 and _YEAR.match(surface.strip()):
                out.append(Quantity(surface, start, end, "date", "", (numbers[0],)))
                continue
            kind, key = "number", ""
        else:
            kind, key = "measurement", unit
        out.append(Quantity(surface, start, end, kind, key, numbers, _head(q.unit) if kind == "measurement" else key))
    return sorted(out, key=lambda q: q.start)


def _head(unit: Any) -> str:
    """A unit's name, or its first factor when quantulum3 joined the next word on ("8 mm drop" read as
    millimetre-drops, "1.3 litres at" as litre-ampere-turns): what a plain "8 mm" supports. A rate
    ("km/h": a negative power) keeps its whole name."""
    dimensions = getattr(unit, "dimensions", None) or []
    if len(dimensions) > 1 and all(d.get("power", 1) > 0 for d in dimensions):
        return str(dimensions[0].get("base", unit.name))
    return str(unit.name)


def _is_small_count(q: Quantity) -> bool:
    """A bare whole number up to ``SMALL_COUNT``, or a measurement spelled out in words ("two spark
    plugs", "one day"): copy's rhetoric more often than a spec. Prices and percentages are never small."""
    spelled = not any(c.isdigit() for c in q.surface)
    if (q.kind != "number" and not (spelled and q.kind == "measurement")) or len(q.numbers) != 1:
        return False
    try:
        value = Decimal(q.numbers[0])
    except InvalidOperation:
        return False
    return value == value.to_integral() and 0 <= value <= SMALL_COUNT


# --- sources ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A text claims may rest on: the brief (``BRIEF``) or a retrieved chunk (its id)."""

    id: str
    text: str


def sources_for(
    inputs: dict[str, Any] | None, grounding: Iterable[dict[str, Any]] | None, template_text: str = ""
) -> list[Source]:
    """The brief (the job's input values, and ``template_text``) first, then each retrieved chunk of
    ``GenerationJob.grounding``."""
    values = [str(v) for v in (inputs or {}).values() if v not in (None, "") and not isinstance(v, bool)]
    brief = "\n".join([*values, template_text] if template_text.strip() else values)
    out = [Source(BRIEF, brief)] if brief.strip() else []
    for chunk in grounding or []:
        if isinstance(chunk, dict) and str(chunk.get("text") or "").strip():
            out.append(Source(str(chunk.get("id", "")), str(chunk["text"])))
    return out


def job_sources(job: Any) -> list[Source]:
    """What a generation job's copy may claim: its inputs, the knowledge retrieved into its prompt, and
    the prompts of an organization's own template, which may state facts ("free shipping over $50");
    a built-in template's prompts only state formats ("at most 30 characters"), which support nothing."""
    version = job.template_version
    template_text = "" if version.template.is_builtin else f"{version.system_prompt}\n{version.prompt}"
    return sources_for(job.inputs, job.grounding, template_text)


def _fragments(text: str) -> list[str]:
    """A source's sentences, and a list's items ("waterproof, breathable, two pockets") one by one."""
    out = []
    for sentence in sentences(text):
        out.append(sentence)
        parts = [p.strip() for p in re.split(r"[;,•|]", sentence) if p.strip()]
        if len(parts) > 1:
            out += parts
    return out


@dataclass
class Evidence:
    """The sources of one job, read once for all its variants."""

    sources: list[Source]
    embed: Embed | None = None
    quantities: list[tuple[Source, Quantity]] = field(default_factory=list)
    fragments: list[tuple[Source, str]] = field(default_factory=list)
    words: list[tuple[Source, str, set[str]]] = field(default_factory=list)
    _vectors: Any = None

    @classmethod
    def read(cls, sources: Sequence[Source], embed: Embed | None = None) -> Evidence:
        evidence = cls(list(sources), embed)
        for source in sources:
            evidence.quantities += [(source, q) for q in quantities(source.text)]
            for fragment in _fragments(source.text):
                evidence.fragments.append((source, fragment))
                evidence.words.append((source, fragment, content_words(fragment)))
        return evidence

    def vectors(self) -> Any:
        if self._vectors is None and self.embed is not None and self.fragments:
            self._vectors = self.embed([fragment for _, fragment in self.fragments])
        return self._vectors

    def support_quantity(self, claim: Quantity) -> tuple[Source, str] | None:
        """The first source (the brief before chunks) stating the claim's value in a compatible unit."""
        for number in claim.numbers:
            if not any(self._states(q, claim, number) for _, q in self.quantities):
                return None
        for source, q in self.quantities:
            if any(self._states(q, claim, number) for number in claim.numbers):
                return source, _around(source.text, q.start, q.end)
        return None

    @staticmethod
    def _states(q: Quantity, claim: Quantity, number: str) -> bool:
        if claim.kind == "date":
            if q.kind != "date":
                return False
            value = q.numbers[0]
            if number.startswith("--"):
                return value.endswith(number[1:]) or value == number
            return value.startswith(number) or (q.surface.strip() == number)
        if number not in q.numbers:
            return False
        # A bare number supports any unit ("price: 25" supports "$25"); units otherwise match by their
        # first factor ("8 mm" and "8 mm drop"), with no conversions ("0.5 l" is not "500 ml").
        return q.head == claim.head or q.kind == "number" or claim.kind == "number"

    def support_name(self, name: str) -> tuple[Source, str] | None:
        """The first source naming it, or every word of it ("Trailblazer Jacket" in "Trailblazer rain jacket")."""
        folded = name.casefold()
        words = set(re.findall(r"\w+", folded))
        for source in self.sources:
            text = source.text.casefold()
            at = text.find(folded)
            if at >= 0:
                return source, _around(source.text, at, at + len(name))
            if words <= set(re.findall(r"\w+", text)):
                at = text.find(next(iter(sorted(words, key=len, reverse=True))))
                return source, _around(source.text, at, at + 1)
        return None


def _around(text: str, start: int, end: int) -> str:
    """The source sentence holding [start, end), shortened for a hover."""
    ends = [m.start() for m in _BOUNDARY.finditer(text)]
    left = max((i for i in ends if i < start), default=-1)
    right = min((i for i in ends if i >= end), default=len(text))
    sentence = text[left + 1 : right + 1].strip()
    if len(sentence) > EVIDENCE_CHARS:
        half = EVIDENCE_CHARS // 2
        middle = (start + end) // 2 - (left + 1)
        sentence = "…" + sentence[max(0, middle - half) : middle + half].strip() + "…"
    return sentence


# --- names and statements -----------------------------------------------------------------------


def product_names(text: str) -> list[str]:
    """Capitalized runs of two or more words inside ordinary sentences, and model codes ("X200").

    Title-case lines (an ad's headline) capitalize every word and name nothing by it: skipped.
    """
    names: list[str] = []
    for sentence in sentences(text):
        tokens = re.findall(r"[\w’'-]+", sentence)  # noqa: RUF001
        words = [t for t in tokens if t[0].isalpha()]
        if not words or sum(1 for w in words if w[0].isupper()) / len(words) > 0.6:
            names += [m.group(0) for m in _MODEL_CODE.finditer(sentence)]
            continue
        run: list[str] = []
        for token in [*tokens, ""]:
            if token and _CAPITALIZED.match(token) and not _MONTH_NAMES.match(token):
                run.append(token)
                continue
            while run and run[0] in _NAME_STOP:
                run.pop(0)
            if len(run) >= 2 or (run and re.search(r"\d", run[0]) and re.search(r"[A-Za-z]", run[0])):
                names.append(" ".join(run))
            run = []
    seen: set[str] = set()
    return [n for n in names if not (n.casefold() in seen or seen.add(n.casefold()))]


def feature_statements(text: str) -> list[str]:
    return [s for s in sentences(text) if _FACTUAL.search(s)]


def support_statements(statements: list[str], evidence: Evidence) -> list[tuple[Source, str] | None]:
    found: list[tuple[Source, str] | None] = [None] * len(statements)
    for i, statement in enumerate(statements):
        words = content_words(statement)
        if not words:
            continue
        best = max(
            (
                (len(words & source_words) / len(words), source, fragment)
                for source, fragment, source_words in evidence.words
            ),
            default=None, key=lambda item: item[0],
        )
        if best and best[0] >= FEATURE_OVERLAP:
            found[i] = (best[1], best[2])
    pending = [i for i, f in enumerate(found) if f is None]
    references = evidence.vectors() if pending else None
    if references is not None:
        claims = evidence.embed([statements[i] for i in pending])  # type: ignore[misc]
        similarity = (claims @ references.T).tolist()
        for row, i in enumerate(pending):
            best_at = max(range(len(similarity[row])), key=similarity[row].__getitem__)
            if similarity[row][best_at] >= FEATURE_SIMILARITY:
                found[i] = evidence.fragments[best_at]
    return found


# --- the check ----------------------------------------------------------------------------------


def _claim(text: str, kind: str, value: Any, support: tuple[Source, str] | None, hard: bool) -> dict[str, Any]:
    return {
        "text": text,
        "kind": kind,
        "value": value,
        "supported": support is not None,
        "source": support[0].id if support else None,
        "evidence": support[1] if support else "",
        "hard": hard,
    }


def fact_check(text: str, evidence: Evidence) -> dict[str, Any]:
    """``{"claims": [...], "supported": n, "unsupported_hard": n, "unsupported_soft": n}`` of one text."""
    text = _CITATION.sub("", text)
    claims = []
    seen: set[tuple[str, str]] = set()
    for q in quantities(text):
        if (q.kind, q.value) in seen:  # "$25" twice is one claim
            continue
        seen.add((q.kind, q.value))
        hard = q.kind in HARD_KINDS and not _is_small_count(q)
        claims.append(_claim(q.surface.strip(), q.kind, q.value, evidence.support_quantity(q), hard))
    for name in product_names(text):
        claims.append(_claim(name, "product", name, evidence.support_name(name), False))
    statements = feature_statements(text)
    for statement, support in zip(statements, support_statements(statements, evidence), strict=True):
        claims.append(_claim(statement, "feature", None, support, False))
    claims = claims[:MAX_CLAIMS]
    return summarize(claims)


def summarize(claims: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "claims": claims,
        "supported": sum(1 for c in claims if c["supported"]),
        "unsupported_hard": sum(1 for c in claims if not c["supported"] and c["hard"]),
        "unsupported_soft": sum(1 for c in claims if not c["supported"] and not c["hard"]),
    }


def fact_check_all(texts: Sequence[str], sources: Sequence[Source], embed: Embed | None = None) -> list[dict[str, Any]]:
    """The fact check of each text against the same sources (read and embedded once)."""
    evidence = Evidence.read(sources, embed)
    return [fact_check(text, evidence) if text else summarize([]) for text in texts]


# --- constraint report --------------------------------------------------------------------------

#: The constraint report's entries of a fact check (generation.constraints): ``facts`` fails a variant
#: with unsupported numeric claims; ``unsupported_statements`` is soft (``passed`` ignores it).
FACTS = "facts"
STATEMENTS = "unsupported_statements"


def report_entries(result: dict[str, Any]) -> list[dict[str, Any]]:
    if not result:
        return []
    hard = [c["text"] for c in result.get("claims", []) if c["hard"] and not c["supported"]]
    soft = [c["text"] for c in result.get("claims", []) if not c["hard"] and not c["supported"]]
    return [
        {"constraint": FACTS, "expected": 0, "actual": len(hard), "passed": not hard, "claims": hard},
        {"constraint": STATEMENTS, "expected": 0, "actual": len(soft), "passed": not soft, "soft": True,
         "claims": soft},
    ]
