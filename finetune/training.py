"""LoRA fine-tuning of a project's base model on its brand copy (pure ML: no Django models).

Public API (H1b's services/tasks call these; signatures are stable):

    @dataclass Example(system: str, user: str, assistant: str)
    @dataclass TrainConfig(rank=16, alpha=32, dropout=0.05,
                           target_modules=("q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"),
                           epochs=2, learning_rate=1e-3, batch_size=8, max_length=192, seed=1234,
                           checkpoint_every_steps=10, warmup_ratio=0.05, weight_decay=0.0,
                           top_layers=8, max_steps=None)
        TrainConfig.from_dict(d: dict | None) -> TrainConfig   # ValueError naming every bad/unknown knob
        TrainConfig.to_dict() -> dict                          # JSON-able; from_dict(to_dict()) round-trips
    class TooLittleData(ValueError): .needed (how many more), .have, .minimum; str() says "N more"
    class Canceled(Exception)
    MIN_TRAINING_EXAMPLES = 40
    minimum_examples() -> int                                  # training examples needed (after the split)
    check_enough(n_training: int) -> None                      # raises TooLittleData
    split_examples(examples_with_timestamps: Iterable[tuple[datetime | float, Example]], heldout_share=0.1)
        -> tuple[list[Example], list[Example]]                 # (train, heldout): deduped, newest >= 10% held out
    dedupe(examples: Iterable[Example]) -> list[Example]
    train(base_model_source, examples: list[Example], config: TrainConfig | None = None, *,
          output_dir: str | Path, checkpoint_dir: str | Path,
          on_progress: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult
        # base_model_source: a workers.runtime.ModelSpec, a model string (BUNDLED_MODEL, hub id, folder),
        # a LoadedModel (deep-copied: tests load once) or None = ModelSpec.from_settings().
        # Raises TooLittleData before loading anything. on_progress(dict(step, total_steps, epoch, loss,
        # seconds)) after every step. should_stop() polled before every step -> raises Canceled (checkpoints
        # kept, no final adapter). Resumes from the newest checkpoint in checkpoint_dir made for the same
        # data + config + base model. Final adapter: output_dir (adapter_model.safetensors,
        # adapter_config.json, training.json), written to a temporary folder and renamed.
    @dataclass TrainResult(output_dir: Path, steps: int, total_steps: int, epochs: int, final_loss: float,
                           losses: list[float], seconds: float, cpu_seconds: float, resumed_from_step: int,
                           device: str, examples: int)

Torch threads: one per usable core, or ``LOOM_TRAIN_THREADS`` (environment) when set.
Evaluation against the base model: finetune/evaluation.py (``evaluate``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import resource
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from workers import runtime

logger = logging.getLogger(__name__)

#: Training examples (after the held-out split) below which a run is refused. 40 is ~5 optimizer steps
#: per epoch at the default batch size: with fewer, the adapter learns a handful of texts by heart rather
#: than a voice, and the held-out split (>= 10%, at least MIN_HELDOUT) is too small to tell whether it did.
MIN_TRAINING_EXAMPLES = 40
MIN_HELDOUT = 4
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: Module names an expert may target (Llama-style blocks: SmolLM2, Llama, Mistral, Qwen).
KNOWN_TARGET_MODULES = frozenset(DEFAULT_TARGET_MODULES)
CHECKPOINT_PREFIX = "step-"
KEEP_CHECKPOINTS = 2


#: The accepted range of each knob (inclusive): ``TrainConfig.from_dict`` and the dashboard's form both
#: read these, so the API and the form refuse the same values.
INT_KNOBS: dict[str, tuple[int, int]] = {
    "rank": (1, 256), "alpha": (1, 1024), "epochs": (1, 50), "batch_size": (1, 256),
    "max_length": (16, 8192), "seed": (0, 2**31 - 1), "checkpoint_every_steps": (1, 100_000),
}
FLOAT_KNOBS: dict[str, tuple[float, float]] = {
    "dropout": (0.0, 0.9), "learning_rate": (1e-7, 1e-1), "warmup_ratio": (0.0, 0.5), "weight_decay": (0.0, 1.0),
}
#: Whole-number knobs that may also be None (no limit).
OPTIONAL_INT_KNOBS: dict[str, tuple[int, int]] = {"top_layers": (1, 1000), "max_steps": (1, 1_000_000)}


class Canceled(Exception):
    """``should_stop()`` asked the run to end: no final adapter is written, checkpoints are kept."""


class TooLittleData(ValueError):
    def __init__(self, have: int, minimum: int = MIN_TRAINING_EXAMPLES) -> None:
        self.have, self.minimum, self.needed = have, minimum, max(minimum - have, 0)
        super().__init__(
            f"Too little training data: {have} training examples after removing duplicates and the held-out "
            f"split; at least {minimum} are needed ({self.needed} more)."
        )


@dataclass
class Example:
    system: str
    user: str
    assistant: str


@dataclass
class TrainConfig:
    """Defaults for the bundled SmolLM2-135M on 2 CPU cores (bench.finetune).

    Rank 16 on every linear layer (attention and MLP: a voice is wording as much as structure) of the
    top 8 of 30 blocks: the blocks below need no backward pass, which halves a step's cost on CPU
    (~7 CPU-s for a batch of 8 brand texts, measured), while the top blocks carry the style.
    lr 1e-3 is usual for LoRA on a small model; 2 epochs of 300 texts is 68 steps, ~4 minutes and ~8
    CPU-minutes on 2 idle cores (bench.finetune: 237 s wall, 462 CPU-s; one epoch halves it and gets
    a weaker adapter, perplexity ratio 0.23 against 0.09).
    """

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    epochs: int = 2
    learning_rate: float = 1e-3
    batch_size: int = 8
    max_length: int = 192
    seed: int = 1234
    checkpoint_every_steps: int = 10
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    #: Adapt only the top N transformer blocks (None: all). The blocks below then need no backward pass.
    top_layers: int | None = 8
    #: Stop after this many optimizer steps (None: all epochs); for smoke tests and quick trials.
    max_steps: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        """The defaults overridden by ``data`` (an expert's knobs); ValueError names every bad value."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        errors = [f"unknown setting '{key}'" for key in sorted(data) if key not in known]
        values: dict[str, Any] = {}
        ints, floats, optional = INT_KNOBS, FLOAT_KNOBS, OPTIONAL_INT_KNOBS
        for key, value in data.items():
            if key in optional and value is None:
                values[key] = None
            elif key in ints or key in optional:
                low, high = ints.get(key) or optional[key]
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    errors.append(f"{key} must be a whole number from {low} to {high} (got {value!r})")
                else:
                    values[key] = value
            elif key in floats:
                low, high = floats[key]
                if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                        or not low <= value <= high):
                    errors.append(f"{key} must be a number from {low:g} to {high:g} (got {value!r})")
                else:
                    values[key] = float(value)
            elif key == "target_modules":
                if (not isinstance(value, (list, tuple)) or not value
                        or not all(isinstance(m, str) for m in value)):
                    errors.append("target_modules must be a non-empty list of module names")
                elif unknown := sorted(set(value) - KNOWN_TARGET_MODULES):
                    errors.append(f"target_modules: unknown modules {unknown}; "
                                  f"choose from {sorted(KNOWN_TARGET_MODULES)}")
                else:
                    values[key] = tuple(dict.fromkeys(value))
        if errors:
            raise ValueError("; ".join(errors))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    total_steps: int
    epochs: int
    final_loss: float
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time, including the time before a resume
    cpu_seconds: float = 0.0  # CPU time of this process for this call (all threads)
    resumed_from_step: int = 0
    device: str = "cpu"
    examples: int = 0


