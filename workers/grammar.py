"""Output constraints compiled for each engine, so hard limits hold while decoding.

One ``OutputConstraint`` (``workers.contract``) becomes:

* a regular expression, for vLLM's and SGLang's structured outputs (``to_regex``);
* a GBNF grammar, for llama.cpp (``to_gbnf``);
* per-row token masks in our own engine (``TokenMasks``, ``RowConstraint``): the same regex compiled
  by ``xgrammar`` into a matcher per row, whose bitmask is applied to the logits before sampling; a
  bound on characters alone is kept as a count instead (tokens longer than what is left are masked).

Both texts describe one language: exactly N lines (no blank or extra ones, none before or after),
each a fixed prefix (a field's label) and then 1 to ``limit`` characters, the first of which is not
blank (nor the ``*``/``_`` the checks strip after a label); or, without lines, one text of 1 to
``max_chars`` characters that starts with a non-blank character. Characters are code points, as
Python's ``len`` counts them. When the structure is complete only the end of the text is allowed;
before that the end is not.

Banned phrases (case-insensitive substrings) cannot be written in the regex or GBNF these engines
accept (no negative lookahead); in process they are enforced exactly by ``RowConstraint.ban``: the
sampler only ever draws from the top ``TOP_K`` candidates, and a candidate that would complete a
banned phrase is dropped before drawing. vLLM gets them as ``bad_words`` (token sequences: catches
the usual spellings, not every tokenization or casing); elsewhere they are left to the checks after
decoding.

Allowed numbers (``OutputConstraint.numbers``: copy grounded in a project's facts states no number
they do not give) are enforced in process only, by ``AllowedNumbers`` on each row's digit run: a token
that would write a digit is allowed only while the run stays a prefix of an allowed number, and one that
would end the run only when the run is a whole allowed number. Every maximal run of digits (with ``.``
and ``,`` between them) is then one of the numbers. The set is a regular language, but written into
the line regex with its character limits it would have to list every split of a line between numbers
and other text, so servers (regex, GBNF) leave it to the fact check after decoding.

This module imports no engine at import time: the OpenAI-compatible client needs only the texts,
and a worker without constraints never loads xgrammar.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from workers.contract import OutputConstraint

logger = logging.getLogger(__name__)

#: What ``str.splitlines`` breaks a line at: a line may contain none of them.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
#: What ``str.isspace`` (and so ``re``'s ``\s`` and ``str.strip``) calls blank.
BLANKS = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
#: A labelled line's value may not start with these: the checks strip them after "Label:".
VALUE_STRIPPED = BLANKS + "*_"
#: Candidates the sampler draws from (``workers.engine.TOP_K``): banned phrases are checked on these.
TOP_K = 50


# --- the language, as line limits -----------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """What both compilers write: per line its prefix and character limit, or one free text."""

    prefixes: tuple[str, ...]
    limits: tuple[int, ...]
    max_chars: int  # without lines: the whole text's bound


def shape(constraint: OutputConstraint) -> Shape | None:
    """The constraint's shape, with line limits shrunk to fit ``max_chars``; None when it has none.

    A per-line limit and a total cannot both be written as one regular expression without listing
    every split, so when the lines could exceed the total each line gets its share of it: stricter
    than needed, never looser.
    """
    limits = tuple(max(0, int(n)) for n in constraint.lines)
    if limits:
        prefixes = tuple(constraint.prefixes) if len(constraint.prefixes) == len(limits) else ("",) * len(limits)
        fixed = sum(len(p) for p in prefixes) + len(limits) - 1
        if constraint.max_chars and fixed + sum(limits) > constraint.max_chars:
            room = constraint.max_chars - fixed
            if room < len(limits):
                raise ValueError(f"{len(limits)} lines cannot fit in {constraint.max_chars} characters")
            total = sum(limits)
            limits = tuple(max(1, n * room // total) for n in limits)
            while sum(limits) > room:  # the floor of 1 can overshoot: take from the longest line
                longest = limits.index(max(limits))
                limits = (*limits[:longest], limits[longest] - 1, *limits[longest + 1 :])
        if min(limits) < 1:
            raise ValueError("every line needs room for at least one character")
        return Shape(prefixes, limits, 0)
    if constraint.max_chars > 0:
        return Shape((), (), constraint.max_chars)
    return None


# --- regex (vLLM, SGLang, and our own engine through xgrammar) ------------------------------------

_REGEX_SPECIAL = set("\\.^$|?*+()[]{}/-")


def _rx_char(ch: str) -> str:
    if ch in _REGEX_SPECIAL:
        return "\\" + ch
    if not ch.isprintable() or (ch.isspace() and ch != " "):
        return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else ch
    return ch


def _rx_not(chars: str) -> str:
    """A class of every character but ``chars``, escaped so that Python's ``re`` and xgrammar agree."""
    inside = []
    for ch in sorted(set(chars)):
        if ch in "\\]^-[":
            inside.append("\\" + ch)
        elif not ch.isprintable() or ch.isspace():
            inside.append(f"\\u{ord(ch):04x}")
        else:
            inside.append(ch)
    return "[^" + "".join(inside) + "]"


