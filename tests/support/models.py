"""Models for tests: the real bundled one loaded once per session, and a tiny random one for plumbing."""

from __future__ import annotations

from functools import cache

from workers.runtime import BUNDLED_MODEL, LoadedModel, ModelSpec, get_model


def real_model() -> LoadedModel:
    """SmolLM2-135M-Instruct on CPU; the runtime caches it per process."""
    return get_model(ModelSpec(model=BUNDLED_MODEL, gguf_file=None, device="cpu", dtype="float32"))


@cache
def tiny_model() -> LoadedModel:
    """A 2-layer Llama with random weights and the real tokenizer: fast, deterministic plumbing."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = real_model().tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(name="tiny-random", tokenizer=tokenizer, model=model, device=torch.device("cpu"),
                       load_seconds=0.0)