def minimum_examples() -> int:
    return MIN_TRAINING_EXAMPLES


def check_enough(n_training: int) -> None:
    if n_training < MIN_TRAINING_EXAMPLES:
        raise TooLittleData(n_training)


def _key(example: Example) -> tuple[str, str, str]:
    return (example.system.strip(), example.user.strip(), " ".join(example.assistant.split()).casefold())


def dedupe(examples: Iterable[Example]) -> list[Example]:
    """First occurrence of each (system, brief, copy) wins; copy compared case- and space-insensitively."""
    seen: set[tuple[str, str, str]] = set()
    kept = []
    for example in examples:
        key = _key(example)
        if key not in seen and example.assistant.strip():
            seen.add(key)
            kept.append(example)
    return kept


def split_examples(
    examples_with_timestamps: Iterable[tuple[datetime | float, Example]], heldout_share: float = 0.1
) -> tuple[list[Example], list[Example]]:
    """(train, heldout): duplicates removed (the oldest copy kept), the newest ``heldout_share`` held out.

    By time, so the held-out texts are what the brand wrote after everything trained on, as the
    adapter's future copy will be. At least 10% and at least MIN_HELDOUT examples are held out.
    """
    if not 0.1 <= heldout_share < 1:
        raise ValueError("heldout_share must be at least 0.1 and below 1")
    ordered = sorted(examples_with_timestamps, key=lambda pair: _sort_time(pair[0]))
    unique = dedupe(example for _, example in ordered)
    n_heldout = max(math.ceil(len(unique) * heldout_share), MIN_HELDOUT) if unique else 0
    n_heldout = min(n_heldout, len(unique))
    return unique[: len(unique) - n_heldout], unique[len(unique) - n_heldout:]


