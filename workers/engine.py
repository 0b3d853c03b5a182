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
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

from django.conf import settings

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


class _Row:
    __slots__ = ("future", "generator", "prompt_tokens", "request", "started", "tokens")

    def __init__(self, request: GenerationRequest, future: Future[GenerationResult], generator: Any):
        self.request = request
        self.future = future
        self.generator = generator
        self.tokens: list[int] = []
        self.prompt_tokens = 0
        self.started = 0.0


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
    futures: list[Future[GenerationResult]] = [Future() for _ in requests]
    batch.admit(list(zip(requests, futures, strict=True)))
    while batch:
        batch.step()
    return [f.result() for f in futures]


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

    def __len__(self) -> int:
        return len(self.rows)

    def admit(self, items: list[tuple[GenerationRequest, Future[GenerationResult]]]) -> None:
        import torch  # heavy: loaded only by a worker that runs a real model

        tokenizer, model, device = self.loaded.tokenizer, self.loaded.model, self.loaded.device
        prompts = [
            tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False) for r, _ in items
        ]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        input_ids = encoded["input_ids"].to(device)
        attention = encoded["attention_mask"].to(device)
        positions = (attention.cumsum(dim=-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = model(
                input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True, logits_to_keep=1
            )
        rows = []
        started = time.perf_counter()
        for (request, future), prompt_tokens in zip(items, attention.sum(dim=-1).tolist(), strict=True):
            generator = torch.Generator(device=device)
            generator.manual_seed(int(request.seed) & 0x7FFF_FFFF_FFFF_FFFF)
            row = _Row(request, future, generator)
            row.prompt_tokens, row.started = int(prompt_tokens), started
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

        tokens = sample_next(self.logits, self.temps, self.top_ps, [r.generator for r in self.rows]).tolist()
        eos = self.loaded.eos_token_ids
        keep = []
        for j, row in enumerate(self.rows):
            reason = _append(row, tokens[j], eos)
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
            out = self.loaded.model(
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
    if len(row.tokens) >= row.request.max_new_tokens:
        return FinishReason.LENGTH
    return row.request.should_stop()


def _finish(loaded: LoadedModel, row: _Row, reason: str) -> None:
    text = loaded.tokenizer.decode(row.tokens, skip_special_tokens=True).strip()
    row.future.set_result(
        GenerationResult(
            text=text,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=len(row.tokens),
            finish_reason=reason,
            seconds=time.perf_counter() - row.started,
        )
    )


class BatchEngine:
    """Owns one model; batches what concurrent callers submit."""

    def __init__(self, loaded: LoadedModel, *, max_batch: int = MAX_BATCH_SEQUENCES, window_s: float = BATCH_WINDOW_S):
        self.loaded = loaded
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.Queue[tuple[GenerationRequest, Future[GenerationResult]]] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="generation-engine", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        future: Future[GenerationResult] = Future()
        self._queue.put((request, future))
        return future

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Submit several requests (e.g. a job's variants) and wait for all of them."""
        futures = [self.submit(r) for r in requests]
        return [f.result() for f in futures]

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
                if batch:
                    batch.step()
            except Exception as exc:  # a failed step fails its rows, never the engine
                logger.exception("generation step of %d rows failed", len(batch))
                batch.fail(exc)

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
