"""Batched generation: concurrent requests share forward passes.

Celery runs generation tasks in threads of one worker process (``--pool
threads``); each task submits its variants here and waits. One engine thread
owns the model: it gathers every request waiting (up to ``MAX_BATCH_SEQUENCES``,
after a short ``BATCH_WINDOW_S`` for stragglers), runs them as one batch, and
resolves each request's future. Inside a batch, rows that finish (EOS, their
own token limit, cancellation, deadline) leave the batch at once, so the
remaining rows stop paying for them.

Sampling is done per row (temperature, top-p and a seeded generator per
variant), so a variant's parameters do not depend on what it was batched with.
A row with an output constraint (``request.constraint``) has its own grammar
matcher (``workers.grammar``): its logits are masked to what the constraint
still allows before each draw.

A row with a brand adapter (``request.adapter``) runs in the same batch as rows
with other adapters or none: each forward pass names every row's adapter
(``workers.adapters``), and the prefix cache keys prefixes by adapter too.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from django.conf import settings

from workers import grammar
from workers.adapters import BASE, AdapterLoadError, AdapterSet
from workers.contract import FinishReason, GenerationRequest, GenerationResult
from workers.runtime import STUB_MODEL, LoadedModel, get_model
from workers.stub import StubEngine

__all__ = ["BatchEngine", "FinishReason", "GenerationRequest", "GenerationResult", "generate_batch", "get_engine"]

logger = logging.getLogger(__name__)

#: Rows in one batch. 16-64 rows of a 135M model at <=256 new tokens stay under 1 GB on CPU;
#: measured on 2 cores: 1 row 9 tok/s, 16 rows 110 tok/s, 64 rows ~200 tok/s (bench.generation).
MAX_BATCH_SEQUENCES = 64
#: How long the engine waits for more requests after the first arrives before starting a batch.
BATCH_WINDOW_S = 0.05


class _Submitted(Future[GenerationResult]):
    """A request's future that remembers when it was submitted: time to first token counts the queue."""

    def __init__(self) -> None:
        super().__init__()
        self.at = time.perf_counter()


class _Row:
    __slots__ = (
        "adapter", "constraint", "first_token", "future", "generator", "held", "prefix_offset", "prompt_tokens",
        "read_offset", "request", "sent", "started", "submitted", "tokens",
    )

    def __init__(self, request: GenerationRequest, future: Future[GenerationResult], generator: Any):
        self.request = request
        self.future = future
        self.generator = generator
        self.tokens: list[int] = []
        self.prompt_tokens = 0
        self.started = 0.0
        self.submitted = getattr(future, "at", None)
        self.first_token: float | None = None
        # Streaming (``request.on_text``): tokens[prefix_offset:read_offset] is the context the next
        # piece is decoded against, ``held`` trailing whitespace not sent yet, ``sent`` characters sent.
        self.prefix_offset = self.read_offset = self.sent = 0
        self.held = ""
        self.constraint: grammar.RowConstraint | None = None
        self.adapter = BASE  # the row's name in ``adapter_names``


#: Candidates kept before nucleus sampling (the same default as transformers' top_k=50):
#: sorting 50 logits per row instead of the whole 49k vocabulary keeps sampling cheap at 64 rows.
TOP_K = 50


def sample_next(logits: Any, temperatures: Any, top_ps: Any, generators: list[Any]) -> Any:
    """One token per row: greedy where temperature is 0, else top-k + nucleus sampling with the row's generator."""
    import torch  # heavy: loaded only by a worker that runs a real model

    top_logits, top_idx = logits.float().topk(min(TOP_K, logits.shape[-1]), dim=-1)  # sorted, descending
    temps = temperatures.clamp(min=1e-5).unsqueeze(-1)
    probs = torch.softmax(top_logits / temps, dim=-1)
    cumulative = probs.cumsum(dim=-1)
    # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
    probs = probs.masked_fill((cumulative - probs) > top_ps.unsqueeze(-1), 0.0)
    chosen = top_idx[:, 0].clone()  # greedy
    for row, generator in enumerate(generators):
        if temperatures[row] > 0:
            chosen[row] = top_idx[row, torch.multinomial(probs[row], 1, generator=generator)]
    return chosen


