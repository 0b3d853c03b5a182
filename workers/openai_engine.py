"""Generation on an OpenAI-compatible chat-completions server: vLLM, SGLang, llama.cpp, Ollama, TGI.

``OpenAIEngine`` has the interface of ``workers.engine.BatchEngine`` (``submit(request) ->
Future[GenerationResult]``) and needs no torch: the server batches and decodes. Each request is one
streamed chat completion with its own ``seed``, ``temperature``, ``top_p`` and ``max_tokens``, read in
a thread of the engine's pool (``LOOM_OPENAI_MAX_CONCURRENCY`` at once, and as many pooled HTTP
connections):

* every content delta goes to ``request.on_text`` (a callback that raises is logged and dropped,
  never the request), and the first one sets ``first_token_s``;
* ``request.should_stop`` is polled after every chunk; cancellation or the deadline closes the
  stream, which is how the server learns to stop (vLLM and SGLang abort a request whose client went
  away; llama-cpp-python's server checks ``request.is_disconnected()`` after each token it sends), and
  the text so far is returned with that finish reason. While the server sends nothing (a queue, a
  stall) a watchdog polls ``should_stop`` instead and ends the request just the same;
* connection errors, 5xx and 429 before the first token are retried with exponential backoff for
  ``LOOM_OPENAI_RETRY_S`` seconds (a restarting server loses no job); after the first token an error
  raises, since the text so far cannot be resumed, and the job fails with the reason.

Brand adapters (``request.adapter``, a LoRA): vLLM serves each under its own name, so the request
names the adapter as its ``model``; SGLang takes the base model and ``lora_path`` (the adapter's
name). Neither needs a restart for a new adapter: when the server answers that it does not know the
adapter, the engine registers it (``POST /load_lora_adapter`` with its name and path: vLLM needs
``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, SGLang ``--enable-lora``) and asks
again, once. Both batch requests of different adapters and of none together. A server that cannot
serve adapters (llama.cpp, generic) fails the request with that reason: a job pinned to a brand
model never runs silently on the base model.

Token counts: the server's usage (``stream_options.include_usage``: vLLM, SGLang, llama.cpp's own
``llama-server``, Ollama, TGI send it in a last chunk). Without it (a cut stream; llama-cpp-python
never sends it) completion tokens are the content chunks received, since these servers stream one
chunk per decoded token, so a canceled variant bills exactly what reached us; prompt tokens come from
the server's tokenizer where it has an endpoint for it (vLLM ``/tokenize`` renders the chat template:
exact; llama-cpp-python ``/extras/tokenize/count`` on the messages laid out as ChatML: exact for
ChatML models such as the bundled SmolLM2, a few tokens off for other templates), else an estimate of
four characters per token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
from django.conf import settings

from workers import grammar, zero_adapter
from workers.contract import AdapterRef, Backend, FinishReason, GenerationRequest, GenerationResult, OutputConstraint

logger = logging.getLogger(__name__)

#: What ``flavor`` an engine detects (``LOOM_OPENAI_FLAVOR`` forces one): which server-specific
#: parameters it may send (constraints, tokenizer endpoints).
FLAVORS = ("vllm", "sglang", "llamacpp", "generic")
#: ``owned_by`` of ``GET /v1/models`` per server: vLLM and SGLang name themselves, llama.cpp's
#: ``llama-server`` says "llamacpp", llama-cpp-python's server says "me".
_OWNED_BY_FLAVOR = {"vllm": "vllm", "sglang": "sglang", "llamacpp": "llamacpp", "me": "llamacpp"}
#: Seeds are sent modulo 2**31: llama.cpp's are 32-bit, vLLM's and SGLang's 64-bit.
_SEED_MASK = 0x7FFF_FFFF
#: The first wait between tries of a request that found the server unreachable; it doubles up to
#: ``_MAX_BACKOFF_S``, so a server that restarts in ~5 s is found again within a second of it.
_FIRST_BACKOFF_S = 0.25
_MAX_BACKOFF_S = 4.0
#: How often the watchdog asks a request that is waiting for its server whether it should stop.
_WATCHDOG_POLL_S = 0.25
#: Prompt token counts kept per distinct prompt (a job's variants share theirs).
_PROMPT_COUNT_CACHE = 256
#: Characters per token of the estimate when the server neither reports usage nor tokenizes.
_CHARS_PER_TOKEN = 4
#: While no adapter is known, how often a base request asks the server whether it holds one
#: (``LOOM_VLLM_ZERO_ADAPTER_FOR_BASE``).
_ZERO_PROBE_S = 2.0


class OpenAIEngineError(RuntimeError):
    """The server failed a request (or ended its stream) in a way that retrying cannot mend."""


#: The flavors whose servers load LoRA adapters at run time (see the module docstring).
ADAPTER_FLAVORS = ("vllm", "sglang")


def detect_flavor(models_payload: dict[str, Any]) -> str:
    """The server kind from its ``GET /v1/models`` answer (``owned_by`` of the first model)."""
    data = models_payload.get("data") or []
    owned_by = str(data[0].get("owned_by", "")).lower() if data and isinstance(data[0], dict) else ""
    return _OWNED_BY_FLAVOR.get(owned_by, "generic")


def constraint_params(constraint: OutputConstraint, flavor: str) -> dict[str, Any]:
    """Request fields that make the server enforce ``constraint`` while decoding; {} when it cannot.

    The hook for ``workers.grammar`` (which compiles an ``OutputConstraint`` without importing
    ``generation``): the fields returned are merged into the request's JSON body, as
    ``extra_body``. What each flavor takes:

    * ``vllm``: ``{"structured_outputs": {"regex": ...}}`` (``guided_regex`` before vLLM 0.10) and
      banned phrases as ``bad_words`` (token sequences: the usual spellings, not every casing);
    * ``sglang``: ``{"regex": ...}``;
    * ``llamacpp``: ``{"grammar": "<GBNF>"}``, read by both llama-cpp-python's server (its chat
      request's ``grammar`` field, compiled with ``LlamaGrammar.from_string``) and ``llama-server``;
    * ``generic``: nothing; the checks after decoding still apply.

    Banned phrases reach only vLLM: neither a regex nor GBNF these servers take can say "not
    containing" (no lookahead), so elsewhere the checks after decoding catch them.
    """
    params: dict[str, Any] = {}
    if flavor in ("vllm", "sglang"):
        regex = grammar.to_regex(constraint)
        if regex is not None:
            params = {"structured_outputs": {"regex": regex}} if flavor == "vllm" else {"regex": regex}
        if flavor == "vllm" and constraint.banned:
            params["bad_words"] = grammar.bad_words(constraint)
    elif flavor == "llamacpp":
        gbnf = grammar.to_gbnf(constraint)
        if gbnf is not None:
            params = {"grammar": gbnf}
    return params


@dataclass(eq=False)  # kept in a set by identity
class _Call:
    """One request in flight: what its reader thread has received, shared with the watchdog."""

    request: GenerationRequest
    future: Future[GenerationResult]
    started: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    pieces: list[str] = field(default_factory=list)
    chunks: int = 0  # content chunks received: the completion tokens when the server sends no usage
    first_token_s: float | None = None
    usage: Any = None
    #: True while the reader blocks on the server before its first chunk or between chunks.
    waiting: bool = True
    #: Set when the request was ended (result or exception): a reader that wakes up later drops out.
    done: bool = False
    pending_space: str = ""  # whitespace held back until a non-blank piece follows (see _emit)


class OpenAIEngine:
    """Streams chat completions from one OpenAI-compatible server for concurrent callers."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_concurrency: int | None = None,
        retry_s: float | None = None,
        read_timeout_s: float | None = None,
        flavor: str | None = None,
        zero_adapter_for_base: bool | None = None,
    ) -> None:
        if backend.kind != "openai" or not backend.base_url:
            raise ValueError(f"OpenAIEngine needs an openai backend with a base URL, not {backend!r}")
        self.backend = backend
        self.base_url = backend.base_url.rstrip("/")
        self.max_concurrency = max_concurrency or settings.LOOM_OPENAI_MAX_CONCURRENCY
        self.retry_s = settings.LOOM_OPENAI_RETRY_S if retry_s is None else retry_s
        read_timeout = read_timeout_s or settings.LOOM_OPENAI_READ_TIMEOUT_S
        # One pooled connection per request that may be in flight: worker threads x variants.
        self._http = openai.DefaultHttpxClient(
            limits=httpx2.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency),
            timeout=httpx2.Timeout(read_timeout, connect=settings.LOOM_OPENAI_CONNECT_TIMEOUT_S),
        )
        # Our own loop retries (it stops when the job is canceled and knows whether a token came):
        # the client's retries would sleep through a cancellation.
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=backend.api_key or "none", http_client=self._http, max_retries=0
        )
        self._auth = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
        self._flavor = flavor or settings.LOOM_OPENAI_FLAVOR or None
        self._model = backend.model or None
        self._detect_lock = threading.Lock()
        self._prompt_counts: OrderedDict[str, int] = OrderedDict()
        self._counts_lock = threading.Lock()
        self._adapter_lock = threading.Lock()  # one registration of an adapter at a time
        # vLLM-CPU's mixed LoRA batches (workers/zero_adapter.py): base requests name a zero adapter.
        self._zero_for_base = (
            settings.LOOM_VLLM_ZERO_ADAPTER_FOR_BASE if zero_adapter_for_base is None else zero_adapter_for_base
        )
        self._zero: AdapterRef | None = None
        self._zero_probed = float("-inf")
        self._zero_failed: set[str] = set()  # adapter folders no twin could be made from: tried once
        self._pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="openai-generation")
        self._calls: set[_Call] = set()
        self._calls_lock = threading.Lock()
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="openai-generation-watchdog", daemon=True)
        self._watchdog.start()

    # --- the engine interface ---------------------------------------------------------------

    def occupancy(self) -> dict[str, Any]:
        """Requests streaming, waiting for a connection, and connections at most (the heartbeat sends it)."""
        with self._calls_lock:
            in_flight = len(self._calls)
        return {
            # The served model's name; never the base URL, which may carry credentials.
            "kind": "openai", "model": self.backend.model or "default",
            "running": min(in_flight, self.max_concurrency), "waiting": max(in_flight - self.max_concurrency, 0),
            "capacity": self.max_concurrency,
        }

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        call = _Call(request=request, future=Future(), started=time.perf_counter())
        with self._calls_lock:
            self._calls.add(call)
        self._pool.submit(self._run, call)
        return call.future

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        futures = [self.submit(r) for r in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop serving: requests still in flight fail (their streams are cut) rather than hang."""
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._calls_lock:
            calls = list(self._calls)
        for call in calls:
            self._finish(call, exc=OpenAIEngineError("the engine was closed"))
        self._http.close()

    @property
    def flavor(self) -> str:
        """The server's flavor, detected from ``GET /models`` on first use ("generic" while unreachable)."""
        self._detect()
        return self._flavor or "generic"

    # --- one request ------------------------------------------------------------------------

    def _run(self, call: _Call) -> None:
        if call.done:  # stopped by the watchdog while it waited for a free thread
            return
        try:
            result = self._stream_with_retries(call)
        except BaseException as exc:
            self._finish(call, exc=exc)
        else:
            if result is not None:
                self._finish(call, result=result)

    def _stream_with_retries(self, call: _Call) -> GenerationResult | None:
        request = call.request
        give_up_at = time.monotonic() + self.retry_s
        wait_s = _FIRST_BACKOFF_S
        while True:
            try:
                return self._stream(call)
            except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError) as exc:
                # APIConnectionError covers a cut stream too: retry only while nothing was received.
                if call.chunks or call.done or time.monotonic() + wait_s > give_up_at:
                    raise
                logger.warning("%s unavailable (%s); trying again in %.2f s", self.base_url, exc, wait_s)
            # Wait for the server, but not past a cancellation or the deadline.
            slept_until = time.monotonic() + wait_s
            while time.monotonic() < slept_until:
                reason = request.should_stop()
                if reason is not None:
                    return self._result(call, reason)
                time.sleep(min(_WATCHDOG_POLL_S, max(slept_until - time.monotonic(), 0)))
            wait_s = min(wait_s * 2, _MAX_BACKOFF_S)

    def _stream(self, call: _Call) -> GenerationResult | None:
        request = call.request
        self._detect()
        model = self._model or self.backend.model
        extra_body: dict[str, Any] = {}
        adapter = self._serving_adapter(request.adapter)
        if adapter is not None:  # before anything reaches a server that cannot serve it
            model, extra_body = self._with_adapter(adapter, model, extra_body)
        if self._flavor == "llamacpp":
            # Its Python server sends no usage and serves one request at a time, tokenizing included:
            # counted now, the count waits in the queue just ahead of this request instead of behind
            # every request queued after it.
            self._prompt_tokens(request.messages)
        if request.constraint:
            extra_body.update(constraint_params(request.constraint, self.flavor))
        create = lambda: self.client.chat.completions.create(  # noqa: E731 (asked again after a registration)
            model=model,
            messages=request.messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            seed=request.seed & _SEED_MASK,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_new_tokens,
            extra_body=extra_body or None,
        )
        try:
            stream = create()
        except (openai.NotFoundError, openai.BadRequestError) as exc:
            if adapter is None or not _unknown_adapter(exc, adapter):
                raise
            # A new adapter, or the server restarted and forgot it: register it, then ask once more.
            self._load_adapter(adapter)
            stream = create()
        finish: str | None = None
        try:
            for chunk in stream:
                with call.lock:
                    if call.done:  # the watchdog ended it while we waited
                        return None
                    call.waiting = False
                if chunk.usage is not None:
                    call.usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta is not None and choice.delta.content:
                        self._emit(call, choice.delta.content)
                    if choice.finish_reason:
                        finish = choice.finish_reason
                reason = None if finish else request.should_stop()
                with call.lock:
                    call.waiting = True
                if reason is not None:
                    return self._result(call, reason)
        finally:
            stream.close()  # on a stop: the server sees the disconnect and aborts the request
        if finish is None:
            # E.g. llama-cpp-python with --interrupt_requests true ends a stream for the next request.
            raise OpenAIEngineError(f"{self.base_url} ended the stream without a finish reason")
        return self._result(call, _finish_reason(finish))

    def _emit(self, call: _Call, piece: str) -> None:
        """Record a piece of text and pass it on, so the pieces sent concatenate to the stored text.

        The stored text is stripped (as the in-process engine's is): leading whitespace is dropped and
        whitespace is held back until something follows it.
        """
        call.chunks += 1
        if call.first_token_s is None:
            call.first_token_s = time.perf_counter() - call.started
        if not call.pieces:
            piece = piece.lstrip()
        body = piece.rstrip()
        if not body:
            if call.pieces:
                call.pending_space += piece
            return
        out = call.pending_space + body if call.pieces else body
        call.pending_space = piece[len(body) :]
        call.pieces.append(out)
        if call.request.on_text is not None:
            try:
                call.request.on_text(out)
            except Exception:
                # Streaming to viewers is best effort; the stored variant must not depend on it.
                logger.exception("on_text callback failed; generation goes on")

    def _result(self, call: _Call, reason: str) -> GenerationResult:
        usage = call.usage
        completion = usage.completion_tokens if usage is not None else call.chunks
        prompt = usage.prompt_tokens if usage is not None else self._prompt_tokens(call.request.messages)
        return GenerationResult(
            text="".join(call.pieces),
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            finish_reason=reason,
            seconds=time.perf_counter() - call.started,
            first_token_s=call.first_token_s,
        )

    def _finish(
        self, call: _Call, *, result: GenerationResult | None = None, exc: BaseException | None = None
    ) -> None:
        with call.lock:
            if call.done:
                return
            call.done = True
        with self._calls_lock:
            self._calls.discard(call)
        if exc is not None:
            call.future.set_exception(exc)
        else:
            call.future.set_result(result)  # type: ignore[arg-type]

    def _watch(self) -> None:
        """End requests that should stop while their reader is blocked waiting for the server.

        The reader drops out when its next chunk arrives (``call.done``) and closes the stream then.
        """
        while not self._closed.wait(_WATCHDOG_POLL_S):
            with self._calls_lock:
                calls = list(self._calls)
            for call in calls:
                with call.lock:
                    if call.done or not call.waiting:
                        continue
                try:
                    reason = call.request.should_stop()
                except Exception:
                    logger.exception("should_stop failed")
                    continue
                if reason is not None:
                    try:
                        result = self._result(call, reason)
                    except Exception as exc:  # counting the prompt failed: still end the request
                        self._finish(call, exc=exc)
                    else:
                        self._finish(call, result=result)

    # --- brand adapters ------------------------------------------------------------------------

    def _with_adapter(self, adapter: AdapterRef, model: str, extra_body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The ``model`` and extra fields that select ``adapter`` on this server; an error where it has no adapters."""
        flavor = self.flavor
        if flavor == "vllm":
            return adapter.name, extra_body
        if flavor == "sglang":
            return model, {**extra_body, "lora_path": adapter.name}
        raise OpenAIEngineError(
            f"{self.backend.model or self.base_url} is served by a {flavor} server, which cannot serve brand "
            f"adapters (LoRA); serve it with vLLM or SGLang (--enable-lora), or run the job on the base model"
        )

    def _serving_adapter(self, adapter: AdapterRef | None) -> AdapterRef | None:
        """The adapter a request is sent with: its own; for a base request, where configured, a zero twin.

        ``LOOM_VLLM_ZERO_ADAPTER_FOR_BASE`` (for vLLM's CPU build, see ``workers.zero_adapter``): once the
        server may hold an adapter (this engine sent one, or ``GET /models`` lists one, asked at most
        every ``_ZERO_PROBE_S`` while none is known), base requests name the zero twin of one. Until
        then nothing can be mixed in a batch and base requests go as they are. Another worker's first
        adapter can race a base request sent within that probe interval; after it, none can.
        """
        if not self._zero_for_base or self.flavor != "vllm":
            return adapter
        if adapter is not None:
            if self._zero is None:
                self._make_zero(adapter.path)
            return adapter
        if self._zero is None and time.monotonic() - self._zero_probed >= _ZERO_PROBE_S:
            self._zero_probed = time.monotonic()
            for name, path in self._served_adapters():
                if name.startswith(zero_adapter.NAME_PREFIX):  # another worker's twin: the server has it
                    self._zero = AdapterRef(name=name, path=path)
                    break
                if self._make_zero(path):
                    break
        return self._zero

    def _make_zero(self, adapter_path: str) -> bool:
        if adapter_path in self._zero_failed:
            return False
        try:
            self._zero = zero_adapter.zero_twin(adapter_path, Path(settings.BRAND_ADAPTER_ROOT) / "_zero")
        except (OSError, ValueError, KeyError) as exc:
            self._zero_failed.add(adapter_path)
            logger.warning("no zero adapter from %s (base requests may mix with adapters): %s", adapter_path, exc)
            return False
        return True

    def _served_adapters(self) -> list[tuple[str, str]]:
        """(name, path) of the adapters the server has loaded that this machine can read."""
        try:
            payload = self.client.models.list(timeout=settings.LOOM_OPENAI_CONNECT_TIMEOUT_S).model_dump()
        except openai.OpenAIError as exc:
            logger.info("cannot list the adapters of %s: %s", self.base_url, exc)
            return []
        served = []
        for entry in payload.get("data") or []:
            name, root = str(entry.get("id") or ""), str(entry.get("root") or "")
            if name != self._model and root and (Path(root) / zero_adapter.CONFIG).is_file():
                served.append((name, root))
        return served

    def _load_adapter(self, adapter: AdapterRef) -> None:
        """Register ``adapter`` with the server under its name (``POST /load_lora_adapter``)."""
        # vLLM serves it under /v1, SGLang at its root.
        url = f"{self.base_url}/load_lora_adapter"
        if self.flavor == "sglang":
            url = f"{self.base_url.removesuffix('/v1')}/load_lora_adapter"
        with self._adapter_lock:
            try:
                response = self._http.post(
                    url, json={"lora_name": adapter.name, "lora_path": adapter.path}, headers=self._auth
                )
            except httpx2.HTTPError as exc:
                raise OpenAIEngineError(f"could not register brand adapter {adapter.name} with {url}: {exc}") from exc
        if response.is_success or "already" in response.text.lower():  # a concurrent request registered it
            logger.info("registered brand adapter %s (%s) with %s", adapter.name, adapter.path, self.base_url)
            return
        hint = ""
        if response.status_code in (404, 405):
            hint = (
                " (start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, SGLang with --enable-lora)"
            )
        raise OpenAIEngineError(
            f"{self.base_url} could not load brand adapter {adapter.name} from {adapter.path}: "
            f"{response.status_code} {response.text[:300]}{hint}"
        )

    # --- the server -------------------------------------------------------------------------

    def _detect(self) -> None:
        """Learn the flavor (and the served model, if the backend names none) from ``GET /models``."""
        if self._flavor and self._model:
            return
        with self._detect_lock:
            if self._flavor and self._model:
                return
            try:
                payload = self.client.models.list(timeout=settings.LOOM_OPENAI_CONNECT_TIMEOUT_S).model_dump()
            except openai.OpenAIError as exc:
                if not self._model:
                    raise  # nothing to ask for: the retry loop tries again
                logger.info("cannot detect the flavor of %s yet: %s", self.base_url, exc)
                return
            self._flavor = self._flavor or detect_flavor(payload)
            if not self._model and payload.get("data"):
                self._model = str(payload["data"][0]["id"])

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        key = json.dumps(messages, sort_keys=True)
        with self._counts_lock:
            if key in self._prompt_counts:
                self._prompt_counts.move_to_end(key)
                return self._prompt_counts[key]
        count = self._count_prompt(messages)
        if count is None:  # estimated: not kept, so the next request asks the server again
            text = "".join(m.get("content", "") for m in messages)
            return len(text) // _CHARS_PER_TOKEN + 4 * len(messages)
        with self._counts_lock:
            self._prompt_counts[key] = count
            while len(self._prompt_counts) > _PROMPT_COUNT_CACHE:
                self._prompt_counts.popitem(last=False)
        return count

    def _count_prompt(self, messages: list[dict[str, str]]) -> int | None:
        """The prompt's tokens by the server's tokenizer; None where it has none (see the module docstring)."""
        root = self.base_url.removesuffix("/v1")
        try:
            if self._flavor == "vllm":
                body: dict[str, Any] = {"model": self._model, "messages": messages, "add_generation_prompt": True}
                response = self._http.post(f"{root}/tokenize", json=body, headers=self._auth)
                return int(response.raise_for_status().json()["count"])
            if self._flavor == "llamacpp":
                chatml = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
                body = {"input": chatml + "<|im_start|>assistant\n"}
                response = self._http.post(f"{root}/extras/tokenize/count", json=body, headers=self._auth)
                if response.status_code != 404:  # llama-server has no such endpoint (and sends usage)
                    return int(response.raise_for_status().json()["count"])
        except (httpx2.HTTPError, KeyError, ValueError) as exc:
            logger.warning("cannot count prompt tokens with %s: %s; estimating", self.base_url, exc)
        return None


def _unknown_adapter(exc: openai.APIStatusError, adapter: AdapterRef) -> bool:
    """Whether the server refused the request because it does not know the adapter (yet)."""
    if isinstance(exc, openai.NotFoundError):
        return True  # vLLM: "The model `<name>` does not exist."
    text = str(exc).lower()
    return adapter.name.lower() in text or "lora" in text


def _finish_reason(server_reason: str) -> str:
    if server_reason == "stop":
        return FinishReason.EOS
    if server_reason == "length":
        return FinishReason.LENGTH
    # "abort" (vLLM dropped it), "content_filter", tool calls: not a text we asked for.
    raise OpenAIEngineError(f"the server ended the generation with finish reason {server_reason!r}")