def to_regex(constraint: OutputConstraint) -> str | None:
    """The whole output as a regular expression (matched in full), or None when nothing is constrained."""
    form = shape(constraint)
    if form is None:
        return None
    if not form.limits:
        return f"{_rx_not(BLANKS)}[\\s\\S]{{0,{form.max_chars - 1}}}"
    lines = []
    for prefix, limit in zip(form.prefixes, form.limits, strict=True):
        first = _rx_not(LINE_BREAKS + (VALUE_STRIPPED if prefix else BLANKS))
        lines.append("".join(_rx_char(c) for c in prefix) + first + _rx_not(LINE_BREAKS) + f"{{0,{limit - 1}}}")
    return "\\n".join(lines)


# --- GBNF (llama.cpp) ------------------------------------------------------------------------------


def _gbnf_char(ch: str) -> str:
    """One character in a GBNF literal or class: printable ASCII as itself, the rest escaped."""
    if " " <= ch <= "~" and ch not in '"\\[]^-':
        return ch
    code = ord(ch)
    return f"\\x{code:02X}" if code < 0x80 else f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def _gbnf_not(chars: str) -> str:
    return "[^" + "".join(_gbnf_char(c) for c in sorted(set(chars))) + "]"


def to_gbnf(constraint: OutputConstraint) -> str | None:
    """The same language as ``to_regex`` in llama.cpp's GBNF (``root`` is the whole output), or None."""
    form = shape(constraint)
    if form is None:
        return None
    rules = {"char": _gbnf_not(LINE_BREAKS), "lead": _gbnf_not(LINE_BREAKS + BLANKS)}
    if not form.limits:
        rules = {"lead": _gbnf_not(BLANKS), "any": "[^\\x00]"}
        root = f"lead any{{0,{form.max_chars - 1}}}"
    else:
        if any(form.prefixes):
            rules["value"] = _gbnf_not(LINE_BREAKS + VALUE_STRIPPED)
        for i, (prefix, limit) in enumerate(zip(form.prefixes, form.limits, strict=True)):
            label = f'"{"".join(_gbnf_char(c) for c in prefix)}" value' if prefix else "lead"
            rules[f"line{i}"] = f"{label} char{{0,{limit - 1}}}"
        root = ' "\\n" '.join(f"line{i}" for i in range(len(form.limits)))
    return "\n".join([f"root ::= {root}", *(f"{name} ::= {body}" for name, body in rules.items())]) + "\n"


def bad_words(constraint: OutputConstraint) -> list[str]:
    """Banned phrases as vLLM's ``bad_words``, in the casings a model usually writes them.

    vLLM bans the token sequences of each word (with and without a leading space): exact for those
    spellings, blind to other casings and tokenizations, which the checks after decoding still catch.
    """
    words: list[str] = []
    for phrase in constraint.banned:
        for form in (phrase, phrase.lower(), phrase[:1].upper() + phrase[1:], phrase.upper()):
            if form.strip() and form not in words:
                words.append(form)
    return words


# --- numbers only from the facts ---------------------------------------------------------------------

#: A number as copy writes it: digits, with "." or "," between them ("1,299.99", "19,99", "2.5").
NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)*")
_DIGITS = frozenset("0123456789")
_SEPARATORS = ".,"
#: Distinct allowed-number sets kept with their token tables (one per job's sources, in practice).
MAX_NUMBER_SETS = 256


def numbers_in(texts: Iterable[str]) -> tuple[str, ...]:
    """Every number the texts write, once each, in order of appearance."""
    return tuple(dict.fromkeys(m.group() for text in texts for m in NUMBER.finditer(text)))


