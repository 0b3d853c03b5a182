"""A trained adapter against its base model on the held-out split (pure ML: no Django models).

    evaluate(base_model_source, adapter_dir, heldout: list[Example], *,
             voice=None, approved=(), fallback="", constraints=None, language=None,
             max_briefs=20, max_new_tokens=96, samples=3, max_length=256, batch_size=8) -> dict

- ``voice``: anything with the brand voice attributes ``generation.scoring.brand_fit`` reads
  (``example_texts``, ``tone``, ``audience``, ``words_to_use``, ``words_to_avoid``): a BrandVoice row or a
  SimpleNamespace; ``approved``: the brand's approved texts (e.g. the training split's copy);
  ``fallback``: the reference text when there is neither (brand_fit's own argument).
- ``constraints``: the hard limits each generated text is checked against
  (``generation.constraints.check`` + ``passed``): one dict for all briefs, a list aligned with
  ``heldout``, or None (only truncation is checked). ``language``: the language a text must be in.

Returned (JSON-serializable), base vs adapter:
``{"perplexity": {"base", "adapter", "ratio"}, "constraint_pass_rate": {"base", "adapter"},
"brand_fit": {"base", "adapter", "gain"}, "samples": [{"brief", "reference", "base", "adapter"}],
"heldout_examples", "briefs", "seconds", "beats_base"}``.

Perplexity is over the assistant's tokens only (as trained), on every held-out example. Copy is
generated greedily (deterministic, no seed to keep) for the first ``max_briefs`` held-out briefs, by
one model with the adapter switched off and on (peft ``disable_adapter``), so the base is loaded once.

``beats_base``: the adapter's held-out perplexity is lower AND its mean brand fit is not lower AND its
constraint pass rate is not lower than the base model's. A voice the adapter learnt but copy that
breaks the template's rules, or reads less like the brand, does not beat the base.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from finetune.training import Example, collate, encode, load_base, token_nll, use_all_cores
from generation import scoring
from generation.constraints import check, passed


def perplexity(model: Any, tokenizer: Any, examples: list[Example], *, max_length: int = 256,
               batch_size: int = 8) -> float:
    """exp(mean negative log-likelihood of the assistant's tokens) over ``examples``."""
    import torch

    rows = [encode(tokenizer, example, max_length) for example in examples]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            loss, n = token_nll(model, collate(rows[start:start + batch_size], pad_id, device))
            total, count = total + float(loss), count + n
    return math.exp(total / count) if count else float("nan")


#: Greedy decoding of a 135M model falls into loops ("... and more. And more. And more."), for the base
#: and the adapter alike, which then fail on length and say nothing about the voice; a mild penalty
#: (HF's CTRL-style repetition penalty) keeps the comparison about wording. Both sides get the same one.
REPETITION_PENALTY = 1.15


def generate(model: Any, tokenizer: Any, examples: list[Example], *, max_new_tokens: int,
             batch_size: int = 8) -> list[tuple[str, str]]:
    """(text, finish reason "stop" or "length") per example's brief, greedy."""
    import torch

    device = next(model.parameters()).device
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    results: list[tuple[str, str]] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        prompts = [
            tokenizer(tokenizer.apply_chat_template(
                [{"role": "system", "content": e.system}, {"role": "user", "content": e.user}],
                add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
            for e in chunk
        ]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)  # left padding
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, repetition_penalty=REPETITION_PENALTY,
                                 pad_token_id=pad_id, eos_token_id=list(eos_ids))
        for row in out[:, width:].tolist():
            ended = next((i for i, token in enumerate(row) if token in eos_ids), None)
            tokens = row if ended is None else row[:ended]
            results.append((tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                            "length" if ended is None else "stop"))
    return results


def _constraints_for(constraints: Any, index: int) -> dict[str, Any]:
    if constraints is None:
        return {}
    if isinstance(constraints, dict):
        return constraints
    return constraints[index] or {}


def pass_rate(outputs: list[tuple[str, str]], constraints: Any, language: str | None) -> float:
    if not outputs:
        return float("nan")
    ok = sum(
        passed(check(text, _constraints_for(constraints, i), {}, finish_reason=reason, language=language))
        for i, (text, reason) in enumerate(outputs)
    )
    return ok / len(outputs)


def mean_brand_fit(texts: list[str], voice: Any, approved: list[str], fallback: str) -> float | None:
    if not texts or not scoring.available():
        return None
    scores = scoring.brand_fit(texts, voice, approved, fallback)
    return sum(scores) / len(scores)


def evaluate(
    base_model_source: Any,
    adapter_dir: str | Path,
    heldout: list[Example],
    *,
    voice: Any = None,
    approved: list[str] | tuple[str, ...] = (),
    fallback: str = "",
    constraints: dict[str, Any] | list[dict[str, Any] | None] | None = None,
    language: str | None = None,
    max_briefs: int = 20,
    max_new_tokens: int = 96,
    samples: int = 3,
    max_length: int = 256,
    batch_size: int = 8,
) -> dict[str, Any]:
    from peft import PeftModel

    started = time.perf_counter()
    use_all_cores()
    loaded = load_base(base_model_source)
    tokenizer = loaded.tokenizer
    model = PeftModel.from_pretrained(loaded.model, str(adapter_dir)).to(loaded.device).eval()
    approved = list(approved)
    fallback = fallback or (approved[0] if approved else "")

    with model.disable_adapter():
        base_ppl = perplexity(model, tokenizer, heldout, max_length=max_length, batch_size=batch_size)
    adapter_ppl = perplexity(model, tokenizer, heldout, max_length=max_length, batch_size=batch_size)

    briefs = heldout[:max_briefs]
    with model.disable_adapter():
        base_out = generate(model, tokenizer, briefs, max_new_tokens=max_new_tokens, batch_size=batch_size)
    adapter_out = generate(model, tokenizer, briefs, max_new_tokens=max_new_tokens, batch_size=batch_size)

    base_pass = pass_rate(base_out, constraints, language)
    adapter_pass = pass_rate(adapter_out, constraints, language)
    base_fit = mean_brand_fit([t for t, _ in base_out], voice, approved, fallback)
    adapter_fit = mean_brand_fit([t for t, _ in adapter_out], voice, approved, fallback)

    fit_ok = base_fit is None or adapter_fit is None or adapter_fit >= base_fit
    beats = bool(adapter_ppl < base_ppl and fit_ok and adapter_pass >= base_pass)
    return {
        "perplexity": {"base": round(base_ppl, 4), "adapter": round(adapter_ppl, 4),
                       "ratio": round(adapter_ppl / base_ppl, 4) if base_ppl else None},
        "constraint_pass_rate": {"base": round(base_pass, 4), "adapter": round(adapter_pass, 4)},
        "brand_fit": {"base": _round(base_fit), "adapter": _round(adapter_fit),
                      "gain": _round(adapter_fit - base_fit) if base_fit is not None and adapter_fit is not None
                      else None},
        "samples": [
            {"brief": e.user, "reference": e.assistant, "base": b[0], "adapter": a[0]}
            for e, b, a in list(zip(briefs, base_out, adapter_out, strict=True))[:samples]
        ],
        "heldout_examples": len(heldout),
        "briefs": len(briefs),
        "seconds": round(time.perf_counter() - started, 2),
        "beats_base": beats,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