def generate_batch(loaded: LoadedModel, requests: list[GenerationRequest]) -> list[GenerationResult]:
    """Run ``requests`` as one batch to completion; the plain function tests and benchmarks call."""
    batch = ActiveBatch(loaded)
    futures: list[Future[GenerationResult]] = [_Submitted() for _ in requests]
    batch.admit(list(zip(requests, futures, strict=True)))
    while batch:
        batch.step()
    return [f.result() for f in futures]


def token_masks(loaded: LoadedModel) -> grammar.TokenMasks:
    """The model's constraint compiler and masks (``workers.grammar``), built on first use."""
    vocab_size = int(loaded.model.config.vocab_size)
    return grammar.masks_for(loaded.tokenizer, vocab_size, sorted(loaded.eos_token_ids))


#: Prompt prefixes shorter than this are computed with their prompt: a cached one saves less than it costs.
PREFIX_MIN_TOKENS = 16


class PrefixCache:
    """Key/value tensors of prompt prefixes that many requests share, computed once per model.

    A job's prompt is the same system message (template, brand voice, approved examples) followed by
    what differs (the brief): with the prefix cached, admitting a request computes only its brief and
    the assistant's turn. vLLM and SGLang do the same on servers (automatic prefix caching, radix
    attention); this is the in-process engine's version, at message granularity: the prefix is every
    message but the last, so a template's prefix is found by a dictionary lookup, not a token trie.

    Each prefix is computed alone (batch of one, no padding), so a row's numbers never depend on what
    it was admitted with, and a seed gives the same text with or without company. A prefix's keys and
    values differ per brand adapter (its LoRA changes the projections), so entries are keyed by the
    adapter as well. Bounded by bytes
    (``LOOM_PREFIX_CACHE_MB``), least recently used first out. Used by the engine thread only.
    """

    def __init__(self, loaded: LoadedModel, *, max_bytes: int) -> None:
        self.loaded = loaded
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._entries: OrderedDict[tuple[str, tuple[int, ...]], tuple[list[tuple[Any, Any]], int]] = OrderedDict()

    def split(self, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
        """(shared prefix, rest) of the prompt's token ids; the prefix is empty when there is none to share."""
        tokenizer = self.loaded.tokenizer
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if self.max_bytes <= 0 or len(messages) < 2:
            return [], ids
        head = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=False, tokenize=False)
        if not prompt.startswith(head):
            return [], ids
        prefix = tokenizer(head, add_special_tokens=False)["input_ids"]
        # A prefix is only shareable where tokenizing it alone gives the prompt's own first tokens
        # (a merge across the boundary would change them), and when it leaves something to compute.
        if len(prefix) < PREFIX_MIN_TOKENS or len(prefix) >= len(ids) or ids[: len(prefix)] != prefix:
            return [], ids
        return prefix, ids[len(prefix) :]

    def get(self, prefix: list[int], adapter: str = BASE) -> list[tuple[Any, Any]] | None:
        """Per layer (keys, values) of ``prefix`` under ``adapter``, [1, heads, len, dim]; computed if not cached."""
        if not prefix:
            return None
        key = (adapter, tuple(prefix))
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return found[0]
        self.misses += 1
        layers = self._compute(prefix, adapter)
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        if size <= self.max_bytes:
            self._entries[key] = (layers, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
        return layers

    def _compute(self, prefix: list[int], adapter: str) -> list[tuple[Any, Any]]:
        import torch  # heavy: loaded only by a worker that runs a real model

        ids = torch.tensor([prefix], device=self.loaded.device)
        with torch.inference_mode():
            out = forward(self.loaded, [adapter], input_ids=ids, use_cache=True, logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in out.cache.layers]


_prefix_caches: weakref.WeakKeyDictionary[Any, PrefixCache] = weakref.WeakKeyDictionary()
_prefix_caches_lock = threading.Lock()


def prefixes_for(loaded: LoadedModel) -> PrefixCache:
    """The model's prefix cache (one per loaded model, whichever batch or engine uses it)."""
    with _prefix_caches_lock:
        found = _prefix_caches.get(loaded.model)
        if found is None:
            found = _prefix_caches[loaded.model] = PrefixCache(
                loaded, max_bytes=settings.LOOM_PREFIX_CACHE_MB * 1024 * 1024
            )
        return found


_adapter_sets: weakref.WeakKeyDictionary[Any, AdapterSet] = weakref.WeakKeyDictionary()


def adapters_for(loaded: LoadedModel) -> AdapterSet:
    """The brand adapters loaded on the model (one set per loaded model, like its prefix cache)."""
    with _prefix_caches_lock:
        found = _adapter_sets.get(loaded.model)
        if found is None:
            found = _adapter_sets[loaded.model] = AdapterSet(loaded.model, max_loaded=settings.LOOM_MAX_ADAPTERS)
        return found


def forward(loaded: LoadedModel, adapters: list[str], **kwargs: Any) -> Any:
    """A forward pass of the model with each row's adapter (``BASE``: none); the engine's only way to run it."""
    found = _adapter_sets.get(loaded.model)
    if found is None:
        return loaded.model(**kwargs)
    return found.forward(adapters, **kwargs)


def _prefix_batch_cache(loaded: LoadedModel, prefixes: list[list[tuple[Any, Any]] | None], length: int) -> Any:
    """A batch's cache holding each row's prefix, left-padded to ``length`` (zeros, masked out)."""
    import torch  # heavy: loaded only by a worker that runs a real model
    from transformers import DynamicCache  # as torch above

    template = next(p for p in prefixes if p is not None)
    layers = []
    for index, (keys, values) in enumerate(template):
        row_keys, row_values = [], []
        for prefix in prefixes:
            if prefix is None:
                shape = (1, keys.shape[1], length, keys.shape[3])
                row_keys.append(keys.new_zeros(shape))
                row_values.append(values.new_zeros(shape))
                continue
            k, v = prefix[index]
            pad = length - k.shape[2]
            row_keys.append(torch.nn.functional.pad(k, (0, 0, pad, 0)) if pad else k)
            row_values.append(torch.nn.functional.pad(v, (0, 0, pad, 0)) if pad else v)
        layers.append((torch.cat(row_keys), torch.cat(row_values)))
    return DynamicCache(ddp_cache_data=layers, config=loaded.model.config)


class ActiveBatch:
    """The rows being decoded together, with their shared KV cache.

    Continuous batching: ``admit`` prefills newcomers and merges them into the
    running batch between decode steps (the shorter side is left-padded in the
    cache and masked out), so a request never waits for a whole batch to end.
    Finished rows leave at once, and columns no remaining row needs are trimmed
    so the cache never grows past the oldest active row.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.rows: list[_Row] = []
        self.cache: Any = None
        self.attention: Any = None  # [rows, cache length]: 1 for real tokens, 0 for padding
        self.next_pos: Any = None  # [rows, 1]: position id of each row's next token
        self.logits: Any = None  # [rows, vocab]: logits of each row's next token
        self.temps: Any = None
        self.top_ps: Any = None

    @property
    def adapters(self) -> list[str]:
        return [row.adapter for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def admit(self, items: list[tuple[GenerationRequest, Future[GenerationResult]]]) -> None:
        import torch  # heavy: loaded only by a worker that runs a real model

        device = self.loaded.device
        items, adapters = self._resolve_adapters(items)
        if not items:
            return
        encoded = [prefixes_for(self.loaded).split(r.messages) for r, _ in items]
        # Each row's shared prefix (system prompt, brand voice, examples) comes from the prefix cache;
        # only the rest of its prompt is computed here. The batch's cache is laid out
        # [padding | prefix | padding | suffix] per row, the padding masked out.
        prefix_kv = [
            prefixes_for(self.loaded).get(prefix, adapter)
            for (prefix, _), adapter in zip(encoded, adapters, strict=True)
        ]
        longest_prefix = max(len(prefix) for prefix, _ in encoded)
        longest_suffix = max(len(suffix) for _, suffix in encoded)
        pad_id = self.loaded.tokenizer.pad_token_id or 0
        input_ids = torch.tensor(
            [[pad_id] * (longest_suffix - len(suffix)) + suffix for _, suffix in encoded], device=device
        )
        attention = torch.tensor(
            [
                [0] * (longest_prefix - len(prefix)) + [1] * len(prefix)
                + [0] * (longest_suffix - len(suffix)) + [1] * len(suffix)
                for prefix, suffix in encoded
            ],
            device=device,
        )
        positions = ((attention.cumsum(dim=-1) - 1).clamp(min=0))[:, longest_prefix:]
        cache = _prefix_batch_cache(self.loaded, prefix_kv, longest_prefix) if longest_prefix else None
        with torch.inference_mode():
            out = forward(
                self.loaded, adapters, input_ids=input_ids, attention_mask=attention, position_ids=positions,
                cache=cache, use_cache=True, logits_to_keep=1,
            )
        rows = []
        started = time.perf_counter()
        prompt_lengths = attention.sum(dim=-1).tolist()
        for (request, future), prompt_tokens, adapter in zip(items, prompt_lengths, adapters, strict=True):
            generator = torch.Generator(device=device)
            generator.manual_seed(int(request.seed) & 0x7FFF_FFFF_FFFF_FFFF)
            row = _Row(request, future, generator)
            row.adapter = adapter
            row.prompt_tokens, row.started = int(prompt_tokens), started
            row.submitted = row.submitted or started
            if request.constraint is not None:
                row.constraint = token_masks(self.loaded).row(request.constraint)
            rows.append(row)
        temps = torch.tensor([r.temperature for r, _ in items], device=device)
        top_ps = torch.tensor([r.top_p for r, _ in items], device=device)
        logits = out.logits[:, -1, :]
        next_pos = positions[:, -1:] + 1
        if not self.rows:
            self.rows, self.cache, self.attention, self.next_pos = rows, out.cache, attention, next_pos
            self.logits, self.temps, self.top_ps = logits, temps, top_ps
            return
        self._merge(out.cache, attention)
        self.rows += rows
        self.next_pos = torch.cat([self.next_pos, next_pos])
        self.logits = torch.cat([self.logits, logits])
        self.temps = torch.cat([self.temps, temps])
        self.top_ps = torch.cat([self.top_ps, top_ps])

    def _resolve_adapters(
        self, items: list[tuple[GenerationRequest, Future[GenerationResult]]]
    ) -> tuple[list[tuple[GenerationRequest, Future[GenerationResult]]], list[str]]:
        """Load the adapters ``items`` ask for; a request whose adapter cannot be loaded fails alone."""
        if all(request.adapter is None for request, _ in items):
            return items, [BASE] * len(items)
        adapter_set = adapters_for(self.loaded)
        in_use = set(self.adapters)
        kept, adapters = [], []
        for request, future in items:
            if request.adapter is None:
                kept.append((request, future))
                adapters.append(BASE)
                continue
            try:
                key = adapter_set.ensure(request.adapter, in_use=in_use)
            except AdapterLoadError as exc:
                logger.warning("generation request failed: %s", exc)
                future.set_exception(exc)
                continue
            in_use.add(key)
            kept.append((request, future))
            adapters.append(key)
        return kept, adapters

    def _merge(self, cache: Any, attention: Any) -> None:
        import torch  # heavy: loaded only by a worker that runs a real model
        import torch.nn.functional as F  # as torch above

        length = max(self.attention.shape[1], attention.shape[1])

        def left_pad(t: Any, dim_from_end: int) -> Any:
            missing = length - t.shape[-dim_from_end]
            if missing == 0:
                return t
            pad = [0, 0] * (dim_from_end - 1) + [missing, 0]
            return F.pad(t, pad)

        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([left_pad(mine.keys, 2), left_pad(theirs.keys, 2)])
            mine.values = torch.cat([left_pad(mine.values, 2), left_pad(theirs.values, 2)])
        self.attention = torch.cat([left_pad(self.attention, 1), left_pad(attention, 1)])

    def step(self) -> None:
        """Sample one token per row, retire finished rows, and run the next decode forward pass."""
        import torch  # heavy: loaded only by a worker that runs a real model

        constraints = [r.constraint for r in self.rows]
        if any(c is not None for c in constraints):
            token_masks(self.loaded).apply(self.logits, constraints)
        tokens = sample_next(self.logits, self.temps, self.top_ps, [r.generator for r in self.rows]).tolist()
        eos = self.loaded.eos_token_ids
        for constraint, token in zip(constraints, tokens, strict=True):
            if constraint is not None and token not in eos:
                constraint.advance(token)
        keep = []
        tokenizer = self.loaded.tokenizer
        for j, row in enumerate(self.rows):
            reason = _append(row, tokens[j], eos)
            if row.request.on_text is not None and reason is None:
                _stream(tokenizer, row)
            if reason is None:
                keep.append(j)
            else:
                _finish(self.loaded, row, reason)
        if not keep:
            self.__init__(self.loaded)  # type: ignore[misc]
            return
        if len(keep) < len(self.rows):
            index = torch.tensor(keep, device=self.loaded.device)
            self.cache.batch_select_indices(index)
            self.rows = [self.rows[j] for j in keep]
            self.attention, self.next_pos = self.attention[index], self.next_pos[index]
            self.temps, self.top_ps = self.temps[index], self.top_ps[index]
            tokens = [tokens[j] for j in keep]
            self._trim()
        self.attention = torch.cat([self.attention, self.attention.new_ones((len(self.rows), 1))], dim=-1)
        step_ids = torch.tensor(tokens, device=self.loaded.device).unsqueeze(-1)
        with torch.inference_mode():
            out = forward(
                self.loaded,
                self.adapters,
                input_ids=step_ids,
                attention_mask=self.attention,
                position_ids=self.next_pos,
                cache=self.cache,
                use_cache=True,
            )
        self.cache, self.logits = out.cache, out.logits[:, -1, :]
        self.next_pos = self.next_pos + 1

    def _trim(self) -> None:
        """Drop leading cache columns that are padding for every remaining row."""
        used = self.attention.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else 0
        if start > 0:
            self.attention = self.attention[:, start:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, start:, :], layer.values[:, :, start:, :]

    def fail(self, exc: BaseException) -> None:
        for row in self.rows:
            if not row.future.done():
                row.future.set_exception(exc)
        self.__init__(self.loaded)  # type: ignore[misc]


def _append(row: _Row, token: int, eos: set[int]) -> str | None:
    if token in eos:
        return FinishReason.EOS
    row.tokens.append(token)
    if row.first_token is None:
        row.first_token = time.perf_counter()
    if len(row.tokens) >= row.request.max_new_tokens:
        return FinishReason.LENGTH
    return row.request.should_stop()


def _stream(tokenizer: Any, row: _Row) -> None:
    """Send the text the row's newest token completes to ``on_text``.

    Decoding a token alone is wrong for byte-level BPE (half of a multi-byte character) and for
    SentencePiece (a word's leading space depends on what precedes it), and decoding the whole row
    every step costs O(length). So, as vLLM's incremental detokenizer does, the new tokens are
    decoded together with the few before them and only the new suffix is sent; a piece that ends in
    an incomplete character waits for the next token. The final text is stripped (``_finish``), so
    leading whitespace is never sent and trailing whitespace is held until more text follows: the
    pieces always add up to a prefix of the final text. Two decodes of a few tokens: ~5 us a token
    with SmolLM2's tokenizer on 2 cores, against ~100 ms a decode step of 16 rows (0.1%).
    """
    tokens = row.tokens
    before = tokenizer.decode(tokens[row.prefix_offset : row.read_offset], skip_special_tokens=True)
    after = tokenizer.decode(tokens[row.prefix_offset :], skip_special_tokens=True)
    if len(after) <= len(before) or after.endswith("\ufffd"):
        return
    row.prefix_offset, row.read_offset = row.read_offset, len(tokens)
    text = row.held + after[len(before) :]
    if not row.sent:
        text = text.lstrip()
    piece = text.rstrip()
    row.held = text[len(piece) :]
    if piece:
        _send(row, piece)


def _send(row: _Row, piece: str) -> None:
    assert row.request.on_text is not None
    row.sent += len(piece)
    try:
        row.request.on_text(piece)
    except Exception:  # a broken listener must not fail the batch: this row stops streaming
        logger.exception("on_text of a generation request failed; streaming stops for it")
        row.request.on_text = None


def _finish(loaded: LoadedModel, row: _Row, reason: str) -> None:
    text = loaded.tokenizer.decode(row.tokens, skip_special_tokens=True).strip()
    if row.request.on_text is not None and len(text) > row.sent:
        _send(row, text[row.sent :])  # what was held back (a partial character, trailing text)
    row.future.set_result(
        GenerationResult(
            text=text,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=len(row.tokens),
            finish_reason=reason,
            seconds=time.perf_counter() - row.started,
            first_token_s=None if row.first_token is None else row.first_token - (row.submitted or row.started),
        )
    )


class BatchEngine:
    """Owns one model; batches what concurrent callers submit."""

    def __init__(self, loaded: LoadedModel, *, max_batch: int = MAX_BATCH_SEQUENCES, window_s: float = BATCH_WINDOW_S):
        self.loaded = loaded
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.Queue[tuple[GenerationRequest, Future[GenerationResult]]] = queue.Queue()
        self._running = 0  # rows in the batch, written by the engine thread only
        self._thread = threading.Thread(target=self._loop, name="generation-engine", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        if request.constraint is not None:
            # Compile in the caller's thread (seconds, once per constraint and process), not in the
            # engine's, where it would stall every running row.
            token_masks(self.loaded).compiled(request.constraint)
        future = _Submitted()
        self._queue.put((request, future))
        return future

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Submit several requests (e.g. a job's variants) and wait for all of them."""
        futures = [self.submit(r) for r in requests]
        return [f.result() for f in futures]

    def occupancy(self) -> dict[str, Any]:
        """How full the batch is: rows decoding, requests waiting for a row, rows at most (the heartbeat sends it)."""
        return {"kind": "inprocess", "model": self.loaded.name, "running": self._running,
                "waiting": self._queue.qsize(), "capacity": self.max_batch}

    def _loop(self) -> None:
        batch = ActiveBatch(self.loaded)
        while True:
            try:
                newcomers = self._take(idle=not batch, room=self.max_batch - len(batch))
                if newcomers:
                    try:
                        batch.admit(newcomers)
                    except Exception as exc:  # a bad request fails itself, not the running rows
                        logger.exception("admitting %d generation requests failed", len(newcomers))
                        for _, future in newcomers:
                            if not future.done():
                                future.set_exception(exc)
                self._running = len(batch)
                if batch:
                    batch.step()
            except Exception as exc:  # a failed step fails its rows, never the engine
                logger.exception("generation step of %d rows failed", len(batch))
                batch.fail(exc)
            self._running = len(batch)

    def _take(self, *, idle: bool, room: int) -> list[tuple[GenerationRequest, Future[GenerationResult]]]:
        """Requests to admit now: block (then wait a short window) when idle, else only what is queued."""
        taken: list[tuple[GenerationRequest, Future[GenerationResult]]] = []
        if room <= 0:
            return taken
        if idle:
            taken.append(self._queue.get())
            deadline = time.monotonic() + self.window_s
            while len(taken) < room and (remaining := deadline - time.monotonic()) > 0:
                try:
                    taken.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
        while len(taken) < room:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return taken


_engine_lock = threading.Lock()
_engine: BatchEngine | StubEngine | None = None


def loaded_engine() -> BatchEngine | StubEngine | None:
    """The process-wide engine if it was made, without making it (the heartbeat reports how full it is)."""
    return _engine


def get_engine() -> BatchEngine | StubEngine:
    """The process-wide engine around the configured model (``LOOM_MODEL=stub``: the echo stub, no weights)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            if settings.LOOM_MODEL == STUB_MODEL:
                _engine = StubEngine.from_settings()
            else:
                _engine = BatchEngine(get_model())
        return _engine