def canonical_number(number: str) -> str:
    """'1,299' -> '1299', '25.00' -> '25', '19,99' -> '19.99', '02' -> '2' (as ``generation.factcheck`` reads them)."""
    if re.fullmatch(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?", number):
        number = number.replace(",", "")
    elif re.fullmatch(r"[0-9]+,[0-9]{1,2}", number):
        number = number.replace(",", ".")
    else:
        number = number.replace(",", "")
    try:
        return format(Decimal(number).normalize(), "f")
    except InvalidOperation:
        return number


def number_forms(number: str) -> set[str]:
    """The ways copy may write a source's number: as written, plain ("1299", "2" for "02", "19.99" for
    "19,99"), and grouped in thousands ("1,299" for "1299")."""
    plain = canonical_number(number)
    forms = {number, plain}
    whole, dot, fraction = plain.partition(".")
    if whole.isdigit() and len(whole) > 3:
        forms.add(f"{int(whole):,}{dot}{fraction}")
    return forms


@dataclass
class AllowedNumbers:
    """The numbers a text may state, as a table of their prefixes, and per digit run the tokens it rules out.

    A row's state is its current run: the digits (and separators) written since the last other
    character, "" outside a number. A separator after digits may end the number (the sentence's full
    stop, a list's comma) or continue it ("1,299"): it is allowed when either is, and what follows decides.
    """

    forms: frozenset[str]
    prefixes: frozenset[str] = frozenset()
    #: Per run: (token ids, on the logits' device; True: the only ones allowed, False: the ones ruled out).
    bans: dict[str, tuple[Any, bool]] = field(default_factory=dict)

    @classmethod
    def of(cls, numbers: Iterable[str]) -> AllowedNumbers:
        forms = frozenset(form for number in numbers for form in number_forms(number))
        return cls(forms, frozenset(form[:i] for form in forms for i in range(1, len(form) + 1)))

    def complete(self, run: str) -> bool:
        """Whether the number being written may end here."""
        return not run or run.rstrip(_SEPARATORS) in self.forms

    def feed(self, run: str, text: str) -> str | None:
        """The run after writing ``text`` from ``run``, or None when ``text`` writes a number not allowed."""
        for ch in text:
            if ch in _DIGITS:
                run += ch
                if run not in self.prefixes:
                    return None
            elif ch in _SEPARATORS and run:
                if run[-1] in _SEPARATORS:  # "39.," : the number ended at the first separator
                    if run[:-1] not in self.forms:
                        return None
                    run = ""
                elif run in self.forms or run + ch in self.prefixes:
                    run += ch
                else:
                    return None
            elif run:
                if not self.complete(run):
                    return None
                run = ""
        return run


# --- in process: token masks with xgrammar -----------------------------------------------------------


class RowConstraint:
    """One row's progress through its constraint: its grammar matcher and the tail of its text.

    Rows join and leave a batch at any step (continuous batching); each carries its own state, so a
    batch's rows need not share a constraint, or have one at all.
    """

    __slots__ = (
        "banned", "char_counts", "chars_left", "keep", "matcher", "number", "numbers", "tail", "texts", "vocab",
        "written",
    )

    def __init__(
        self, matcher: Any, banned: tuple[str, ...], vocab: Sequence[bytes], *, chars_left: int | None = None,
        char_counts: Sequence[int] = (), numbers: AllowedNumbers | None = None, texts: Sequence[str] = (),
    ) -> None:
        self.matcher = matcher
        #: The only numbers the row may write (None: any), its digit run so far, and each token's text.
        self.numbers = numbers
        self.number = ""
        self.texts = texts
        #: A bound on characters alone, kept as a count (``TokenMasks.row``); None: none or in the grammar.
        self.chars_left = chars_left
        self.char_counts = char_counts
        self.written = 0
        self.banned = tuple(p.casefold() for p in banned if p.strip())
        self.vocab = vocab
        self.tail = b""
        # Bytes of text kept to spot a phrase a new token completes (UTF-8: up to 4 bytes a character).
        self.keep = 4 * max((len(p) for p in self.banned), default=0)

    def completes_banned(self, token: int) -> bool:
        text = (self.tail + self.vocab[token]).decode("utf-8", "ignore").casefold()
        return any(phrase in text for phrase in self.banned)

    def ban(self, logits: Any) -> None:
        """Drop, from one row's logits, every top candidate that would complete a banned phrase.

        Repeated until the top ``TOP_K`` (all the sampler draws from) are clean: dropping one lets the
        next one in, which is checked in turn. One pass nearly always finds none.
        """
        while True:
            top = logits.topk(min(TOP_K, logits.shape[-1]))
            candidates = [t for v, t in zip(top.values.tolist(), top.indices.tolist(), strict=True) if v > -1e30]
            hits = [t for t in candidates if self.completes_banned(t)]
            if not hits:
                return
            logits[hits] = float("-inf")

    def advance(self, token: int) -> None:
        if self.matcher is not None and not self.matcher.accept_token(token):
            # Cannot happen when the mask was applied; if it does, the row finishes unconstrained and
            # the checks after decoding judge it, rather than failing the whole batch.
            logger.warning("constrained row took token %d its grammar refuses; it continues unconstrained", token)
            self.matcher = None
        if self.chars_left is not None:
            self.chars_left -= self.char_counts[token]
        self.written += 1
        if self.numbers is not None:
            # None only after ``TokenMasks.apply`` let a row out of its numbers (its grammar left it no
            # other token): it goes on from outside a number.
            self.number = self.numbers.feed(self.number, self.texts[token]) or ""
        if self.banned:
            self.tail = (self.tail + self.vocab[token])[-self.keep :]


class TokenMasks:
    """A model's tokenizer as xgrammar sees it: compiled constraints (cached) and per-row matchers.

    Measured on the bundled SmolLM2 (49,152 tokens), 2 busy cores: compiling the Google Ads regex
    ~2.7 s once per process (the 2,200-character caption ~1.2 s); filling 16 rows' masks ~0.4 ms a row a
    step and applying them ~2 ms a step, against ~150 ms a decode step of 16 rows. outlines-core,
    tried too, fills faster (~0.1 ms a row) but took 40 s to build the caption's index and could not
    build the SEO title + description one at all (its DFA exceeded its state limit).
    """

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]) -> None:
        import xgrammar as xgr  # optional and heavy (torch): only a worker that enforces constraints loads it

        self._xgr = xgr
        self.vocab_size = vocab_size
        self.info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_ids)
        )
        self.vocab: list[bytes] = list(self.info.decoded_vocab)
        self.vocab += [b""] * (vocab_size - len(self.vocab))  # padded logits columns decode to nothing
        # Characters each token adds (UTF-8 bytes that start one), at least 1: a token of a character's
        # last bytes alone counts again, never letting a row run on for free. Control tokens never fit.
        special = set(self.info.special_token_ids) - set(stop_ids)
        self.char_counts = [
            10**9 if t in special else max(1, sum(1 for b in text if b & 0xC0 != 0x80))
            for t, text in enumerate(self.vocab)
        ]
        for stop in stop_ids:
            self.char_counts[stop] = 0
        self.stop_ids = sorted(stop_ids)
        self._char_tensor: Any = None
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=COMPILE_THREADS)
        self._compiled: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._bitmask: Any = None
        # Allowed numbers read tokens as text, a byte a character: digits and separators are ASCII, and a
        # byte of a longer character is some other character, which ends a number as the whole one would.
        # Only tokens with a digit, or (inside a number) one starting with a separator, can continue a
        # run; every other token ends it (SmolLM2: 10 digit tokens, 78 starting with "." or ",").
        self.texts = [text.decode("latin-1") for text in self.vocab]
        self.digit_tokens = [t for t, text in enumerate(self.texts) if _DIGITS.intersection(text)]
        self.separator_tokens = [
            t for t, text in enumerate(self.texts) if text[:1] in (".", ",") and not _DIGITS.intersection(text)
        ]
        self._number_sets: dict[tuple[str, ...], AllowedNumbers] = {}

    def compiled(self, constraint: OutputConstraint) -> Any | None:
        """The compiled grammar of ``constraint``'s regex, compiled once per process; None without one."""
        regex = None if _counts_only(constraint) else to_regex(constraint)
        if regex is None:
            return None
        with self._lock:
            if regex not in self._compiled:
                self._compiled[regex] = self.compiler.compile_regex(regex)
            return self._compiled[regex]

    def allowed_numbers(self, numbers: tuple[str, ...]) -> AllowedNumbers:
        """The prefix table of a set of numbers, kept with the token bans computed for it."""
        with self._lock:
            allowed = self._number_sets.get(numbers)
            if allowed is None:
                if len(self._number_sets) >= MAX_NUMBER_SETS:
                    self._number_sets.clear()
                allowed = self._number_sets[numbers] = AllowedNumbers.of(numbers)
            return allowed

    def row(self, constraint: OutputConstraint | None) -> RowConstraint | None:
        if constraint is None:
            return None
        numbers = self.allowed_numbers(constraint.numbers) if constraint.numbers is not None else None
        extra = {"numbers": numbers, "texts": self.texts}
        if _counts_only(constraint):
            return RowConstraint(
                None, constraint.banned, self.vocab, chars_left=constraint.max_chars, char_counts=self.char_counts,
                **extra,
            )
        grammar = self.compiled(constraint)
        if grammar is None and not constraint.banned and numbers is None:
            return None
        matcher = self._xgr.GrammarMatcher(grammar) if grammar is not None else None
        return RowConstraint(matcher, constraint.banned, self.vocab, **extra)

    def number_bans(self, row: RowConstraint, device: Any) -> tuple[Any, bool]:
        """The tokens the row's digit run rules out, or (inside a number that may not end yet) the only
        ones it allows: (token ids, True when they are the only ones).

        Computed once per allowed set and run, by feeding the run the few tokens that can continue a
        number; every other token just ends it, which the run allows or not as a whole.
        """
        import torch  # heavy: as xgrammar

        allowed, run = row.numbers, row.number
        assert allowed is not None
        cached = allowed.bans.get(run)
        if cached is None:
            candidates = self.digit_tokens + self.separator_tokens if run else self.digit_tokens
            only = not allowed.complete(run)
            tokens = [t for t in candidates if (allowed.feed(run, self.texts[t]) is None) != only]
            cached = allowed.bans[run] = (torch.tensor(tokens, dtype=torch.long, device=device), only)
        return cached

    def apply(self, logits: Any, rows: Sequence[RowConstraint | None]) -> None:
        """Mask ``logits`` ([rows, vocab], in place) so each constrained row can only go on legally."""
        import torch  # heavy: as xgrammar above

        grammar_rows = [j for j, row in enumerate(rows) if row is not None and row.matcher is not None]
        with torch.inference_mode():  # the logits are the forward pass's (inference) tensor
            if grammar_rows:
                if self._bitmask is None or self._bitmask.shape[0] < len(rows):
                    self._bitmask = self._xgr.allocate_token_bitmask(max(len(rows), 16), self.vocab_size)
                for j in grammar_rows:
                    rows[j].matcher.fill_next_token_bitmask(self._bitmask, j)  # type: ignore[union-attr]
                self._xgr.apply_token_bitmask_inplace(
                    logits, self._bitmask[: len(rows)].to(logits.device), vocab_size=self.vocab_size,
                    indices=grammar_rows,
                )
            for j, row in enumerate(rows):
                if row is not None and row.chars_left is not None:
                    if self._char_tensor is None:
                        self._char_tensor = torch.tensor(self.char_counts, device=logits.device)
                    logits[j].masked_fill_(self._char_tensor > row.chars_left, float("-inf"))
                    if not row.written:  # an empty text is no text: the end waits for the first token
                        logits[j, self.stop_ids] = float("-inf")
                if row is not None and row.numbers is not None:
                    self._mask_numbers(logits, j, row)
                if row is not None and row.banned:
                    row.ban(logits[j])

    def _mask_numbers(self, logits: Any, j: int, row: RowConstraint) -> None:
        """Rule out, in row ``j``, every token that would write a number the row may not state."""
        import torch  # heavy: as xgrammar

        tokens, only = self.number_bans(row, logits.device)
        if not only:
            if tokens.numel():
                logits[j, tokens] = float("-inf")
            return
        kept = logits[j, tokens]
        if not torch.isfinite(kept).any():
            # The grammar or the character bound ended the line or text inside a number: they win, and
            # the fact check after decoding judges the cut number.
            return
        logits[j].fill_(float("-inf"))
        logits[j, tokens] = kept


def _counts_only(constraint: OutputConstraint) -> bool:
    """A bound on characters alone is a count, not a grammar: xgrammar's matcher for ``[\\s\\S]{0,2199}``
    cost ~35% of the Instagram caption's throughput, comparing token lengths with what is left ~0.1 ms."""
    return not constraint.lines and constraint.max_chars > 0


#: Threads xgrammar compiles a grammar with (its mask cache is built per token, in parallel).
COMPILE_THREADS = 2

_masks: dict[int, tuple[Any, TokenMasks]] = {}
_masks_lock = threading.Lock()


def masks_for(tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]) -> TokenMasks:
    """The process-wide ``TokenMasks`` of a tokenizer (its vocabulary table takes ~0.5 s to build)."""
    with _masks_lock:
        entry = _masks.get(id(tokenizer))
        if entry is None or entry[0] is not tokenizer:
            entry = _masks[id(tokenizer)] = (tokenizer, TokenMasks(tokenizer, vocab_size, stop_ids))
        return entry[1]
