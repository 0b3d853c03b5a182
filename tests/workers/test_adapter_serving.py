"""Brand adapters served in process: several LoRA adapters and the base model in one batch."""

from __future__ import annotations

import copy
from concurrent.futures import Future
from pathlib import Path

import pytest

from tests.support.models import real_model, tiny_model
from workers.adapters import BASE, AdapterLoadError, AdapterSet
from workers.contract import AdapterRef
from workers.engine import ActiveBatch, GenerationRequest, adapters_for, generate_batch, prefixes_for
from workers.runtime import LoadedModel

MESSAGES = [
    {"role": "system", "content": "You are the copywriter of Verdant Tea. Write warm, short, concrete copy."},
    {"role": "user", "content": "Write one sentence about a white ceramic mug."},
]
OTHER = [{"role": "user", "content": "Name three colours of autumn leaves."}]


def _save_adapters(model, folder: Path, seeds: dict[str, int]) -> dict[str, AdapterRef]:
    """Random non-zero LoRA adapters (``init_lora_weights=False``) of ``model``, saved; the model is left as it was."""
    import torch
    from peft import LoraConfig, get_peft_model

    refs = {}
    for name, seed in seeds.items():
        torch.manual_seed(seed)
        config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        peft_model = get_peft_model(model, config)
        peft_model.save_pretrained(folder / name)
        model = peft_model.unload()  # the base model again, without LoRA layers
        refs[name] = AdapterRef(name=f"brand-{name}-v1", path=str(folder / name))
    return refs


def _copy_of(loaded: LoadedModel) -> LoadedModel:
    """A private copy of a shared model: serving adapters wraps a model in place."""
    return LoadedModel(
        name=loaded.name,
        tokenizer=loaded.tokenizer,
        model=copy.deepcopy(loaded.model),
        device=loaded.device,
        load_seconds=0.0,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The real model (a copy, once per module) and two adapters of it."""
    loaded = _copy_of(real_model())
    refs = _save_adapters(loaded.model, tmp_path_factory.mktemp("adapters"), {"a": 1, "b": 2})
    return loaded, refs


@pytest.fixture
def tiny(tmp_path):
    loaded = _copy_of(tiny_model())
    return loaded, _save_adapters(loaded.model, tmp_path, {"a": 1, "b": 2, "c": 3})


def _request(messages=MESSAGES, **kwargs):
    return GenerationRequest(**{"messages": messages, "max_new_tokens": 16, "temperature": 0, "seed": 1, **kwargs})


def test_two_adapters_and_none_in_one_batch_each_give_their_own_output(served):
    loaded, refs = served
    # given: each request alone (seeded; greedy and sampled), the base one before any adapter is loaded
    plan = [
        (MESSAGES, None, 0),
        (MESSAGES, refs["a"], 0),
        (OTHER, refs["b"], 0),
        (MESSAGES, refs["b"], 0.8),
        (OTHER, None, 0.8),
        (MESSAGES, refs["a"], 0.8),
    ]
    requests = [_request(m, adapter=a, temperature=t, seed=7 + i) for i, (m, a, t) in enumerate(plan)]
    alone = [generate_batch(loaded, [r])[0].text for r in requests]
    # when: all of them share one batch
    together = [r.text for r in generate_batch(loaded, requests)]
    # then
    assert together == alone
    # the adapters change the text: base, a and b differ on the same prompt
    b_alone = generate_batch(loaded, [_request(adapter=refs["b"], seed=8)])[0].text
    assert len({alone[0], alone[1], b_alone}) == 3
    assert sorted(adapters_for(loaded).loaded) == ["brand-a-v1", "brand-b-v1"]


def test_prefix_cache_keeps_one_entry_per_adapter(served):
    loaded, refs = served
    cache = prefixes_for(loaded)
    prefix, _ = cache.split(MESSAGES)
    assert prefix, "the system message must be long enough to be cached"
    base = generate_batch(loaded, [_request(seed=3)])[0].text
    # when: the adapter's prefix is cached first, then the base model asks for the same prefix
    with_a = generate_batch(loaded, [_request(adapter=refs["a"], seed=3)])[0].text
    again = generate_batch(loaded, [_request(seed=3)])[0].text
    # then: the base row did not reuse the adapter's keys and values
    assert again == base != with_a
    assert (BASE, tuple(prefix)) in cache._entries and ("brand-a-v1", tuple(prefix)) in cache._entries


def test_a_request_whose_adapter_cannot_load_fails_alone(served, tmp_path):
    loaded, refs = served
    missing = AdapterRef(name="brand-gone-v3", path=str(tmp_path / "gone"))
    batch = ActiveBatch(loaded)
    futures = [Future() for _ in range(3)]
    batch.admit(list(zip([_request(), _request(adapter=missing), _request(adapter=refs["a"])], futures, strict=True)))
    while batch:
        batch.step()
    with pytest.raises(AdapterLoadError, match=r"brand-gone-v3.*missing"):
        futures[1].result()
    assert futures[0].result().text and futures[2].result().text


def test_least_recently_used_adapter_is_evicted_past_the_bound(tiny):
    loaded, refs = tiny
    adapters = AdapterSet(loaded.model, max_loaded=2)
    adapters.ensure(refs["a"])
    adapters.ensure(refs["b"])
    adapters.ensure(refs["a"])  # a is now the most recently used
    adapters.ensure(refs["c"])
    assert adapters.loaded == ["brand-a-v1", "brand-c-v1"]
    assert adapters.evictions == 1
    # the evicted adapter's layers are gone from the model too
    assert "brand-b-v1" not in adapters.peft.peft_config


def test_an_adapter_in_use_is_never_evicted(tiny):
    loaded, refs = tiny
    adapters = adapters_for(loaded)
    adapters.max_loaded = 1
    alone = generate_batch(loaded, [_request(adapter=refs["a"], max_new_tokens=12)])[0].text
    # given: a row decoding with adapter a
    batch = ActiveBatch(loaded)
    first, second = Future(), Future()
    batch.admit([(_request(adapter=refs["a"], max_new_tokens=12), first)])
    batch.step()
    # when: a row with adapter b arrives while the bound is one adapter
    batch.admit([(_request(adapter=refs["b"], max_new_tokens=4), second)])
    while batch:
        batch.step()
    # then: a stayed loaded for its row, whose text is what it is alone
    assert first.result().text == alone
    assert second.result().completion_tokens >= 1
    assert sorted(adapters.loaded) == ["brand-a-v1", "brand-b-v1"]
    adapters.ensure(refs["c"])  # nothing in use now: back to the bound
    assert adapters.loaded == ["brand-c-v1"]


def test_a_model_with_adapters_is_still_the_base_model_when_called_directly(tiny):
    import torch

    loaded, refs = tiny
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        before = loaded.model(input_ids=ids).logits
        adapters_for(loaded).ensure(refs["a"])
        after = loaded.model(input_ids=ids).logits
    assert torch.allclose(before, after)
