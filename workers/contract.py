"""What a generation engine takes and returns: the contract between the generation app and
the engines that serve it (``workers.engine.BatchEngine`` in process, ``workers.stub.StubEngine``,
and the OpenAI-compatible client for vLLM, SGLang, llama.cpp and the like).

An engine has ``submit(request) -> Future[GenerationResult]`` and ``generate(requests) -> results``;
``workers.engines.engine_for(backend)`` returns the process-wide one for a ``Backend``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


class FinishReason:
    EOS = "stop"
    LENGTH = "length"
    CANCELED = "canceled"
    DEADLINE = "deadline"


@dataclass(frozen=True)
class Backend:
    """Where a model is served: what a registry entry (``generation.models.ServingModel``) tells a worker."""

    #: "inprocess" (transformers in this process), "openai" (an OpenAI-compatible server), "stub".
    kind: str
    #: inprocess: a model source (``bundled:...``, a hub id in the local cache, a folder); openai: the
    #: served model name the server expects in ``model``.
    model: str = ""
    #: openai: the server's base URL, up to and including ``/v1``.
    base_url: str = ""
    api_key: str = ""
    #: The model's context window in tokens (0: unknown).
    context_length: int = 0


@dataclass(frozen=True)
class OutputConstraint:
    """A hard shape of the output that an engine enforces while decoding, where it can.

    ``lines`` gives the maximum characters of each line, in order (its length is the exact number of
    lines); ``prefixes``, when given (one per line), is the fixed text each line starts with, not
    counted in its limit: a template field's label ("Headline: "), which the checks look for;
    ``max_chars`` bounds the whole text (0: no bound); ``banned`` lists phrases that must not
    appear (case-insensitive). ``generation.grammar`` builds it from a template, ``workers.grammar``
    compiles it for each engine (regex, GBNF, token masks). An engine that cannot enforce it generates
    freely; the checks after decoding (``generation.constraints``) still apply.

    ``numbers``, when not None, lists the only numbers the text may state (as its sources write them:
    "1,299" allows "1299" too; ``workers.grammar.AllowedNumbers``); () allows none. Enforced by the
    in-process engine's token masks; servers leave it to the fact check after decoding.
    """

    lines: tuple[int, ...] = ()
    max_chars: int = 0
    banned: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    numbers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter a request runs with, on top of the engine's base model.

    ``name`` is unique per adapter version (an OpenAI-compatible server serves it under that name:
    vLLM's ``--enable-lora`` with dynamic loading); ``path`` is the folder ``peft`` saved it to
    (``adapter_config.json`` + ``adapter_model.safetensors``), readable by the worker (and, for a
    server that loads adapters by path, by the server).
    """

    name: str
    path: str


@dataclass
class GenerationRequest:
    messages: list[dict[str, str]]  # chat messages; the tokenizer's chat template renders them
    max_new_tokens: int
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    #: Polled between decode steps; returns a FinishReason to stop this row early, else None.
    should_stop: Callable[[], str | None] = field(default=lambda: None)
    #: Called with each new piece of text as it is decoded (the concatenation is the final text), from
    #: the engine's thread: it must be quick and must not raise (``generation.streaming`` buffers).
    on_text: Callable[[str], None] | None = None
    constraint: OutputConstraint | None = None
    #: The brand adapter to run with (None: the base model alone).
    adapter: AdapterRef | None = None


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seconds: float
    #: Seconds from submission to the first generated token (None: no token was generated).
    first_token_s: float | None = None
