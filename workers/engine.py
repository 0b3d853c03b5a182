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
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from workers.runtime import LoadedModel

logger = logging.getLogger(__name__)

#: Rows in one batch. 16-64 rows of a 135M model at <=256 new tokens stay under 1 GB on CPU;
#: measured on 2 cores: 1 row 9 tok/s, 16 rows 110 tok/s, 64 rows ~200 tok/s (bench.generation).
MAX_BATCH_SEQUENCES = 64
#: How long the engine waits for more requests after the first arrives before starting a batch.
BATCH_WINDOW_S = 0.05


class FinishReason:
    EOS = "stop"
    LENGTH = "length"
    CANCELED = "canceled"
    DEADLINE = "deadline"


@dataclass
class GenerationRequest:
    messages: list[dict[str, str]]  # chat messages; the tokenizer's chat template renders them
    max_new_tokens: int
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    #: Polled between decode steps; returns a FinishReason to stop this row early, else None.
    should_stop: Callable[[], str | None] = field(default=lambda: None)


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seconds: float


class _Row:
    __slots__ = ("future", "generator", "index", "request", "tokens")

    def __init__(self, index: int, request: GenerationRequest, future: Future[GenerationResult], generator: Any):
        self.index = index
        self.request = request
        self.future = future
        self.generator = generator
        self.tokens: list[int] = []


#: Candidates kept before nucleus sampling (the same default as transformers' top_k=50):
#: sorting 50 logits per row instead of the whole 49k vocabulary keeps sampling cheap at 64 rows.
TOP_K = 50


def sample_next(logits: Any, temperatures: Any, top_ps: Any, generators: list[Any]) -> Any:
    """One token per row: greedy where temperature is 0, else top-k + nucleus sampling with the row's generator."""
    import torch

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
    """Run ``requests`` as one batch; the plain function the engine thread and the benchmark call."""
    futures: list[Future[GenerationResult]] = [Future() for _ in requests]
    _run(loaded, list(zip(requests, futures, strict=True)))
    return [f.result() for f in futures]


def _run(loaded: LoadedModel, items: list[tuple[GenerationRequest, Future[GenerationResult]]]) -> None:
    import torch

    started = time.perf_counter()
    tokenizer, model, device = loaded.tokenizer, loaded.model, loaded.device
    prompts = [
        tokenizer.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False) for req, _ in items
    ]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    input_ids = encoded["input_ids"].to(device)
    attention = encoded["attention_mask"].to(device)
    prompt_lengths = attention.sum(dim=-1).tolist()
    rows = []
    for i, (req, future) in enumerate(items):
        generator = torch.Generator(device=device)
        generator.manual_seed(int(req.seed) & 0x7FFF_FFFF_FFFF_FFFF)
        rows.append(_Row(i, req, future, generator))
    temps = torch.tensor([r.request.temperature for r in rows], device=device)
    top_ps = torch.tensor([r.request.top_p for r in rows], device=device)
    eos = loaded.eos_token_ids
    max_steps = max(r.request.max_new_tokens for r in rows)

    positions = (attention.cumsum(dim=-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True)
        cache = out.past_key_values
        logits = out.logits[:, -1, :]
        next_pos = positions[:, -1:] + 1
        for _step in range(max_steps):
            tokens = sample_next(logits, temps, top_ps, [r.generator for r in rows]).tolist()
            keep: list[int] = []
            for j, row in enumerate(rows):
                reason = _append(row, tokens[j], eos)
                if reason is None:
                    keep.append(j)
                else:
                    _finish(loaded, row, reason, prompt_lengths[row.index], started)
            if not keep:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                rows = [rows[j] for j in keep]
                attention, next_pos = attention[index], next_pos[index]
                temps, top_ps = temps[index], top_ps[index]
                tokens = [tokens[j] for j in keep]
            attention = torch.cat([attention, attention.new_ones((len(rows), 1))], dim=-1)
            step_ids = torch.tensor(tokens, device=device).unsqueeze(-1)
            out = model(
                input_ids=step_ids,
                attention_mask=attention,
                position_ids=next_pos,
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1, :]
            next_pos = next_pos + 1
    for row in rows:  # only reached if max_steps ran out without a final check
        if not row.future.done():
            _finish(loaded, row, FinishReason.LENGTH, prompt_lengths[row.index], started)


def _append(row: _Row, token: int, eos: set[int]) -> str | None:
    if token in eos:
        return FinishReason.EOS
    row.tokens.append(token)
    if len(row.tokens) >= row.request.max_new_tokens:
        return FinishReason.LENGTH
    return row.request.should_stop()


def _finish(loaded: LoadedModel, row: _Row, reason: str, prompt_tokens: int, started: float) -> None:
    text = loaded.tokenizer.decode(row.tokens, skip_special_tokens=True).strip()
    row.future.set_result(
        GenerationResult(
            text=text,
            prompt_tokens=int(prompt_tokens),
            completion_tokens=len(row.tokens),
            finish_reason=reason,
            seconds=time.perf_counter() - started,
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
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                _run(self.loaded, batch)
            except Exception as exc:  # a failed batch fails its requests, never the engine
                logger.exception("generation batch of %d failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)


_engine_lock = threading.Lock()
_engine: BatchEngine | None = None


def get_engine() -> BatchEngine:
    """The process-wide engine around the configured model."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from workers.runtime import get_model

            _engine = BatchEngine(get_model())
        return _engine