def _sort_time(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


# --- model loading ---------------------------------------------------------------------------------------


def load_base(base_model_source: Any = None) -> Any:
    """A ``workers.runtime.LoadedModel`` whose weights this caller may modify (peft injects layers).

    ``base_model_source``: a LoadedModel (its model is deep-copied: tests load once per session), a
    ModelSpec, a model string (BUNDLED_MODEL, hub id or folder) or None (the settings' model).
    """
    if isinstance(base_model_source, runtime.LoadedModel):
        return runtime.LoadedModel(
            name=base_model_source.name, tokenizer=base_model_source.tokenizer,
            model=copy.deepcopy(base_model_source.model), device=base_model_source.device, load_seconds=0.0,
        )
    if base_model_source is None:
        spec = runtime.ModelSpec.from_settings()
    elif isinstance(base_model_source, runtime.ModelSpec):
        spec = base_model_source
    else:
        default = runtime.ModelSpec.from_settings()
        spec = runtime.ModelSpec(model=str(base_model_source), gguf_file=None if str(base_model_source) !=
                                 default.model else default.gguf_file, device=default.device, dtype=default.dtype)
    if spec.dtype == "auto" and runtime.resolve_device(spec.device).type == "cpu":
        # Serving may pick bfloat16 on this CPU (runtime.resolve_dtype); training and its evaluation stay
        # in float32 here, the precision bench.finetune's figures were measured in.
        spec = dataclasses.replace(spec, dtype="float32")
    # runtime.load caches the GGUF conversion under var/models and returns a fresh model each call.
    return runtime.load(spec)


def use_all_cores() -> None:
    """One torch thread per core this process may use; ``LOOM_TRAIN_THREADS`` overrides it.

    On a machine shared with other busy processes, fewer threads than cores is faster: a parallel
    region waits for its slowest thread, and a descheduled one stalls them all.
    """
    import torch

    if os.environ.get("LOOM_TRAIN_THREADS", "").isdigit() and int(os.environ["LOOM_TRAIN_THREADS"]) > 0:
        torch.set_num_threads(int(os.environ["LOOM_TRAIN_THREADS"]))
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    torch.set_num_threads(max(cores, 1))


# --- tokenization ----------------------------------------------------------------------------------------


def encode(tokenizer: Any, example: Example, max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels): labels are -100 except on the assistant's tokens and its end-of-turn token.

    The prompt is the chat template with the generation prompt, exactly what serving sends; the
    copy's tokens are the rest of the full conversation. Truncated from the right to ``max_length``.
    """
    messages = [{"role": "system", "content": example.system}, {"role": "user", "content": example.user}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": example.assistant}], tokenize=False
    )
    if not full.startswith(prompt):  # a template that rewrites earlier turns: tokenize the answer alone
        full = prompt + example.assistant + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):].rstrip("\n"), add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
    return ids, labels


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int, device: Any) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, labs) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(labs)] = torch.tensor(labs)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def token_nll(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(sum of the negative log-likelihood over labelled tokens, their count).

    The vocabulary projection (a fifth of SmolLM2-135M's compute) runs only where a label is, not over
    the system prompt and brief; models without a separate ``lm_head`` get full logits.
    """
    import torch

    labels = batch["labels"][:, 1:]
    where = labels != -100
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    body, head = getattr(inner, "model", None), getattr(inner, "lm_head", None)
    if body is not None and head is not None:
        hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = head(hidden[:, :-1, :][where]).float()
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :-1, :][where].float()
    loss = torch.nn.functional.cross_entropy(logits, labels[where], reduction="sum")
    return loss, int(where.sum())


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch): a resumed run sees the same ones.

    Shuffled, then sorted by length within windows of 8 batches (less padding: the copy ranges from a
    subject line to a blurb), then the batches shuffled again.
    """
    rng = random.Random(f"{seed}:{epoch}")  # noqa: S311 (a data order, not a secret)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 8
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


# --- checkpoints -----------------------------------------------------------------------------------------


def fingerprint(examples: list[Example], config: TrainConfig, base_name: str) -> str:
    """What a checkpoint was made for: a checkpoint of other data or settings is not resumed from."""
    digest = hashlib.sha256()
    digest.update(json.dumps([config.to_dict(), base_name], sort_keys=True).encode())
    for example in examples:
        digest.update(json.dumps(asdict(example), sort_keys=True).encode())
    return digest.hexdigest()


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    if not checkpoint_dir.is_dir():
        return None
    done = [p for p in checkpoint_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / "state.json").exists()]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]), default=None)


def _trainable_state(model: Any) -> dict[str, Any]:
    return {name: param.detach().cpu().clone() for name, param in model.named_parameters() if param.requires_grad}


def save_checkpoint(checkpoint_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any,
                    meta: dict[str, Any]) -> Path:
    """Written into a temporary folder, then renamed: a worker killed mid-write leaves no half checkpoint."""
    import torch
    from safetensors.torch import save_file

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    target = checkpoint_dir / f"{CHECKPOINT_PREFIX}{step:07d}"
    tmp = checkpoint_dir / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_trainable_state(model), str(tmp / "adapter.safetensors"))
    rng = {"python": random.getstate(), "torch": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
               tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps({**meta, "step": step}))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    older = sorted((p for p in checkpoint_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and p != target),
                   key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))
    for stale in older[: max(len(older) - (KEEP_CHECKPOINTS - 1), 0)]:
        shutil.rmtree(stale, ignore_errors=True)
    return target


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "adapter.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    random.setstate(trainer["rng"]["python"])
    torch.set_rng_state(trainer["rng"]["torch"])
    if trainer["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(trainer["rng"]["cuda"])
    return json.loads((path / "state.json").read_text())


# --- training --------------------------------------------------------------------------------------------


def attach_lora(model: Any, config: TrainConfig) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)  # LoRA's A matrices start random: the same seed, the same adapter
    layers = None
    if config.top_layers is not None:
        total = model.config.num_hidden_layers
        layers = list(range(max(total - config.top_layers, 0), total))
    lora = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM",
        layers_to_transform=layers,
    )
    return get_peft_model(model, lora)


def train(
    base_model_source: Any,
    examples: list[Example],
    config: TrainConfig | None = None,
    *,
    output_dir: str | Path,
    checkpoint_dir: str | Path,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``examples`` (the training split) and save it into ``output_dir``.

    A hand-written loop rather than transformers' Trainer: resuming has to restore exactly the data
    order, dropout RNG, optimizer and schedule at any step, checkpoints must be atomic (Trainer writes
    in place), and cancel must be polled between steps with nothing written after it; each of those
    is a few lines here and a callback-and-flag workaround in Trainer. Batches are a pure function
    of (seed, epoch), the RNG state is checkpointed, so a resumed run takes the same steps as an
    uninterrupted one (identical weights on CPU; on CUDA up to kernel non-determinism).
    """
    import torch

    config = config or TrainConfig()
    output_dir, checkpoint_dir = Path(output_dir), Path(checkpoint_dir)
    check_enough(len(examples))
    started_cpu = time.process_time()
    started = time.perf_counter()
    use_all_cores()
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    loaded = load_base(base_model_source)
    tokenizer, device = loaded.tokenizer, loaded.device
    model = attach_lora(loaded.model, config)
    model.train()
    rows = [encode(tokenizer, example, config.max_length) for example in examples]
    lengths = [len(ids) for ids, _ in rows]
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = max(int(total_steps * config.warmup_ratio), 0)

    def schedule(step: int) -> float:  # linear warmup, then linear decay to 0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(total_steps - step, 0) / max(total_steps - warmup, 1)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    print_name = fingerprint(examples, config, loaded.name)
    step, losses, seconds_before, resumed_from = 0, [], 0.0, 0
    checkpoint = latest_checkpoint(checkpoint_dir)
    if checkpoint is not None:
        state = json.loads((checkpoint / "state.json").read_text())
        if state.get("fingerprint") == print_name:
            state = load_checkpoint(checkpoint, model, optimizer, scheduler)
            step, losses, seconds_before = state["step"], state["losses"], state["seconds"]
            resumed_from = step
            logger.info("resuming training from %s (step %d of %d)", checkpoint, step, total_steps)
        else:
            logger.warning("ignoring checkpoint %s: made for other data or settings", checkpoint)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    run_started = time.perf_counter()
    while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        batches = epoch_batches(lengths, config.batch_size, config.seed, epoch)
        for batch_ids in batches[index:]:
            if step >= total_steps:
                break
            if should_stop is not None and should_stop():
                raise Canceled(f"training canceled at step {step} of {total_steps}")
            batch = collate([rows[i] for i in batch_ids], pad_id, device)
            loss_sum, count = token_nll(model, batch)
            loss = loss_sum / max(count, 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(round(float(loss.detach()), 5))
            seconds = seconds_before + time.perf_counter() - run_started
            if step % config.checkpoint_every_steps == 0 and step < total_steps:
                save_checkpoint(checkpoint_dir, step, model, optimizer, scheduler,
                                {"fingerprint": print_name, "losses": losses, "seconds": seconds})
            if on_progress is not None:
                on_progress({"step": step, "total_steps": total_steps, "epoch": epoch + 1,
                             "loss": losses[-1], "seconds": round(seconds, 3)})

    if should_stop is not None and should_stop():
        raise Canceled(f"training canceled at step {step} of {total_steps}")
    seconds = seconds_before + time.perf_counter() - run_started
    save_adapter(model, output_dir, {"config": config.to_dict(), "examples": len(examples), "steps": total_steps,
                                     "losses": losses, "seconds": round(seconds, 3), "base_model": loaded.name})
    logger.info("trained adapter %s in %.1fs (%d steps)", output_dir, time.perf_counter() - started, total_steps)
    return TrainResult(
        output_dir=output_dir, steps=step, total_steps=total_steps, epochs=config.epochs,
        final_loss=losses[-1] if losses else float("nan"), losses=losses, seconds=seconds,
        cpu_seconds=time.process_time() - started_cpu, resumed_from_step=resumed_from, device=str(device),
        examples=len(examples),
    )


def save_adapter(model: Any, output_dir: Path, info: dict[str, Any]) -> None:
    """``save_pretrained`` (adapter_model.safetensors + adapter_config.json) into a temporary folder, renamed."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.with_name(f".tmp-{output_dir.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    (tmp / "training.json").write_text(json.dumps(info, indent=1))
    if output_dir.exists():  # a worker that died after saving and before its job was marked done
        shutil.rmtree(output_dir)
    os.replace(tmp, output_dir)


def cpu_seconds_of_process() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

