"""A stand-in for the language model, for load and fault tests: ``LOOM_MODEL=stub``.

The stub engine has the interface of ``workers.engine.BatchEngine``
(``submit(request) -> Future[GenerationResult]``) and loads no weights. It
echoes the request's last user message, whitespace token by token, one token
every ``LOOM_STUB_TOKEN_S`` seconds (default 0.002), so what reached the model
is visible in the stored output (prompt-injection tests look for a canary of the
system prompt there). It honours ``max_new_tokens`` (finish reason ``length``)
and ``should_stop`` (``canceled`` / ``deadline``), and ends with ``stop`` once
the message is echoed; each word goes to ``on_text`` as it is "generated". Tokens
are counted as whitespace-separated words: the completion's words, and as prompt
tokens the words of every message. Each
request runs in its own thread, so many concurrent jobs are served concurrently.

Fault hooks, for tests only. They are active only when the worker process's
environment has ``LOOM_STUB_FAULTS=1`` (no settings module sets it; production
never does), and react to markers in the last user message:

* ``[[loom:kill-worker]]``: the process kills itself with ``SIGKILL`` when it
  starts generating that request, as a segfault or the OOM killer would. In a
  ``--pool threads`` worker the whole worker dies, in a prefork worker the child.
* ``[[loom:hang]]``: the request produces nothing and never finishes on its own;
  only ``should_stop`` (cancellation or the job's deadline) ends it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings

from workers.contract import FinishReason, GenerationRequest, GenerationResult

KILL_WORKER_MARKER = "[[loom:kill-worker]]"
HANG_MARKER = "[[loom:hang]]"
#: Requests generated at once per process. Each is a thread that mostly sleeps; 512 is above a
#: generation worker's threads times GENERATION_MAX_VARIANTS (32 x 8 = 256), so no request waits.
MAX_CONCURRENT_REQUESTS = 512
#: How often a hung request asks whether to stop.
HANG_POLL_S = 0.05


def faults_enabled() -> bool:
    """Whether the fault hooks are armed: only by the worker's environment, never by settings."""
    return os.environ.get("LOOM_STUB_FAULTS") == "1"


def last_user_message(messages: list[dict[str, str]]) -> str:
    return next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")


def count_tokens(text: str) -> int:
    return len(text.split())


def generate(request: GenerationRequest, *, token_s: float, faults: bool = False) -> GenerationResult:
    """Echo one request's last user message; the plain function ``StubEngine`` runs in its threads."""
    started = time.perf_counter()
    source = last_user_message(request.messages)
    prompt_tokens = sum(count_tokens(m.get("content", "")) for m in request.messages)
    if faults and KILL_WORKER_MARKER in source:
        os.kill(os.getpid(), signal.SIGKILL)
    if faults and HANG_MARKER in source:
        while (reason := request.should_stop()) is None:
            time.sleep(HANG_POLL_S)
        return GenerationResult("", prompt_tokens, 0, reason, time.perf_counter() - started)
    words: list[str] = []
    reason = FinishReason.EOS
    first_token_s = None
    for word in source.split():
        # Paced from the start, not per sleep, so many threads' oversleeping does not add up.
        delay = started + (len(words) + 1) * token_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if request.on_text is not None:
            # The pieces add up to the final text: words joined by single spaces.
            request.on_text(f" {word}" if words else word)
        words.append(word)
        if first_token_s is None:
            first_token_s = time.perf_counter() - started
        if len(words) >= request.max_new_tokens:
            reason = FinishReason.LENGTH
            break
        stop = request.should_stop()
        if stop is not None:
            reason = stop
            break
    return GenerationResult(
        " ".join(words), prompt_tokens, len(words), reason, time.perf_counter() - started, first_token_s=first_token_s
    )


class StubEngine:
    """Serves requests concurrently, one thread each, like the batch engine's callers see it."""

    def __init__(self, *, token_s: float, faults: bool = False, max_concurrent: int = MAX_CONCURRENT_REQUESTS):
        self.token_s = token_s
        self.faults = faults
        self.max_concurrent = max_concurrent
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="stub-generation")
        self._in_flight = 0
        self._counting = threading.Lock()

    @classmethod
    def from_settings(cls) -> StubEngine:
        return cls(token_s=settings.LOOM_STUB_TOKEN_S, faults=faults_enabled())

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        with self._counting:
            self._in_flight += 1
        future = self._pool.submit(generate, request, token_s=self.token_s, faults=self.faults)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[GenerationResult]) -> None:
        with self._counting:
            self._in_flight -= 1

    def occupancy(self) -> dict[str, Any]:
        """Requests generating, waiting for a thread, and threads at most (the heartbeat sends it)."""
        in_flight = self._in_flight
        return {"kind": "stub", "model": "stub", "running": min(in_flight, self.max_concurrent),
                "waiting": max(in_flight - self.max_concurrent, 0), "capacity": self.max_concurrent}

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        futures = [self.submit(r) for r in requests]
        return [f.result() for f in futures]
