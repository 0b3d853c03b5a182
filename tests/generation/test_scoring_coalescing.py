"""Concurrent output embeddings are coalesced into shared forward passes, each caller getting its own rows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from generation.scoring import CoalescedEmbedder, embed


class SlowEmbed:
    """Stands in for the model: one row per text (its length), slow enough for callers to pile up."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.started.set()
            self.release.wait(5)
        return torch.tensor([[float(len(t))] for t in texts])


def test_callers_arriving_during_a_pass_share_the_next_one_and_get_their_own_rows():
    model = SlowEmbed()
    embedder = CoalescedEmbedder(model)
    requests = [["a"], ["bb", "ccc"], ["dddd"], ["eeeee", "f"]]
    with ThreadPoolExecutor(len(requests)) as pool:
        first = pool.submit(embedder, requests[0])
        assert model.started.wait(5)
        rest = [pool.submit(embedder, texts) for texts in requests[1:]]
        while len(embedder._pending) < 3:  # all three queued behind the running pass
            threading.Event().wait(0.01)
        model.release.set()
        results = [first.result(5)] + [future.result(5) for future in rest]

    assert [r.flatten().tolist() for r in results] == [[1.0], [2.0, 3.0], [4.0], [5.0, 1.0]]
    assert len(model.calls) == 2 and sorted(model.calls[1]) == sorted(["bb", "ccc", "dddd", "eeeee", "f"])


def test_an_error_reaches_every_caller_of_that_pass_and_the_next_call_works():
    calls = []

    def failing_once(texts: list[str]) -> torch.Tensor:
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return torch.ones(len(texts), 1)

    embedder = CoalescedEmbedder(failing_once)
    with pytest.raises(RuntimeError, match="out of memory"):
        embedder(["x"])
    assert embedder(["y", "z"]).shape == (2, 1)


def test_coalesced_rows_equal_embedding_each_text_alone():
    texts = [["Fresh tulip bulbs for spring."], ["Hand-thrown teapot, glazed in blue.", "Linen towels."]]
    embedder = CoalescedEmbedder()
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(embedder, texts))
    for group, vectors in zip(texts, together, strict=True):
        assert torch.allclose(vectors, embed(group), atol=1e-5)
