"""What a generation engine takes and returns: the contract between the generation app and
the engines that serve it (``workers.engine.BatchEngine``, ``workers.stub.StubEngine``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


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
